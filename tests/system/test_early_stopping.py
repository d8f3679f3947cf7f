"""Early stopping end to end: a job whose evaluation loss plateaus is ended by its trainer before
its last step, and the operator shows it Completed with reason EarlyStopped, names the best
checkpoint, which is kept on the claim, and lists the final model made from it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import tiny_config, tiny_dataset, training_job
from tests.kube.polling import wait_for
from tests.system.conftest import TRAINING_TIMEOUT, LocalCluster

pytestmark = pytest.mark.slow


def plateau_job(name: str) -> dict[str, Any]:
    """The tiny job at the smallest learning rate the API allows: the evaluation loss moves by far
    less than minDelta, so evaluation 1 (step 1) stays the best and evaluation 3 (patience 2) ends
    the run at step 3 of 10."""
    config = tiny_config(
        seed=7,
        learningRate=1e-6,
        maxSteps=10,
        evalSplit=0.25,
        evalSteps=1,
        checkpointEveryEpoch=False,
        keepCheckpoints=1,
        earlyStopping={"patience": 2, "minDelta": 0.01},
    )
    config["output"] = {"from": "best"}
    return training_job(name, datasetId="tiny", maxRestarts=0, config=config)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c["type"] == kind)


def test_a_plateau_ends_the_job_completed_early_with_the_best_checkpoint_kept(cluster: LocalCluster) -> None:
    cluster.apply(tiny_dataset())
    cluster.apply(plateau_job("plateau"))
    done = wait_for(
        lambda: s if (s := cluster.phase_is("plateau", "Completed")) and s.get("output") else None,
        "Completed with its final model",
        timeout=TRAINING_TIMEOUT,
        explain=lambda: cluster.diagnose("plateau"),
    )
    assert (done["progress"]["currentStep"], done["progress"]["totalSteps"]) == (3, 10)
    assert done["message"].startswith("completed, stopped early: "), done["message"]
    for kind in ("Succeeded", "Ready"):
        assert (condition(done, kind)["status"], condition(done, kind)["reason"]) == ("True", "EarlyStopped")
    assert done["bestCheckpoint"] == "ckpt-step-1"
    # Kept beyond keepCheckpoints 1 (the newest, step 3, is kept too), listed and on the claim.
    assert {c["id"] for c in done["checkpoints"]} >= {"ckpt-step-1", "ckpt-step-3"}
    claim = cluster.node.claim_dir("default", "plateau-checkpoints")
    assert (claim / "ckpt-step-1" / "manifest.json").is_file()
    assert done["output"]["checkpoint"] == "ckpt-step-1"
    assert [point["step"] for point in done["evalLossHistory"]] == [1, 2, 3]
    wait_for(
        lambda: "EarlyStopped" in {e["reason"] for e in cluster.events("plateau")},
        "the EarlyStopped Event",
        explain=lambda: str([e["reason"] for e in cluster.events("plateau")]),
    )
