"""A custom job's own code reports through the operator: examples/custom/train_bigram.py, run as a
``modelType: custom`` job's command, fills in the TrainingJob's status with its progress, loss and
checkpoints through ``tensorone.reporting.client.Reporter``; its stop checkpoint reaches the status
through the termination message, and the job resumes from it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import REPO, tiny_dataset, training_job
from tests.kube.polling import wait_for
from tests.system.conftest import TRAINING_TIMEOUT, LocalCluster

pytestmark = pytest.mark.slow

IMAGE = "registry.example.com/ml/bigram-trainer:0.1.0"


def custom_job(name: str, *, epochs: int) -> dict[str, Any]:
    """The example's TrainingJob (examples/custom/bigram-job.yaml) on the tiny instructions."""
    custom = {
        "image": IMAGE,
        "command": ["python", "/app/train_bigram.py"],
        "args": ["--context", "8"],
        "progressPort": 9500,
    }
    training = {"epochs": epochs, "batchSize": 64, "learningRate": 0.01, "keepCheckpoints": 3}
    return training_job(name, modelType="custom", datasetId="tiny", config={"training": training, "custom": custom})


@pytest.fixture
def custom_cluster(cluster: LocalCluster) -> LocalCluster:
    """The cluster, its node holding the example image: /app is examples/custom."""
    cluster.node.images[IMAGE] = {"/app": REPO / "examples" / "custom"}
    return cluster


def test_a_custom_jobs_status_fills_in_while_running_and_ends_completed(custom_cluster: LocalCluster) -> None:
    cluster = custom_cluster
    cluster.apply(tiny_dataset())
    cluster.apply(custom_job("bigram", epochs=80))  # about 3500 steps: seconds, even on a fast machine
    running = wait_for(
        lambda: s if (s := cluster.phase_is("bigram", "Running")) and s.get("checkpoints") else None,
        "a Running status with a checkpoint",
        explain=lambda: cluster.diagnose("bigram"),
    )
    assert 0 < running["progress"]["currentStep"] < running["progress"]["totalSteps"]
    assert running["progress"]["totalEpochs"] == 80 and running["progress"]["totalSteps"] % 80 == 0
    assert running["metrics"]["currentLoss"] > 0 and running["metrics"]["throughputUnit"] == "tokens/sec"
    assert running["checkpoints"][0]["id"].startswith("ckpt-epoch-") and running["lastReportTime"]

    wait_for(
        lambda: cluster.phase_is("bigram", "Completed"),
        "Completed",
        timeout=TRAINING_TIMEOUT,
        explain=lambda: cluster.diagnose("bigram"),
    )
    done = wait_for(
        lambda: (
            s if (s := cluster.status("bigram"))["progress"]["currentStep"] == s["progress"]["totalSteps"] else None
        ),
        "the final step",
    )
    assert done["progress"]["percentage"] == 100.0
    assert [(c["id"], c["reason"]) for c in done["checkpoints"]] == [
        ("ckpt-epoch-78", "epoch"),
        ("ckpt-epoch-79", "epoch"),
        ("ckpt-epoch-80", "final"),
    ]
    assert done["metrics"]["bestLoss"] < done["lossHistory"][0]["loss"] / 2, "the script's model learns"
    assert (cluster.node.claim_dir("default", "bigram-checkpoints") / "ckpt-epoch-80" / "model.pt").exists()
    wait_for(lambda: any(e["reason"] == "Completed" for e in cluster.events("bigram")), "Completed Event")


def test_a_stopped_custom_job_lists_its_sigterm_checkpoint_and_resumes_from_it(custom_cluster: LocalCluster) -> None:
    cluster = custom_cluster
    cluster.apply(tiny_dataset())
    cluster.apply(custom_job("stoppable", epochs=80))
    wait_for(
        lambda: (cluster.status("stoppable").get("progress") or {}).get("currentStep", 0) >= 50,
        "steps of the job to stop",
        explain=lambda: cluster.diagnose("stoppable"),
    )
    with cluster.paused("stoppable"):  # stopped mid-run, however fast the rest of the run would be
        cluster.patch_spec("stoppable", {"suspend": True})
        wait_for(lambda: cluster.child_suspended("stoppable"), "the stop reaching the PyTorchJob")
    wait_for(lambda: cluster.phase_is("stoppable", "Stopped"), "Stopped", explain=lambda: cluster.diagnose("stoppable"))
    stopped = wait_for(
        lambda: (
            s
            if (s := cluster.status("stoppable")) and any(c["reason"] == "stop" for c in s.get("checkpoints", []))
            else None
        ),
        "the stop checkpoint in the status",
        explain=lambda: cluster.diagnose("stoppable"),
    )
    saved = stopped["checkpoints"][-1]
    assert saved["reason"] == "stop" and saved["id"] == f"ckpt-step-{saved['step']}"
    assert 50 <= saved["step"] == stopped["progress"]["currentStep"] < stopped["progress"]["totalSteps"]
    assert (cluster.node.claim_dir("default", "stoppable-checkpoints") / saved["id"] / "model.pt").exists()

    cluster.patch_spec("stoppable", {"suspend": False, "resumeFrom": saved["id"]})
    resumed = wait_for(lambda: cluster.status("stoppable").get("resumedFrom"), "the resumed run's report")
    assert resumed == saved["id"]
    wait_for(
        lambda: cluster.phase_is("stoppable", "Completed"),
        "Completed",
        timeout=TRAINING_TIMEOUT,
        explain=lambda: cluster.diagnose("stoppable"),
    )
    done = wait_for(
        lambda: (
            s if (s := cluster.status("stoppable"))["progress"]["currentStep"] == s["progress"]["totalSteps"] else None
        ),
        "the final step",
    )
    assert done["checkpoints"][-1]["id"] == "ckpt-epoch-80" and done["checkpoints"][-1]["reason"] == "final"
    wait_for(
        lambda: {"Stopped", "TrainingResumed", "Completed"} <= {e["reason"] for e in cluster.events("stoppable")},
        "the stop, resume and completion Events",
        explain=lambda: str(sorted({e["reason"] for e in cluster.events("stoppable")})),
    )
