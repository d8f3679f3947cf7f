"""The follow loop: what it keeps of each job, which jobs it follows, and how often it checks a
job held by a failed check."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import REGISTRY
from tensorone_operator.config import OperatorConfig
from tensorone_operator.follower import compact_job, followed
from tensorone_operator.indexes import unpacked

from tests.factories import training_job
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import PYTORCHJOB, dataset, reason_of
from tests.operator.runner import OperatorThread


def stored_job(**status: object) -> dict[str, Any]:
    """A TrainingJob as a watch delivers it: with kubectl's and kopf's copies of its spec."""
    job = training_job()
    job["metadata"].update(
        {
            "uid": "u-1",
            "generation": 3,
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(job),
                "training.tensorone.ai/last-handled-configuration": json.dumps(job["spec"]),
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        }
    )
    job["status"] = dict(status)
    return job


def test_the_compact_copy_keeps_what_a_tick_reads_and_drops_the_copies_of_the_spec() -> None:
    job = stored_job(phase="Running", observedGeneration=3)
    kept = unpacked(compact_job(job))
    assert kept["spec"] == job["spec"]
    assert kept["status"] == {"phase": "Running", "observedGeneration": 3}
    assert kept["metadata"] == {
        "name": "llama",
        "namespace": "default",
        "uid": "u-1",
        "generation": 3,
        "resourceVersion": "42",
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    assert len(compact_job(job)) < len(json.dumps(job)) / 2


def test_finished_jobs_and_jobs_being_deleted_are_not_followed() -> None:
    assert followed(stored_job())
    assert followed(stored_job(phase="Running"))
    assert followed(stored_job(phase="Stopped"))  # it may be resumed
    for phase in ("Completed", "Failed", "Cancelled"):
        assert not followed(stored_job(phase=phase)), phase
    deleting = stored_job(phase="Running")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
    assert not followed(deleting)


def follow_rounds() -> float:
    return REGISTRY.get_sample_value("tensorone_operator_follow_round_seconds_count") or 0.0


def test_a_job_the_api_server_refuses_is_checked_again_ever_less_often(cluster: EmulatorServer) -> None:
    # Every tick would send the refused create again; the checks of a held job back off instead.
    cluster.emulator.faults[("POST", "pytorchjobs")] = 422
    with OperatorThread(cluster, OperatorConfig(progress_poll_seconds=0.1)):
        cluster.api.create(dataset())
        cluster.api.create(training_job())
        wait_for(lambda: reason_of(cluster.api, "ConfigurationValid") == "CONFIGURATION_ERROR")
        start = follow_rounds()
        wait_for(lambda: follow_rounds() >= start + 40, "40 rounds of the follow loop")
        refused = cluster.emulator.faults_answered[("POST", "pytorchjobs")]
    assert 2 <= refused <= 12, f"{refused} refused creates in 40 rounds"
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None
