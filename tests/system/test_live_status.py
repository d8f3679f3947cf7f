"""Live status end to end: the operator mirrors the real trainer's progress, metrics and
checkpoints into the TrainingJob's status, through stop, resume, failure and its own restart."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from tensorone_operator.config import ChildBackend, OperatorConfig, TrainJobProgress
from tensorone_operator.live_status import master_pod_view

from tensorone.api.events import EVAL_REASON, STEP_REASON, metric_store_name
from tensorone.api.trainer_status import FORMAT_METRIC
from tensorone.client import TensorOneClient
from tensorone.reporting.trainer_status import POST_SECONDS_ENV
from tests.factories import stop_reason, tiny_dataset, tiny_training_job
from tests.kube.polling import wait_for
from tests.system.conftest import POLL_SECONDS, TRAINING_TIMEOUT, LocalCluster, local_cluster

pytestmark = pytest.mark.slow


# The lifecycle on both backends (a PyTorchJob child, a TrainJob child): completion, stop and
# resume, a failure with its reason. The other tests run on the default backend (pytorchjob): each
# run of a test costs a training run, and the suite's time is bounded.
both_backends = pytest.mark.parametrize("backend", list(ChildBackend))


@both_backends
def test_status_fills_in_while_training_and_ends_completed_with_the_final_checkpoint(
    cluster: LocalCluster, backend: ChildBackend
) -> None:
    cluster.apply(tiny_dataset())
    cluster.apply(tiny_training_job("live", epochs=12))
    running = wait_for(
        lambda: (
            s
            if (s := cluster.phase_is("live", "Running")) and (s.get("progress") or {}).get("currentStep", 0) >= 2
            else None
        ),
        "a Running status with progress",
    )
    assert running["progress"]["totalSteps"] == 96 and running["progress"]["totalEpochs"] == 12
    assert running["metrics"]["currentLoss"] > 0 and running["metrics"]["throughputUnit"] == "tokens/sec"
    assert running["resourceUsage"]["runningSeconds"] >= 0 and running["lastReportTime"]

    wait_for(lambda: cluster.phase_is("live", "Completed"), "Completed", timeout=TRAINING_TIMEOUT)
    done = wait_for(
        lambda: s if (s := cluster.status("live")).get("progress", {}).get("currentStep") == 96 else None, "final"
    )
    assert done["progress"]["percentage"] == 100.0
    ids = [c["id"] for c in done["checkpoints"]]
    assert "ckpt-epoch-12" in ids, ids
    assert done["metrics"]["bestLoss"] <= done["lossHistory"][0]["loss"]
    assert done["lossHistory"][-1]["step"] == 96 and len(done["lossHistory"]) <= 64
    assert done["completedAt"] and "estimatedCompletion" not in done
    # Events are posted in the background: wait for them too.
    wanted = {"TrainingStarted", "CheckpointSaved", "EpochCompleted", "Running", "Completed"}
    wait_for(
        lambda: wanted <= {e["reason"] for e in cluster.events("live")},
        "the lifecycle Events",
        explain=lambda: str(sorted({e["reason"] for e in cluster.events("live")})),
    )

    # Every step's metrics, from the job's metric store, merged in time order with the Events.
    client = TensorOneClient(namespace="default", api_client=k8s.ApiClient(k8s.Configuration(host=cluster.server.url)))
    events = client.training.jobs.list_events("live")
    steps = [e for e in events if e.reason == STEP_REASON]
    assert [e.step for e in steps] == list(range(1, 97)), [e.step for e in steps]
    assert all(e.loss and e.learning_rate and e.grad_norm and e.tokens_per_second for e in steps)
    evals = [e.step for e in events if e.reason == EVAL_REASON]
    assert evals == [point["step"] for point in done.get("evalLossHistory") or []]
    assert steps[-1].loss == pytest.approx(done["metrics"]["currentLoss"], abs=1e-6)
    times = [e.last_seen for e in events]
    assert times == sorted(times)  # type: ignore[type-var]
    reasons = [e.reason for e in events]
    # A Kubernetes Event has the time the operator posted it, a step the time the trainer took it: on a
    # busy machine the operator may notice the start after the first steps, never the end before the last.
    assert "TrainingStarted" in reasons and reasons[-1] == "Completed", reasons
    store = cluster.server.api.get("v1", "ConfigMap", metric_store_name("live"))
    assert store["metadata"]["ownerReferences"][0]["name"] == "live"


@both_backends
def test_stop_lists_the_stop_checkpoint_and_resume_ends_like_an_uninterrupted_run(
    cluster: LocalCluster, backend: ChildBackend
) -> None:
    cluster.apply(tiny_dataset())
    cluster.apply(tiny_training_job("reference", epochs=8))
    cluster.apply(tiny_training_job("paused", epochs=8))
    wait_for(
        lambda: (cluster.status("paused").get("progress") or {}).get("currentStep", 0) >= 3,
        "steps of the job to stop",
    )
    with cluster.paused("paused"):  # stopped mid-run, however fast the rest of the run would be
        cluster.patch_spec("paused", {"suspend": True})
        wait_for(lambda: cluster.child_suspended("paused"), "the stop reaching the PyTorchJob")
    wait_for(lambda: cluster.phase_is("paused", "Stopped"), "Stopped")
    stopped = wait_for(
        lambda: s if (s := cluster.status("paused")) and _checkpoint_at_current_step(s) is not None else None,
        "the stop checkpoint in the status",
        explain=lambda: cluster.diagnose("paused"),
    )
    stop_checkpoint = _checkpoint_at_current_step(stopped)
    assert stop_checkpoint is not None and stop_checkpoint["step"] < 64
    assert stop_checkpoint["reason"] == stop_reason(stopped["progress"])

    cluster.patch_spec("paused", {"suspend": False, "resumeFrom": stop_checkpoint["id"]})
    resumed = wait_for(lambda: cluster.status("paused").get("resumedFrom"), "the resumed run's report")
    assert resumed == stop_checkpoint["id"]
    wait_for(lambda: cluster.phase_is("paused", "Completed"), "the resumed job Completed", timeout=TRAINING_TIMEOUT)
    wait_for(
        lambda: cluster.phase_is("reference", "Completed"), "the reference job Completed", timeout=TRAINING_TIMEOUT
    )
    final = wait_for(
        lambda: s if (s := cluster.status("paused"))["progress"]["currentStep"] == 64 else None, "final step"
    )
    reference = wait_for(
        lambda: s if (s := cluster.status("reference"))["progress"]["currentStep"] == 64 else None, "final"
    )
    assert final["metrics"]["currentLoss"] == reference["metrics"]["currentLoss"]
    assert final["resourceUsage"]["runningSeconds"] > 0
    wait_for(
        lambda: {"Stopped", "TrainingResumed", "Completed"} <= {e["reason"] for e in cluster.events("paused")},
        "the stop and resume Events",
        explain=lambda: str([e["reason"] for e in cluster.events("paused")]),
    )
    assert "Queued" not in [e["reason"] for e in cluster.events("paused")]


def test_a_diverging_trainer_ends_failed_with_the_reason(cluster: LocalCluster) -> None:
    cluster.node.extra_env["TENSORONE_FAULT_NAN_AT_STEP"] = "3"
    cluster.apply(tiny_dataset())
    cluster.apply(tiny_training_job("diverging", epochs=2))
    failed = wait_for(lambda: cluster.phase_is("diverging", "Failed"), "Failed")
    failed = wait_for(
        lambda: s if (s := cluster.status("diverging")) and "Diverged" in (s.get("message") or "") else None,
        "the reason",
    )
    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert condition["status"] == "True" and condition["reason"] == "Diverged"
    assert any(c["step"] < 3 for c in failed.get("checkpoints", [])) or not failed.get("checkpoints")
    wait_for(
        lambda: any(e["reason"] == "Diverged" and e["type"] == "Warning" for e in cluster.events("diverging")),
        "a Diverged warning Event",
    )


@both_backends
def test_a_crashing_trainer_ends_failed_with_the_reason(cluster: LocalCluster, backend: ChildBackend) -> None:
    good = [{"prompt": "a", "completion": " b"}] * 20
    cluster.apply(tiny_dataset("broken", records=good + [{"prompt": "no completion here"}] * 20))
    cluster.apply(tiny_training_job("crashing", dataset_id="broken", epochs=1))
    wait_for(lambda: cluster.phase_is("crashing", "Failed"), "Failed")
    failed = wait_for(
        lambda: s if (s := cluster.status("crashing")) and "DataError" in (s.get("message") or "") else None,
        "the reason",
    )
    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "DATA_ERROR" and "DataError" in condition["message"] and "row" in condition["message"]
    wait_for(
        lambda: any(e["reason"] == "Failed" and e["type"] == "Warning" for e in cluster.events("crashing")),
        "a Failed warning Event",
    )


def test_a_resume_to_a_checkpoint_that_does_not_exist_fails_once_with_the_reason(cluster: LocalCluster) -> None:
    job = tiny_training_job("lost", epochs=1, max_restarts=3)
    job["spec"]["resumeFrom"] = "ckpt-does-not-exist"
    cluster.apply(tiny_dataset())
    cluster.apply(job)
    failed = wait_for(
        lambda: (
            s
            if (s := cluster.status("lost")).get("phase") == "Failed"
            and next(c for c in s["conditions"] if c["type"] == "Failed")["reason"] == "CHECKPOINT_NOT_FOUND"
            else None
        ),
        "Failed with CHECKPOINT_NOT_FOUND",
        timeout=TRAINING_TIMEOUT,
    )
    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert "CheckpointNotFound" in condition["message"] and "ckpt-does-not-exist" in condition["message"]
    assert "(exit code 5)" in condition["message"]
    assert cluster.node.runs[("default", "lost")].restarts == 0  # a permanent error is never retried
    assert "restarts" not in failed


def test_an_unexpected_error_is_retried_up_to_max_restarts_then_the_job_fails(cluster: LocalCluster) -> None:
    # A fault setting the loop cannot parse: a ValueError, which no table of ours expects (exit 138).
    cluster.node.extra_env["TENSORONE_FAULT_NAN_AT_STEP"] = "not-a-step"
    cluster.apply(tiny_dataset())
    cluster.apply(tiny_training_job("flaky", epochs=1, max_restarts=1))
    failed = wait_for(lambda: cluster.phase_is("flaky", "Failed"), "Failed", timeout=TRAINING_TIMEOUT)
    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "RestartLimitExceeded", condition
    assert "more than spec.maxRestarts (1)" in condition["message"] and "exit code 138" in condition["message"]
    assert "ValueError" in condition["message"]
    assert failed["restarts"] == 2
    wait_for(lambda: cluster.child("flaky") is None, "the child deleted")
    wait_for(lambda: ("default", "flaky") not in cluster.node.runs, "no pod runs on")


def test_a_restarted_operator_picks_up_and_keeps_mirroring(cluster: LocalCluster) -> None:
    cluster.apply(tiny_dataset())
    cluster.apply(tiny_training_job("enduring", epochs=12))
    before = wait_for(
        lambda: s if ((s := cluster.status("enduring")).get("progress") or {}).get("currentStep", 0) >= 2 else None,
        "progress before the restart",
    )
    with cluster.paused("enduring"):  # restarted mid-run, however fast the rest of the run would be
        cluster.restart_operator()
    later = wait_for(
        lambda: (
            s
            if (s := cluster.status("enduring")) and s["progress"]["currentStep"] > before["progress"]["currentStep"]
            else None
        ),
        "progress after the restart",
        explain=lambda: cluster.diagnose("enduring"),
    )
    assert later["lastReportTime"] >= before["lastReportTime"]
    wait_for(lambda: cluster.phase_is("enduring", "Completed"), "Completed", timeout=TRAINING_TIMEOUT)
    done = wait_for(
        lambda: s if (s := cluster.status("enduring"))["progress"]["currentStep"] == 96 else None, "final step"
    )
    assert "ckpt-epoch-12" in [c["id"] for c in done["checkpoints"]]
    wait_for(lambda: any(e["reason"] == "Completed" for e in cluster.events("enduring")), "Completed Event")
    started = [e for e in cluster.events("enduring") if e["reason"] == "TrainingStarted"]
    assert len(started) == 1, "a restarted operator does not announce the start again"


def test_a_trainjob_status_fills_in_from_trainer_status_without_reaching_the_pods(tmp_path: Path) -> None:
    # Trainer v2.2 with its TrainJobStatus gate: the trainer posts its report to the controller's
    # endpoint (HTTPS, a token for this job); the operator reads the TrainJob's trainerStatus and
    # never contacts a pod: the pods' report ports close every connection, and count them.
    config = OperatorConfig(
        progress_poll_seconds=POLL_SECONDS,
        backend=ChildBackend.trainjob,
        train_job_progress=TrainJobProgress.trainer_status,
    )
    with local_cluster(tmp_path, config) as cluster:
        endpoint = cluster.node.trainer.serve_status()
        cluster.node.close_report_ports()
        cluster.node.extra_env[POST_SECONDS_ENV] = "1"
        cluster.apply(tiny_dataset())
        cluster.apply(tiny_training_job("posted", epochs=8))

        def posted() -> dict[str, str]:
            child = cluster.child("posted") or {}
            status = (child.get("status") or {}).get("trainerStatus") or {}
            return {m["name"]: m["value"] for m in status.get("metrics") or []}

        wait_for(lambda: int(posted().get("current_step") or 0) >= 2, "a post with progress")
        # The trainer frozen mid-run: what the status shows now can only come from a post.
        with cluster.paused("posted"):
            running = wait_for(
                lambda: (
                    s
                    if (s := cluster.phase_is("posted", "Running"))
                    and (s.get("progress") or {}).get("currentStep") == int(posted()["current_step"])
                    else None
                ),
                "the posted step in a Running status",
                explain=lambda: cluster.diagnose("posted"),
            )
        assert posted()[FORMAT_METRIC] == "1" and posted()["state"] == "running"
        assert running["progress"]["totalSteps"] == 64 and running["metrics"]["currentLoss"] > 0
        assert running["metrics"]["throughputUnit"] == "tokens/sec" and running["lastReportTime"]
        seen_step = running["progress"]["currentStep"]

        wait_for(lambda: cluster.phase_is("posted", "Completed"), "Completed", timeout=TRAINING_TIMEOUT)
        done = wait_for(
            lambda: s if (s := cluster.status("posted")).get("progress", {}).get("currentStep") == 64 else None,
            "final",
        )
        assert done["progress"]["percentage"] == 100.0
        assert "ckpt-epoch-8" in [c["id"] for c in done["checkpoints"]], done["checkpoints"]
        steps = [point["step"] for point in done["lossHistory"]]
        assert steps[-1] == 64 and seen_step in steps and steps == sorted(steps), steps
        wanted = {"TrainingStarted", "CheckpointSaved", "Completed"}
        wait_for(
            lambda: wanted <= {e["reason"] for e in cluster.events("posted")},
            "the lifecycle Events",
            explain=lambda: str(sorted({e["reason"] for e in cluster.events("posted")})),
        )
        final = cluster.child("posted")
        assert final is not None and final["status"]["trainerStatus"]["progressPercentage"] == 100
        assert endpoint.taken >= 2 and endpoint.refused == []
        assert cluster.node.report_port_connections == 0
        # Where the operator would have polled (its view of the rank-0 Pod) is the closed port indeed.
        views = [master_pod_view(p, now=datetime.now(UTC)) for p in cluster.server.api.list("v1", "Pod", "default")]
        pod = next(view for view in views if view is not None)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{pod['podIP']}:{pod['reportPort']}/progress", timeout=5)
        assert cluster.node.report_port_connections == 1
        assert not any(c["type"] == "ReportValid" for c in done["conditions"])


def _checkpoint_at_current_step(status: dict[str, Any]) -> dict[str, Any] | None:
    step = (status.get("progress") or {}).get("currentStep")
    return next((c for c in status.get("checkpoints", []) if c.get("step") == step), None)
