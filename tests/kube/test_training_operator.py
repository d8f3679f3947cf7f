"""The PyTorchJob status moves the node and the hand-played tests share (pure functions)."""

from __future__ import annotations

from tests.kube.training_operator import PyTorchJobStatus, after_pod_failure


def states(status: PyTorchJobStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_a_run_from_created_to_succeeded() -> None:
    status = PyTorchJobStatus.of({})
    status.created("j", "t0")
    status.running("j", "t1")
    assert states(status) == {"Created": ("True", "PyTorchJobCreated"), "Running": ("True", "PyTorchJobRunning")}
    assert status.start_time == "t1" and status.completion_time is None
    status.succeeded("j", "t2")
    assert states(status)["Running"] == ("False", "PyTorchJobSucceeded")
    assert states(status)["Succeeded"] == ("True", "PyTorchJobSucceeded")
    succeeded, created = status.condition("Succeeded"), status.condition("Created")
    assert succeeded is not None and succeeded.message == "PyTorchJob j is successfully completed."
    assert created is not None and created.last_transition_time == "t0"
    assert (status.start_time, status.completion_time) == ("t1", "t2")


def test_a_restart_replaces_running_and_the_next_running_replaces_it() -> None:
    status = PyTorchJobStatus.of({})
    status.running("j", "t1")
    status.restarting("j", "t2", message="j-master-0 exited 137.")
    assert "Running" not in states(status)
    assert states(status)["Restarting"] == ("True", "PyTorchJobRestarting")
    status.running("j", "t3")
    assert "Restarting" not in states(status)
    running = status.condition("Running")
    assert running is not None and running.last_transition_time == "t3"
    assert status.start_time == "t1"


def test_suspend_and_resume() -> None:
    status = PyTorchJobStatus.of({})
    status.running("j", "t1")
    status.suspended("j", "t2")
    assert states(status)["Running"] == ("False", "PyTorchJobSuspended")
    assert states(status)["Suspended"] == ("True", "PyTorchJobSuspended")
    status.running("j", "t3")
    assert states(status)["Suspended"] == ("False", "PyTorchJobResumed")
    assert states(status)["Running"] == ("True", "PyTorchJobRunning")


def test_a_failure_carries_its_reason_and_the_wire_form_is_camel_case() -> None:
    status = PyTorchJobStatus.of({"status": {"conditions": [], "replicaStatuses": {"Master": {"active": 1}}}})
    status.running("j", "t1")
    status.failed("j", "t2", reason="BackoffLimitExceeded", message="pod j-master-0 failed")
    wire = status.to_wire()
    assert wire["replicaStatuses"] == {"Master": {"active": 1, "succeeded": 0, "failed": 0}}
    assert wire["completionTime"] == "t2" and wire["startTime"] == "t1"
    failed = next(c for c in wire["conditions"] if c["type"] == "Failed")
    assert failed == {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "pod j-master-0 failed",
        "lastUpdateTime": "t2",
        "lastTransitionTime": "t2",
    }


def test_exit_code_policy_retries_128_and_up_however_often_and_fails_below() -> None:
    for restarts in (0, 5, 50):
        verdict = after_pod_failure("j", "Master", "ExitCode", 138, restarts=restarts, backoff_limit=3)
        assert verdict.restart, restarts
    assert after_pod_failure("j", "Master", "ExitCode", 137, restarts=0, backoff_limit=0).restart
    permanent = after_pod_failure("j", "Master", "ExitCode", 5, restarts=0, backoff_limit=3)
    assert not permanent.restart
    assert permanent.reason == "PyTorchJobFailed"
    assert permanent.message == 'job "j" is failing because "Master" replica(s) failed.'


def test_on_failure_retries_within_the_backoff_limit() -> None:
    assert after_pod_failure("j", "Master", "OnFailure", 1, restarts=2, backoff_limit=3).restart
    past = after_pod_failure("j", "Master", "OnFailure", 138, restarts=3, backoff_limit=3)
    assert not past.restart and "reached the specified backoff limit" in past.message
    assert after_pod_failure("j", "Master", "OnFailure", 1, restarts=99, backoff_limit=None).restart
    assert not after_pod_failure("j", "Master", "Never", 138, restarts=0, backoff_limit=3).restart
