"""Pod failures against spec.maxRestarts, and a permanent trainer failure's reason in the status,
with the Training Operator played by hand: under restartPolicy ExitCode it recreates a pod that
exited 128 and up however often, so the operator counts them; a code below 128 fails the child at
once, and the exit-code table names the reason."""

from __future__ import annotations

import copy
from typing import Any

from tensorone_operator.live_status import REPLICA_TYPE_LABEL

from tensorone.api.exit_codes import ExitCode
from tensorone.api.report import ProgressReport, TrainerState
from tests import factories
from tests.factories import PYTORCHJOB
from tests.kube.polling import wait_for
from tests.kube.server import ApiClient, EmulatorServer
from tests.operator.kit import (
    child_job,
    condition,
    dataset,
    job_status,
    phase_is,
    play_training_operator,
    training_job,
)
from tests.operator.runner import OperatorThread

POD = "llama-master-0"


def master_pod_exits(api: ApiClient, code: int, report: ProgressReport) -> str:
    """The job's rank-0 pod, created and ended with ``code`` and ``report`` as its termination
    message, as a kubelet records it; its uid."""
    child = child_job(api)
    template = child["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    spec = copy.deepcopy(template["spec"])
    labels = {**template["metadata"]["labels"], REPLICA_TYPE_LABEL: "master"}
    created = api.create(factories.pod(POD, child, spec=spec, labels=labels))
    status = factories.terminated_pod_status(
        spec["containers"][0], exit_code=code, message=report.termination_message(), finished_at=factories.now()
    )
    api.patch("v1", "Pod", POD, {"status": status}, "default", subresource="status")
    return str(created["metadata"]["uid"])


def restarts(api: ApiClient) -> int:
    return int(job_status(api).get("restarts") or 0)


def failed_report(reason: str, message: str) -> ProgressReport:
    return ProgressReport(state=TrainerState.failed, reason=reason, message=message)


def test_retryable_failures_restart_up_to_max_restarts_then_the_job_fails(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    api = cluster.api
    api.create(dataset())
    api.create(training_job(maxRestarts=2))
    wait_for(lambda: child_job(api))
    play_training_operator(api, "llama", "Running", active=1)
    crash = failed_report("RuntimeError", "NCCL error: unhandled system error")
    for count in (1, 2):
        master_pod_exits(api, ExitCode.UNEXPECTED, crash)
        wait_for(lambda count=count: restarts(api) == count, f"{count} restarts counted")  # type: ignore[misc]
        api.delete("v1", "Pod", POD, "default")  # the Training Operator recreates it
        play_training_operator(api, "llama", "Restarting", active=1)
    assert job_status(api)["phase"] == "Running"
    master_pod_exits(api, ExitCode.UNEXPECTED, crash)
    failed = wait_for(lambda: phase_is(api, "Failed"))
    ended = condition(failed, "Failed")
    assert ended["reason"] == "RestartLimitExceeded" and failed["restarts"] == 3
    assert "more than spec.maxRestarts (2)" in ended["message"]
    assert "exit code 138, RuntimeError: NCCL error" in ended["message"]
    wait_for(lambda: api.find(PYTORCHJOB, "PyTorchJob", "llama") is None, "the child deleted: no pod runs on")
    assert condition(job_status(api), "Ready")["status"] == "False"


def test_a_permanent_failure_ends_failed_once_with_the_trainers_reason(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    api = cluster.api
    api.create(dataset())
    api.create(training_job(resumeFrom="ckpt-nope", maxRestarts=3))
    wait_for(lambda: child_job(api))
    play_training_operator(api, "llama", "Running", active=1)
    message = "no checkpoint ckpt-nope in /checkpoints; available: none"
    master_pod_exits(api, ExitCode.CHECKPOINT, failed_report("CheckpointNotFound", message))
    play_training_operator(
        api, "llama", "Failed", failed=1, message='job "llama" is failing because "Master" replica(s) failed.'
    )

    def explained() -> dict[str, Any] | None:
        status = job_status(api)
        return status if condition(status, "Failed").get("reason") == "CHECKPOINT_NOT_FOUND" else None

    failed = wait_for(explained, "the trainer's reason on the Failed condition")
    assert failed["phase"] == "Failed" and "restarts" not in failed
    assert condition(failed, "Failed")["message"] == f"the trainer ended: CheckpointNotFound: {message} (exit code 5)"
    assert failed["message"] == condition(failed, "Failed")["message"]
