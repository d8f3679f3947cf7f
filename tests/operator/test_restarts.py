"""Pod failures against spec.maxRestarts, and a permanent trainer failure's reason in the status,
with the Training Operator played by hand: under restartPolicy ExitCode it recreates a pod that
exited 128 and up however often, so the operator counts them; a code below 128 fails the child at
once, and the exit-code table names the reason, whichever replica failed."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from tensorone_operator.builders import MASTER_REPLICA, WORKER_REPLICA
from tensorone_operator.live_status import REPLICA_TYPE_LABEL

from tensorone.api.exit_codes import ExitCode, meaning
from tensorone.api.report import ProgressReport, TrainerState
from tests import factories
from tests.factories import PYTORCHJOB
from tests.kube.polling import wait_for
from tests.kube.server import ApiClient, EmulatorServer
from tests.kube.training_operator import ReplicaStatus, after_pod_failure, move_child
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
WORKER_POD = "llama-worker-0"


def pod_exits(
    api: ApiClient, code: int, report: ProgressReport | str, *, name: str = POD, replica: str = MASTER_REPLICA
) -> str:
    """A pod of the job's ``replica``, created and ended with ``code`` and ``report`` as its
    termination message (or what else the container wrote there), as a kubelet records it; its uid."""
    child = child_job(api)
    template = child["spec"]["pytorchReplicaSpecs"][replica]["template"]
    spec = copy.deepcopy(template["spec"])
    labels = {**template["metadata"]["labels"], REPLICA_TYPE_LABEL: replica.lower()}
    created = api.create(factories.pod(name, child, spec=spec, labels=labels))
    message = report if isinstance(report, str) else report.termination_message()
    status = factories.terminated_pod_status(
        spec["containers"][0], exit_code=code, message=message, finished_at=factories.now()
    )
    api.patch("v1", "Pod", name, {"status": status}, "default", subresource="status")
    return str(created["metadata"]["uid"])


def restarts(api: ApiClient) -> int:
    return int(job_status(api).get("restarts") or 0)


def failed_report(reason: str, message: str, **fields: Any) -> ProgressReport:
    return ProgressReport(state=TrainerState.failed, reason=reason, message=message, **fields)


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
        pod_exits(api, ExitCode.UNEXPECTED, crash)
        wait_for(lambda count=count: restarts(api) == count, f"{count} restarts counted")  # type: ignore[misc]
        api.delete("v1", "Pod", POD, "default")  # the Training Operator recreates it
        play_training_operator(api, "llama", "Restarting", active=1)
    assert job_status(api)["phase"] == "Running"
    pod_exits(api, ExitCode.UNEXPECTED, crash)
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
    pod_exits(api, ExitCode.CHECKPOINT, failed_report("CheckpointNotFound", message))
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


def test_a_permanent_failure_without_a_report_is_named_by_its_exit_code(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    api = cluster.api
    api.create(dataset())
    api.create(training_job())
    wait_for(lambda: child_job(api))
    play_training_operator(api, "llama", "Running", active=1)
    pod_exits(api, ExitCode.CONFIGURATION, "Traceback (most recent call last): ...")  # no report
    play_training_operator(
        api, "llama", "Failed", failed=1, message='job "llama" is failing because "Master" replica(s) failed.'
    )

    def explained() -> dict[str, Any] | None:
        status = job_status(api)
        return status if condition(status, "Failed").get("reason") == "CONFIGURATION_ERROR" else None

    failed = wait_for(explained, "the exit code's reason on the Failed condition")
    assert failed["message"] == (
        f"the trainer in Master pod {POD} ended with exit code 2 (configuration error: the job must be changed)"
    )
    assert "termination message of pod llama-master-0" in condition(failed, "ReportValid")["message"]


def test_a_worker_failing_for_good_names_itself_its_exit_code_and_its_trainers_message(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    """The Training Operator's message says only that a Worker failed: the job's says which pod,
    with what code and what its trainer told. The rank-0 report stays the job's report."""
    api = cluster.api
    api.create(dataset())
    api.create(training_job(maxWorkers=2, maxRestarts=1))
    wait_for(lambda: child_job(api))
    play_training_operator(api, "llama", "Running", active=2)
    # rank 0 crashed once and was restarted: its report of that run tells of a failure that did not end the job.
    started = factories.now()
    pod_exits(api, ExitCode.UNEXPECTED, failed_report("RuntimeError", "NCCL error", started_at=started, step=40))
    wait_for(lambda: restarts(api) == 1, "the restart counted")
    api.delete("v1", "Pod", POD, "default")
    play_training_operator(api, "llama", "Restarting", active=2)

    message = "12 of 20 records of Dataset chat are not valid JSON (more than 10% bad rows)"
    worker = failed_report("DataError", message, started_at=started, step=41)
    pod_exits(api, ExitCode.DATA, worker, name=WORKER_POD, replica=WORKER_REPLICA)
    verdict = after_pod_failure("llama", WORKER_REPLICA, "ExitCode", ExitCode.DATA, restarts=0, backoff_limit=1)
    assert not verdict.restart
    replicas = {MASTER_REPLICA: ReplicaStatus(active=1), WORKER_REPLICA: ReplicaStatus(failed=1)}
    move_child(api, "llama", "default", "Failed", replicas=replicas, reason=verdict.reason, message=verdict.message)

    def explained() -> dict[str, Any] | None:
        status = job_status(api)
        return status if condition(status, "Failed").get("reason") == "DATA_ERROR" else None

    failed = wait_for(explained, "the Worker's exit code on the Failed condition")
    expected = f"the trainer in Worker pod {WORKER_POD} ended with exit code 3 ({meaning(ExitCode.DATA)})"
    expected += f": DataError: {message}"
    assert expected.startswith("the trainer in Worker pod llama-worker-0 ended with exit code 3 (data error: ")
    assert failed["phase"] == "Failed" and failed["message"] == condition(failed, "Failed")["message"] == expected
    assert failed["progress"]["currentStep"] == 40  # rank 0's last report, never the Worker's

    # The new rank-0 pod is deleted as the job ends, and says so: its report is the job's, the message stays.
    stopped = ProgressReport(state=TrainerState.stopped, started_at=started + timedelta(seconds=1), step=7)
    pod_exits(api, 0, stopped)
    after = wait_for(lambda: (s := job_status(api)).get("progress", {}).get("currentStep") == 7 and s)
    assert after["message"] == expected and condition(after, "Failed")["reason"] == "DATA_ERROR"
