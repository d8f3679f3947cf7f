"""``t1 logs`` and ``t1 plot``, through a kubeconfig as a user would.

``t1 logs`` runs against the emulator and the real operator: the tests play the Training Operator
and the kubelet (the pods, their container runs and what the trainer prints in them). ``t1 plot``
reads a job's status, written here as the operator writes it, or a local run's metrics log,
written by the reporting client the trainer writes it with.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from tensorone.api.events import STORE_KEY, MetricRecord, metric_store_name, store_text
from tensorone.api.pods import REPLICA_INDEX_LABEL, REPLICA_TYPE_LABEL
from tensorone.cli import exit_codes, main
from tensorone.cli.exit_codes import NOT_FOUND, USAGE
from tensorone.reporting.client import Reporter, TrainerState
from tests import factories
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import child_job, phase_is, play_training_operator
from tests.operator.runner import OperatorThread
from tests.unimportable import run_without

JOB = "llama"


def start_job(cluster: EmulatorServer, *, workers: int = 1) -> None:
    """A CPU job, and its PyTorchJob made by the operator."""
    cluster.api.create(factories.dataset())
    cluster.api.create(factories.training_job(JOB, maxWorkers=workers))
    wait_for(lambda: child_job(cluster.api, JOB))


def start_pod(cluster: EmulatorServer, replica: str = "Master", index: int = 0) -> str:
    """The Training Operator's pod of a replica, started by a kubelet (no pod IP: the operator does
    not poll it); its name."""
    child = child_job(cluster.api, JOB)
    template = child["spec"]["pytorchReplicaSpecs"][replica]["template"]
    name = f"{JOB}-{replica.lower()}-{index}"
    labels = {**template["metadata"]["labels"], REPLICA_TYPE_LABEL: replica.lower(), REPLICA_INDEX_LABEL: str(index)}
    spec = {**copy.deepcopy(template["spec"]), "nodeName": "node-1"}
    cluster.api.create(factories.pod(name, child, spec=spec, labels=labels))
    run(cluster, name, spec["containers"][0])
    return name


def run(cluster: EmulatorServer, pod: str, spec_container: dict[str, Any], restarts: int = 0) -> None:
    """The pod's container runs, after ``restarts`` restarts (the last one a retryable exit)."""
    status = factories.running_pod_status(
        spec_container, pod_ip="", started_at=factories.now(), restarts=restarts, last_exit_code=138
    )
    cluster.api.patch("v1", "Pod", pod, {"status": status}, "default", subresource="status")


def pod_container(cluster: EmulatorServer, replica: str = "Master") -> dict[str, Any]:
    template = child_job(cluster.api, JOB)["spec"]["pytorchReplicaSpecs"][replica]["template"]
    return dict(template["spec"]["containers"][0])


