"""A multimodal job end to end: the operator schedules the real trainer on the tiny LLaVA over picture
chats on a claim, mirrors its progress, loss and checkpoints into the status while it runs, posts the
lifecycle Events, and the adapter lands on the checkpoint claim."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.factories import REPO, dataset, training_job
from tests.kube.polling import wait_for
from tests.system.conftest import TRAINING_TIMEOUT, LocalCluster

pytestmark = pytest.mark.slow

TINY_VLM = str(REPO / "examples" / "models" / "tiny-llava")
EXAMPLE_DATA = REPO / "examples" / "data"


def data_claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def test_a_multimodal_job_trains_with_live_status_events_and_its_adapter_on_the_claim(cluster: LocalCluster) -> None:
    folder = cluster.node.claim_dir("default", "pictures") / "chat"
    folder.mkdir(parents=True)
    shutil.copy(EXAMPLE_DATA / "tiny-pictures.jsonl", folder)
    shutil.copytree(EXAMPLE_DATA / "pictures", folder / "pictures")
    cluster.apply(data_claim("pictures"))
    source = {"pvc": {"claimName": "pictures", "path": "/chat/tiny-pictures.jsonl"}}
    cluster.apply(dataset("pictures", source=source, columns={"messages": "messages"}))
    config = {
        "baseModel": TINY_VLM,
        "strategy": "lora",
        "parameters": {"rank": 8, "alpha": 16, "targetModules": ["all-linear"]},
        # 22 conversations for training in 6 steps of 4, 2 epochs.
        "training": {"epochs": 2, "batchSize": 4, "learningRate": 0.01, "maxSeqLength": 96, "evalSplit": 0.1},
    }
    cluster.apply(training_job("captions", modelType="multimodal", datasetId="pictures", maxRestarts=0, config=config))

    running = wait_for(
        lambda: (
            s
            if (s := cluster.phase_is("captions", "Running")) and (s.get("progress") or {}).get("currentStep", 0) >= 1
            else None
        ),
        "a Running status with progress",
        timeout=TRAINING_TIMEOUT,
        explain=lambda: cluster.diagnose("captions"),
    )
    assert running["progress"]["totalSteps"] == 12 and running["progress"]["totalEpochs"] == 2
    assert running["metrics"]["currentLoss"] > 0

    wait_for(
        lambda: cluster.phase_is("captions", "Completed"),
        "Completed",
        timeout=TRAINING_TIMEOUT,
        explain=lambda: cluster.diagnose("captions"),
    )
    done = wait_for(
        lambda: s if (s := cluster.status("captions")).get("progress", {}).get("currentStep") == 12 else None, "final"
    )
    assert "ckpt-epoch-2" in [c["id"] for c in done["checkpoints"]]
    assert done["metrics"]["bestLoss"] < done["lossHistory"][0]["loss"] and done["metrics"]["evalLoss"] > 0
    output = cluster.node.claim_dir("default", "captions-checkpoints") / "output"  # the claim the operator made
    assert (output / "adapter_model.safetensors").exists() and (output / "processor_config.json").exists()
    wanted = {"TrainingStarted", "CheckpointSaved", "EpochCompleted", "Running", "Completed"}
    wait_for(
        lambda: wanted <= {e["reason"] for e in cluster.events("captions")},
        "the lifecycle Events",
        explain=lambda: str(sorted({e["reason"] for e in cluster.events("captions")})),
    )
