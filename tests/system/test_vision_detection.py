"""Object detection end to end: a COCO Dataset on a claim, a vision TrainingJob on it, the real
operator and the real trainer on the node: live progress and loss, mAP in the status after each
evaluation, checkpoints and Events, Completed."""

from __future__ import annotations

import shutil

import pytest

from tests.factories import REPO, dataset, training_job
from tests.kube.polling import wait_for
from tests.system.conftest import TRAINING_TIMEOUT, LocalCluster

pytestmark = pytest.mark.slow

TINY_DETECTOR = REPO / "examples" / "models" / "tiny-rt-detr"
SHAPES = REPO / "examples" / "data" / "shapes"


def test_a_detection_job_trains_on_a_claim_and_reports_map(cluster: LocalCluster) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "vision-data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cluster.apply(claim)
    folder = cluster.node.claim_dir("default", "vision-data") / "shapes"
    folder.parent.mkdir(parents=True)
    shutil.copytree(SHAPES, folder)
    source = {"pvc": {"claimName": "vision-data", "path": "/shapes"}}
    cluster.apply(dataset("boxes", format="coco", source=source, columns={"annotations": "annotations.json"}))
    config = {
        "baseModel": str(TINY_DETECTOR),
        "inputSize": [64, 64],
        "numClasses": 2,
        "training": {"epochs": 1, "batchSize": 8, "learningRate": 0.002, "evalSplit": 0.25, "seed": 7},
        "augmentation": {"fliplr": 0.5, "hsvV": 0.3, "mixup": 0.1, "copyPaste": 0.2},
    }
    cluster.apply(training_job("boxes", modelType="vision", datasetId="boxes", maxRestarts=0, config=config))

    running = wait_for(
        lambda: (
            s
            if (s := cluster.phase_is("boxes", "Running")) and (s.get("progress") or {}).get("currentStep", 0) >= 1
            else None
        ),
        "a Running status with progress",
        explain=lambda: cluster.diagnose("boxes"),
    )
    total = running["progress"]["totalSteps"]
    assert total == 9 and running["metrics"]["currentLoss"] > 0  # 72 training images, 8 a batch, 1 epoch

    wait_for(lambda: cluster.phase_is("boxes", "Completed"), "Completed", timeout=TRAINING_TIMEOUT)
    done = wait_for(
        lambda: s if (s := cluster.status("boxes")).get("progress", {}).get("currentStep") == total else None, "final"
    )
    metrics = done["metrics"]["evalMetrics"]
    assert set(metrics) == {"mAP", "mAP50"} and 0 <= metrics["mAP"] <= metrics["mAP50"] <= 1, metrics
    assert "ckpt-epoch-1" in [c["id"] for c in done["checkpoints"]]
    wanted = {"TrainingStarted", "CheckpointSaved", "OutputWritten", "Completed"}
    wait_for(
        lambda: wanted <= {e["reason"] for e in cluster.events("boxes")},
        "the lifecycle Events",
        explain=lambda: str(sorted({e["reason"] for e in cluster.events("boxes")})),
    )