def logs(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["logs", JOB, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_logs_prints_the_trainers_log_of_the_master_pod(
    cluster: EmulatorServer, operator: OperatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    start_job(cluster)
    pod = start_pod(cluster)
    cluster.write_log("default", pod, "training llama on CPU\nstep 1 loss 7.0\nstep 2 loss 6.1\n")
    assert logs(capsys) == (0, "training llama on CPU\nstep 1 loss 7.0\nstep 2 loss 6.1\n", "")
    assert logs(capsys, "--tail", "1") == (0, "step 2 loss 6.1\n", "")


def test_previous_reads_the_run_before_a_restart(
    cluster: EmulatorServer, operator: OperatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    start_job(cluster)
    pod = start_pod(cluster)
    cluster.write_log("default", pod, "first run\n")
    code, out, err = logs(capsys, "--previous")
    assert (code, out) == (NOT_FOUND, "")
    assert err.splitlines()[0] == (
        't1: LOG_NOT_FOUND: previous terminated container "pytorch" in pod "llama-master-0" not found'
    )
    run(cluster, pod, pod_container(cluster), restarts=1)
    cluster.write_log("default", pod, "second run\n")
    assert logs(capsys) == (0, "second run\n", "")
    assert logs(capsys, "--previous") == (0, "first run\n", "")


def test_rank_names_a_workers_pod(
    cluster: EmulatorServer, operator: OperatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    start_job(cluster, workers=2)
    master, worker = start_pod(cluster), start_pod(cluster, "Worker", 0)
    cluster.write_log("default", master, "rank 0\n")
    cluster.write_log("default", worker, "rank 1\n")
    assert logs(capsys, "--rank", "1") == (0, "rank 1\n", "")
    code, _, err = logs(capsys, "--rank", "2")
    assert code == USAGE
    assert (
        err.splitlines()[0] == "t1: CONFIGURATION_ERROR: rank: must be between 0 and 1 (job 'llama' has 2 pods), got 2"
    )


def test_without_pods_logs_says_so_and_where_the_metrics_log_is(
    cluster: EmulatorServer, operator: OperatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    start_job(cluster)
    code, _, err = logs(capsys)
    assert code == NOT_FOUND
    assert (
        err.splitlines()[0]
        == "t1: LOG_NOT_FOUND: job 'llama' is pending and has no pod of rank 0 yet (following its log waits for one)"
    )
    start_pod(cluster)
    play_training_operator(cluster.api, JOB, "Running", active=1)
    wait_for(lambda: phase_is(cluster.api, "Running", JOB))
    assert main(["cancel", JOB]) == 0
    # The operator deletes the PyTorchJob; the garbage collector its pods.
    wait_for(lambda: cluster.api.find("v1", "Pod", "llama-master-0") is None)
    wait_for(lambda: phase_is(cluster.api, "Cancelled", JOB))
    capsys.readouterr()
    code, out, err = logs(capsys)
    assert (code, out) == (NOT_FOUND, "")
    message, hint = err.splitlines()
    assert message == (
        "t1: LOG_NOT_FOUND: job 'llama' is cancelled and its pod of rank 0 is gone (pods go when a job is stopped "
        "or cancelled, or when it has ended and they are cleaned up): the trainer's full metrics log is "
        "metrics.jsonl on the job's checkpoint claim llama-checkpoints (/checkpoints/metrics.jsonl in its pods)"
    )
    assert hint.startswith("t1: hint: t1 get JOB")


def test_follow_goes_on_across_restarts_and_new_pods_until_the_job_ends(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    start_job(cluster)
    pod = start_pod(cluster)
    play_training_operator(cluster.api, JOB, "Running", active=1)
    cluster.write_log("default", pod, "run 1: step 1\n")
    follower = subprocess.Popen(
        [sys.executable, "-m", "tensorone", "logs", "-f", JOB],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = threading.Timer(120, follower.kill)  # a silent follower ends the reads below, never hangs them
    deadline.start()
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "run 1: step 1\n"
        cluster.write_log("default", pod, "run 1: step 2\n")
        assert follower.stdout.readline() == "run 1: step 2\n"
        # The container is restarted (a retryable exit): its new run is followed.
        run(cluster, pod, pod_container(cluster), restarts=1)
        cluster.write_log("default", pod, "run 2: resumed\n")
        assert follower.stdout.readline() == "run 2: resumed\n"
        # A new pod of the same name, as after a stop and a resume.
        cluster.api.delete("v1", "Pod", pod)
        start_pod(cluster)
        cluster.write_log("default", pod, "new pod: resumed\n")
        assert follower.stdout.readline() == "new pod: resumed\n"
        # The trainer ends, the Training Operator says so, the operator completes the job: so does t1.
        ended = factories.terminated_pod_status(
            pod_container(cluster), exit_code=0, message="", finished_at=factories.now()
        )
        cluster.api.patch("v1", "Pod", pod, {"status": ended}, "default", subresource="status")
        play_training_operator(cluster.api, JOB, "Succeeded", succeeded=1)
        assert follower.wait(timeout=60) == 0
        assert follower.stdout.read() == ""
        assert follower.stderr is not None
        notes = follower.stderr.read().splitlines()
        # On stderr, what it waited for and each new run (a wait is told when one was seen).
        assert notes[0] == "t1: pod llama-master-0: container restarted (restart 1)"
        assert "t1: new pod llama-master-0" in notes
        assert set(notes) <= {
            notes[0],
            "t1: waiting for job llama's pod of rank 0 (the job is running)",
            "t1: waiting for pod llama-master-0 to start (the job is running)",  # created, not yet started
            "t1: new pod llama-master-0",
            "t1: the container of pod llama-master-0 has stopped; waiting for it to run again or for the job to end "
            "(the job is running)",
        }
    finally:
        deadline.cancel()
        follower.kill()
        follower.wait()


def test_over_the_gateway_logs_says_to_use_the_kubernetes_api(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TENSORONE_BASE_URL", "http://127.0.0.1:9")
    assert main(["logs", JOB]) == USAGE
    message, hint = capsys.readouterr().err.splitlines()
    assert message == (
        "t1: CONFIGURATION_ERROR: TENSORONE_BASE_URL: t1 logs needs the Kubernetes API (the kubeconfig), and this "
        "shell sends t1 to the gateway"
    )
    assert hint.startswith("t1: hint: unset TENSORONE_BASE_URL")


# t1 plot ----------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def job_with_history(cluster: EmulatorServer) -> None:
    """A running job whose status has 40 steps of loss curve, 4 evaluations and the learning rate."""
    cluster.api.create(factories.dataset())
    cluster.api.create(factories.training_job(JOB))
    status = {
        "phase": "Running",
        "lossHistory": [{"step": step, "loss": round(7.0 / step**0.5, 6)} for step in range(1, 41)],
        "evalLossHistory": [{"step": step, "loss": 3.0 - step / 40} for step in (10, 20, 30, 40)],
        "metrics": {"currentLoss": 1.106797, "learningRate": 0.005},
    }
    cluster.api.patch_status(factories.API, "TrainingJob", JOB, status)


def assert_png(path: Path, size: tuple[int, int]) -> None:
    """A PNG file that decodes to an image of ``size`` (width, height)."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    height, width, _ = imread(path).shape
    assert (width, height) == size


def test_plot_draws_the_curves_a_jobs_status_keeps(cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    job_with_history(cluster)
    assert main(["plot", JOB]) == 0
    out = capsys.readouterr().out
    chart, summary = out.split("\njob llama (its status):\n")
    assert "llama: loss" in chart and "\x1b[" not in chart  # no colors into a pipe
    assert "▚ loss" in chart and "• eval loss" in chart  # the legend of both series
    assert summary.splitlines() == [
        "  loss: 40 points, steps 1 to 40, 7 -> 1.107 (lowest 1.107 at step 40)",
        "  eval loss: 4 points, steps 10 to 40, 2.75 -> 2 (lowest 2 at step 40)",
        "  learning rate: 0.005 now (a job's status keeps no history of it; the metrics log has every step)",
    ]


def test_plot_writes_a_png_with_matplotlibs_agg_whatever_backend_is_configured(
    cluster: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job_with_history(cluster)
    monkeypatch.setenv("MPLBACKEND", "qtagg")  # a display's backend, not installed here
    assert main(["plot", JOB, "-o", str(tmp_path / "loss.png")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'loss.png'}\n"
    assert_png(tmp_path / "loss.png", (800, 550))  # the loss curves; a status keeps no learning-rate curve
    assert main(["plot", JOB, "-o", str(tmp_path / "loss.svg")]) == USAGE
    assert "--output: must name a .png file" in capsys.readouterr().err


def test_plot_says_when_a_job_has_no_curve_yet(cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.api.create(factories.dataset())
    cluster.api.create(factories.training_job(JOB))
    assert main(["plot", JOB]) == exit_codes.REFUSED
    assert capsys.readouterr().err.splitlines()[0] == (
        "t1: INVALID_JOB_STATE: job 'llama' is pending and has no loss history yet"
    )


def local_run(root: Path) -> Path:
    """A run's metrics log as the trainer writes it (tensorone.reporting): 30 steps with warmup
    and evaluations, then a resume from step 20 that runs steps 21 to 30 again; the run folder."""
    log = root / "checkpoints" / "metrics.jsonl"
    with Reporter(serve=False, metrics_log=log, termination_log=None) as first:
        first.plan(total_epochs=3, total_steps=30)
        first.running()
        for step in range(1, 26):  # stopped after step 25; the checkpoint of step 20 is resumed
            first.step(step, 6.0 / step, epoch=1 + (step - 1) // 10, learning_rate=0.01 * min(step, 5) / 5)
            if step % 10 == 0:
                first.eval(step, 3.0 - step / 20)
        first.finish(TrainerState.stopped)
    with Reporter(serve=False, metrics_log=log, termination_log=None) as resumed:
        resumed.plan(total_epochs=3, total_steps=30, step=20)
        resumed.running(resumed_from="ckpt-step-20")
        for step in range(21, 31):
            resumed.step(step, 5.0 / step, epoch=1 + (step - 1) // 10, learning_rate=0.01)
            if step % 10 == 0:
                resumed.eval(step, 3.0 - step / 20)
    return root


def test_plot_of_a_local_run_has_every_step_of_its_metrics_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = local_run(tmp_path / "runs" / "tiny")
    log = run / "checkpoints" / "metrics.jsonl"
    for given in (run, run / "checkpoints", log):
        assert main(["plot", "--run", str(given)]) == 0
        out = capsys.readouterr().out
        assert "tiny: loss" in out and "learning rate" in out and f"{log}:" in out
        # Steps 21 to 25 ran twice: the resumed run's values count.
        assert out.splitlines()[-3:] == [
            "  loss: 30 points, steps 1 to 30, 6 -> 0.1667 (lowest 0.1667 at step 30)",
            "  eval loss: 3 points, steps 10 to 30, 2.5 -> 1.5 (lowest 1.5 at step 30)",
            "  learning rate: 30 points, highest 0.01 at step 5, 0.01 at step 30",
        ]
    assert main(["plot", "--run", str(run), "-o", str(tmp_path / "run.png")]) == 0
    assert_png(tmp_path / "run.png", (800, 800))  # the loss curves, and the learning rate below
    assert main(["plot", "--run", str(tmp_path / "nothing")]) == USAGE
    assert "--run: no metrics log at" in capsys.readouterr().err
    assert main(["plot", JOB, "--run", str(run)]) == USAGE
    assert "give a job, or --run DIR for a local run (not both)" in capsys.readouterr().err


def test_without_the_plot_extra_a_png_says_what_to_install(tmp_path: Path) -> None:
    """The terminal plot needs only the SDK; -o asks for the plot extra, and ends with the exit
    status of an error that is not the user's input."""
    run = local_run(tmp_path / "run")
    ran = run_without(
        ["matplotlib"],
        f"""
        import sys
        from tensorone.cli import main

        assert main(["plot", "--run", {str(run)!r}]) == 0
        raise SystemExit(main(["plot", "--run", {str(run)!r}, "-o", "loss.png"]))
        """,
        cwd=tmp_path,
    )
    assert ran.returncode == exit_codes.exit_code("MISSING_EXTRA") == exit_codes.OTHER, ran.stderr
    assert ran.stderr.strip() == (
        "t1: MISSING_EXTRA: t1 plot -o needs the plot extra, which is not installed here (no module named "
        "matplotlib): pip install 'tensorone-training[plot]'"
    )
    assert "steps 1 to 30" in ran.stdout and not (tmp_path / "loss.png").exists()


def test_events_merge_the_kubernetes_events_with_the_metric_store_in_time_order(
    cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = cluster.api.create(factories.training_job(JOB))
    for reason, at in (("TrainingStarted", "2026-12-01T10:00:00Z"), ("Completed", "2026-12-01T10:00:09Z")):
        cluster.api.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{JOB}-", "namespace": "default"},
                "involvedObject": {"apiVersion": factories.API, "kind": "TrainingJob", "name": JOB},
                "reason": reason,
                "message": reason,
                "type": "Normal",
                "count": 1,
                "lastTimestamp": at,
            }
        )
    moment = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
    records = [
        MetricRecord(seq=1, kind="step", step=1, time=moment, epoch=1, loss=2.5, learning_rate=1e-4, grad_norm=0.75),
        MetricRecord(seq=2, kind="eval", step=1, time=moment + timedelta(seconds=1), epoch=1, eval_loss=2.25),
    ]
    owner = {"apiVersion": factories.API, "kind": "TrainingJob", "name": JOB, "uid": job["metadata"]["uid"]}
    metadata = {"name": metric_store_name(JOB), "namespace": "default", "ownerReferences": [owner]}
    cluster.api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {STORE_KEY: store_text(records)}}
    )

    assert main(["events", JOB]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["TrainingStarted", "TrainingStep", "Evaluation", "Completed"]
    assert lines[2].endswith("step 1 (epoch 1): loss 2.5, lr 0.0001, grad norm 0.75")
    assert main(["events", JOB, "-o", "json"]) == 0
    step = json.loads(capsys.readouterr().out)["events"][1]
    assert step == {
        "type": "Normal",
        "reason": "TrainingStep",
        "message": "step 1 (epoch 1): loss 2.5, lr 0.0001, grad norm 0.75",
        "count": 1,
        "firstSeen": "2026-12-01T10:00:05Z",
        "lastSeen": "2026-12-01T10:00:05Z",
        "step": 1,
        "epoch": 1,
        "loss": 2.5,
        "learningRate": 0.0001,
        "gradNorm": 0.75,
    }
    assert main(["events", JOB, "--no-metrics", "-o", "json"]) == 0
    reasons = [e["reason"] for e in json.loads(capsys.readouterr().out)["events"]]
    assert reasons == ["TrainingStarted", "Completed"]
