"""Image classification end to end: a Dataset of class folders on a claim, a vision TrainingJob,
the real operator and the real trainer on the node: live progress, loss and accuracy in the
status, checkpoints and Events, Completed."""

from __future__ import annotations

import shutil

import pytest

from tests.factories import dataset, training_job
from tests.kube.polling import wait_for
from tests.system.conftest import TRAINING_TIMEOUT, LocalCluster
from tests.trainer.images import EXAMPLE_SHAPES, TINY_CONVNEXT

pytestmark = pytest.mark.slow


def test_a_vision_job_trains_on_a_claim_and_reports_accuracy(cluster: LocalCluster) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "pictures", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cluster.apply(claim)
    folder = cluster.node.claim_dir("default", "pictures") / "shapes"
    folder.parent.mkdir(parents=True)
    shutil.copytree(EXAMPLE_SHAPES, folder)
    cluster.apply(dataset("shapes", format="imagefolder", source={"pvc": {"claimName": "pictures", "path": "/shapes"}}))
    config = {
        "baseModel": str(TINY_CONVNEXT),
        "inputSize": [32, 32],
        "training": {"epochs": 4, "batchSize": 16, "learningRate": 0.01, "evalSplit": 0.2, "seed": 42},
        "augmentation": {"fliplr": 0.5, "hsvV": 0.2},
    }
    cluster.apply(training_job("shapes", modelType="vision", datasetId="shapes", maxRestarts=0, config=config))

    running = wait_for(
        lambda: (
            s
            if (s := cluster.phase_is("shapes", "Running")) and (s.get("progress") or {}).get("currentStep", 0) >= 2
            else None
        ),
        "a Running status with progress",
        explain=lambda: cluster.diagnose("shapes"),
    )
    assert running["progress"]["totalSteps"] == 24 and running["metrics"]["currentLoss"] > 0
    assert running["metrics"].get("throughputUnit") in (None, "samples/sec")

    wait_for(lambda: cluster.phase_is("shapes", "Completed"), "Completed", timeout=TRAINING_TIMEOUT)
    done = wait_for(
        lambda: s if (s := cluster.status("shapes")).get("progress", {}).get("currentStep") == 24 else None, "final"
    )
    assert done["metrics"]["evalMetrics"]["accuracy"] > 0.6, done["metrics"]  # chance is 1/3
    assert "ckpt-epoch-4" in [c["id"] for c in done["checkpoints"]]
    wanted = {"TrainingStarted", "CheckpointSaved", "EpochCompleted", "Completed"}
    wait_for(
        lambda: wanted <= {e["reason"] for e in cluster.events("shapes")},
        "the lifecycle Events",
        explain=lambda: str(sorted({e["reason"] for e in cluster.events("shapes")})),
    )
