"""A custom image that follows the trainer's exit-code table (``config.custom.exitCodes: Trainer``),
under the real operator, with ``LocalNode`` playing the Training Operator and the kubelet: its
pods run under ``restartPolicy: ExitCode``, so a permanent code fails the job at once with the
table's reason, and a retryable one is restarted and counted by the operator against
spec.maxRestarts, as for the trainer's own pods."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.exit_codes import ExitCode
from tests.factories import PYTORCHJOB, dataset, training_job
from tests.kube.node import LocalNode
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import child_job, condition, job_status, phase_is
from tests.operator.runner import OperatorThread

KEY = ("default", "llama")

# The image's entrypoint: it reports a failure (argv: exit code, reason, message) through
# tensorone.reporting, which writes the termination message, and exits with the code.
FAILING = """
import sys
from tensorone.reporting.client import Reporter, TrainerState

code, reason, message = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with Reporter() as reporter:
    reporter.finish(TrainerState.failed, reason=reason, message=message)
sys.exit(code)
"""


def custom_job(code: int, reason: str, message: str, *, max_restarts: int) -> dict[str, Any]:
    custom = {
        "image": "registry.example.com/ml/strict-trainer:1.0",
        "command": ["python", "-c", FAILING],
        "args": [str(code), reason, message],
        "exitCodes": "Trainer",
    }
    return training_job(modelType="custom", config={"custom": custom}, maxRestarts=max_restarts)


@pytest.fixture
def node(cluster: EmulatorServer, operator: OperatorThread, tmp_path: Path) -> Iterator[LocalNode]:
    with LocalNode(cluster, tmp_path) as running:
        yield running
    assert running.errors == [], running.errors


def test_a_permanent_exit_code_fails_the_job_at_once_with_the_tables_reason(
    cluster: EmulatorServer, node: LocalNode
) -> None:
    api = cluster.api
    api.create(dataset())
    api.create(custom_job(ExitCode.CONFIGURATION, "BadSchedule", "warmup longer than the run", max_restarts=3))
    assert wait_for(lambda: child_job(api))["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicy"] == "ExitCode"

    def explained() -> dict[str, Any] | None:
        status = job_status(api)
        return status if condition(status, "Failed").get("reason") == "CONFIGURATION_ERROR" else None

    failed = wait_for(explained, "Failed with the table's reason", explain=lambda: node.pod_log(*KEY))
    assert failed["phase"] == "Failed" and "restarts" not in failed
    message = "the trainer ended: BadSchedule: warmup longer than the run (exit code 2)"
    assert condition(failed, "Failed")["message"] == message
    assert node.runs[KEY].restarts == 0  # within maxRestarts, yet never restarted


def test_a_retryable_exit_code_restarts_counted_against_max_restarts(cluster: EmulatorServer, node: LocalNode) -> None:
    api = cluster.api
    api.create(dataset())
    api.create(custom_job(ExitCode.UNEXPECTED, "RuntimeError", "NCCL error: unhandled system error", max_restarts=1))
    failed = wait_for(lambda: phase_is(api, "Failed"), "Failed", explain=lambda: node.pod_log(*KEY))
    ended = condition(failed, "Failed")
    # One more than maxRestarts (on a busy machine the node may restart once more before the job ends).
    assert ended["reason"] == "RestartLimitExceeded" and failed["restarts"] >= 2
    assert "more than spec.maxRestarts (1)" in ended["message"]
    assert "exit code 138, RuntimeError: NCCL error" in ended["message"]
    wait_for(lambda: api.find(PYTORCHJOB, "PyTorchJob", "llama") is None, "the child deleted: no pod runs on")
