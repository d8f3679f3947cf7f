"""A preemption end to end: a job's pod is drained mid-run (the eviction API's DisruptionTarget,
then SIGTERM within the grace period), its trainer saves a checkpoint, the Training Operator creates
the pod again and the job resumes from that checkpoint to the same final weights as a run never
interrupted. A preemption, not a failure: the job allows no restart at all."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import tiny_dataset, tiny_training_job
from tests.kube.polling import wait_for
from tests.system.conftest import TRAINING_TIMEOUT, LocalCluster

pytestmark = pytest.mark.slow

EPOCHS = 3  # 24 steps of the tiny job


def current_step(status: dict[str, Any]) -> int:
    return int((status.get("progress") or {}).get("currentStep") or 0)


def stop_step(checkpoint: str, *, steps_per_epoch: int) -> int:
    """The step of a checkpoint by its id: ckpt-step-N, or ckpt-epoch-N when the stop fell on an
    epoch's last step."""
    kind, number = checkpoint.removeprefix("ckpt-").split("-")
    return int(number) * (steps_per_epoch if kind == "epoch" else 1)


def with_output(cluster: LocalCluster, name: str) -> dict[str, Any] | None:
    """The status of a Completed job once it lists its final model."""
    status = cluster.phase_is(name, "Completed")
    return status if status is not None and status.get("output") else None


def test_a_drained_pod_saves_a_checkpoint_and_the_job_resumes_to_the_same_weights(cluster: LocalCluster) -> None:
    cluster.apply(tiny_dataset())
    cluster.apply(tiny_training_job("reference", epochs=EPOCHS))
    cluster.apply(tiny_training_job("drained", epochs=EPOCHS))  # maxRestarts 0: one failure would fail it
    wait_for(lambda: current_step(cluster.status("drained")) >= 3, "steps of the job to drain")
    with cluster.paused("drained"):  # drained mid-run, however fast the rest of the run would be
        cluster.node.drain("default", "drained")
        wait_for(
            lambda: (cluster.server.api.find("v1", "Pod", "drained-master-0") or {})["metadata"].get(
                "deletionTimestamp"
            ),
            "the eviction reaching the pod",
        )
    resumed_from = wait_for(
        lambda: cluster.status("drained").get("resumedFrom"),
        "the recreated pod's report",
        explain=lambda: cluster.diagnose("drained"),
    )
    done = wait_for(lambda: with_output(cluster, "drained"), "the drained job Completed", timeout=TRAINING_TIMEOUT)
    reference = wait_for(lambda: with_output(cluster, "reference"), "the reference Completed", timeout=TRAINING_TIMEOUT)

    assert done["resourceUsage"]["preemptions"] == 1
    assert done.get("restarts", 0) == 0 == reference.get("restarts", 0)
    assert "preemptions" not in reference["resourceUsage"]
    # It resumed from the checkpoint its trainer saved on the SIGTERM, mid-run, and ended where the
    # reference did, with the same weights.
    assert stop_step(resumed_from, steps_per_epoch=done["progress"]["totalSteps"] // EPOCHS) >= 3, resumed_from
    assert current_step(done) == current_step(reference) == done["progress"]["totalSteps"]
    assert done["output"]["sha256"] == reference["output"]["sha256"]
    wait_for(
        lambda: {"Preempted", "TrainingResumed", "Completed"} <= {e["reason"] for e in cluster.events("drained")},
        "the preemption and resume Events",
        explain=lambda: str([e["reason"] for e in cluster.events("drained")]),
    )
    preempted = next(e for e in cluster.events("drained") if e["reason"] == "Preempted")
    assert preempted["type"] == "Warning" and "maxRestarts" in preempted["message"]
