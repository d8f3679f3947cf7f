"""``t1 watch`` as a user runs it: on a terminal (a pty), the live view drawn as the real operator
moves a job from Pending through Running (a fake trainer's report) to Completed; on a pipe, one
line per change; and the exit status of each final phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tensorone.cli.exit_codes import JOB_CANCELLED, JOB_FAILED, JOB_STOPPED, NOT_FOUND, OK, USAGE
from tensorone.cli.watch import final_phase
from tensorone.client import Job
from tests.cli.terminal import T1
from tests.factories import API, dataset, training_job
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import phase_is, play_training_operator, run_master_pod
from tests.operator.report_server import ReportServer, report_json
from tests.operator.runner import OperatorThread

CURVE = [{"step": step, "loss": loss} for step, loss in [(1, 3.0), (10, 2.2), (20, 1.6), (30, 1.25)]]
REPORT = report_json(
    step=30,
    epoch=1,
    totalEpochs=2,
    loss=1.25,
    bestLoss=1.2,
    evalLoss=1.4,
    bestEvalLoss=1.4,
    learningRate=2e-4,
    tokensPerSecond=1250.0,
    lossHistory=CURVE,
)


def test_watch_draws_the_job_live_until_it_completes(
    cluster: EmulatorServer, operator: OperatorThread, kubeconfig: Path
) -> None:
    cluster.api.create(dataset())
    cluster.api.create(training_job())
    wait_for(lambda: phase_is(cluster.api, "Pending"))
    with ReportServer() as trainer, T1(["watch", "llama"], kubeconfig, tty=True) as t1:
        trainer.report = REPORT
        t1.wait_for_text("trainingjob/llama (default)", "Pending")
        run_master_pod(cluster.api, "llama", trainer.port)
        t1.wait_for_text("Running", "step 30/100", "1.25 (best 1.2)", "Loss curve", "TrainingStarted")
        frame = t1.last_frame("╭─ trainingjob/llama")
        assert "━" in frame  # the progress bar
        assert "30.0%  epoch 1/2  step 30/100" in frame and "ETA " in frame
        assert "eval 1.4 (best 1.4)" in frame and "Learning rate  0.0002" in frame
        assert "1250 tokens/sec" in frame and "so far" in frame
        assert "█▅▂▁  3 -> 1.25, steps 1-30" in frame
        assert "Events" in frame and "training started: 100 steps planned" in frame  # the operator's Event
        play_training_operator(cluster.api, "llama", "Succeeded", succeeded=1)
        assert t1.wait() == OK, t1.stderr
        final = t1.last_frame("╭─ trainingjob/llama")
        assert "Completed" in final and "ETA" not in final
    assert "Traceback" not in t1.stderr


def set_phase(cluster: EmulatorServer, phase: str, **status: Any) -> None:
    cluster.api.patch_status(API, "TrainingJob", "llama", {"phase": phase, **status})


def test_without_a_terminal_each_change_is_one_line(cluster: EmulatorServer, kubeconfig: Path) -> None:
    cluster.api.create(dataset())
    cluster.api.create(training_job())
    set_phase(cluster, "Running", progress={"currentStep": 5, "totalSteps": 10, "percentage": 50.0})
    with T1(["watch", "llama"], kubeconfig, tty=False) as t1:
        t1.wait_for_text("trainingjob/llama Running: epoch 0/?, step 5/10 (50.0%)")
        cluster.api.patch_status(API, "TrainingJob", "llama", {"lastReportTime": "2026-01-15T12:00:00Z"})
        set_phase(cluster, "Running", metrics={"currentLoss": 0.75})
        t1.wait_for_text("loss 0.75")
        set_phase(cluster, "Failed", message="the trainer failed: out of memory")
        assert t1.wait() == JOB_FAILED
    lines = t1.text().splitlines()
    # A change the line does not show (lastReportTime) prints nothing; each other change one line.
    assert [line.split(" ", 2)[2].split(":")[0] for line in lines] == ["Running", "Running", "Failed"]
    assert all(line.split(" ", 1)[0].endswith("Z") for line in lines)  # RFC 3339 times
    assert lines[-1].endswith("; the trainer failed: out of memory")


@pytest.mark.parametrize(
    ("phase", "suspend", "status"),
    [
        ("Completed", False, OK),
        ("Failed", False, JOB_FAILED),
        ("Cancelled", False, JOB_CANCELLED),
        ("Stopped", True, JOB_STOPPED),
    ],
)
def test_each_final_phase_has_its_exit_status(
    cluster: EmulatorServer, kubeconfig: Path, phase: str, suspend: bool, status: int
) -> None:
    cluster.api.create(dataset())
    cluster.api.create(training_job(suspend=suspend))
    with T1(["watch", "llama"], kubeconfig, tty=False) as t1:
        t1.wait_for_text("trainingjob/llama Pending")
        set_phase(cluster, phase)
        assert t1.wait() == status, t1.stderr
    assert t1.text().splitlines()[-1].split(" ")[2] == f"{phase}:"


def test_a_stopped_job_being_resumed_is_not_the_end() -> None:
    job = training_job(suspend=False)
    assert final_phase(Job.from_object({**job, "status": {"phase": "Stopped"}})) is None
    suspended = training_job(suspend=True)
    assert final_phase(Job.from_object({**suspended, "status": {"phase": "Stopped"}})) == "Stopped"
    assert final_phase(Job.from_object({**job, "status": {"phase": "Stopping"}})) is None


def test_a_missing_job_and_the_gateway_are_one_line_errors(
    cluster: EmulatorServer, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tensorone.cli import main

    assert main(["watch", "missing"]) == NOT_FOUND
    assert capsys.readouterr().err.startswith("t1: JOB_NOT_FOUND: training job 'missing' not found")
    monkeypatch.setenv("TENSORONE_BASE_URL", "http://127.0.0.1:9")
    assert main(["watch", "llama"]) == USAGE
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "t1: CONFIGURATION_ERROR: TENSORONE_BASE_URL: t1 watch needs the Kubernetes API (the kubeconfig), and this "
        "shell sends t1 to the gateway",
        "t1: hint: unset TENSORONE_BASE_URL for this verb (env -u TENSORONE_BASE_URL t1 ...): t1 then uses the "
        "kubeconfig",
    ]
