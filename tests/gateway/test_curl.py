"""Every curl example of the reference document, run with the real curl against the gateway
process (uvicorn) in front of the emulator; the answers checked field by field against the
reference's shapes. Only the host, the key and the job's id are replaced: the id a create returns
is the TrainingJob's name, not the reference's ``job_1234567890abcdef``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.factories import API
from tests.gateway.process import ADMIN_TOKEN, READER_TOKEN, GatewayProcess
from tests.kube.server import EmulatorServer

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")

COMMANDS = (Path(__file__).parent / "data" / "reference-curl.txt").read_text().strip().split("\n\n")
REFERENCE_HOST = "https://api.tensorone.ai"
REFERENCE_JOB_ID = "job_1234567890abcdef"
JOB_ID = "llama-7b-finetune"
# Keys of the reference's answers, by example (nested shapes checked in the tests).
CREATED_KEYS = {
    "id",
    "name",
    "status",
    "modelType",
    "datasetId",
    "config",
    "resourceAllocation",
    "estimatedCost",
    "createdAt",
    "updatedAt",
}
LIST_ITEM_KEYS = {"id", "name", "status", "modelType", "createdAt"}
PAGINATION_KEYS = {"total", "limit", "offset", "hasMore"}


def curl(command: str, gateway: GatewayProcess, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    """Run one reference command (host, key and id replaced); the HTTP status and the JSON answer."""
    command = command.replace(REFERENCE_HOST, gateway.url).replace("YOUR_API_KEY", token)
    command = command.replace(REFERENCE_JOB_ID, JOB_ID)
    result = subprocess.run(
        ["bash", "-c", command + " -s -w '\\n%{http_code}'"], capture_output=True, text=True, timeout=60, check=True
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_every_reference_example(cluster: EmulatorServer, gateway: GatewayProcess) -> None:
    create_llm, create_vision, list_jobs, get_job, stop_job, resume_job = COMMANDS

    status, job = curl(create_llm, gateway)
    assert status == 201, job
    assert set(job) >= CREATED_KEYS
    assert (job["id"], job["name"], job["status"], job["modelType"]) == (JOB_ID, JOB_ID, "pending", "llm")
    assert job["datasetId"] == "ds_1234567890abcdef"
    assert job["config"]["baseModel"] == "meta-llama/Llama-2-7b-hf"
    assert job["config"]["parameters"] == {
        "rank": 16,
        "alpha": 32,
        "dropout": 0.1,
        "target_modules": ["q_proj", "v_proj", "k_proj", "o_proj"],
    }
    assert job["config"]["optimization"]["mixed_precision"] == "fp16"
    assert job["resourceAllocation"]["gpuType"] == "NVIDIA A100" and job["resourceAllocation"]["workers"] == 2
    assert job["estimatedCost"]["hourly"] > 0

    # The trainer does not build YOLOv8 (Ultralytics, AGPL-3.0): refused before anything is scheduled.
    status, vision = curl(create_vision, gateway)
    assert status == 400, vision
    assert (vision["error"], vision["details"]["field"], vision["details"]["architecture"]) == (
        "CONFIGURATION_ERROR",
        "config.architecture",
        "yolov8",
    )

    # The operator's part, as it would write it for a running job.
    running = {
        "phase": "Running",
        "startedAt": "2024-01-15T10:35:00Z",
        "estimatedCompletion": "2024-01-15T12:45:00Z",
        "progress": {"currentEpoch": 2, "totalEpochs": 3, "currentStep": 1247, "totalSteps": 1875, "percentage": 66.5},
        "metrics": {"currentLoss": 0.342, "bestLoss": 0.298, "learningRate": 1.8e-4, "throughput": "1250 tokens/sec"},
        "resourceUsage": {"gpuHours": 4.2, "cost": 35.7, "efficiency": 0.94},
        "checkpoints": [
            {"id": "ckpt-epoch-1", "epoch": 1, "step": 625, "loss": 0.456, "createdAt": "2024-01-15T11:15:00Z"}
        ],
    }
    cluster.api.patch_status(API, "TrainingJob", JOB_ID, running)

    status, listing = curl(list_jobs, gateway)
    assert status == 200
    assert set(listing) == {"jobs", "pagination"}
    assert listing["pagination"] == {"total": 1, "limit": 50, "offset": 0, "hasMore": False}
    item = next(job for job in listing["jobs"] if job["id"] == JOB_ID)
    assert set(item) >= LIST_ITEM_KEYS | {"progress", "metrics", "startedAt", "estimatedCompletion"}
    assert item["status"] == "running"
    assert item["progress"] == running["progress"]
    assert (item["metrics"]["loss"], item["metrics"]["learningRate"]) == (0.342, 1.8e-4)
    assert item["metrics"]["throughput"] == "1250 tokens/sec"

    status, details = curl(get_job, gateway)
    assert status == 200
    assert (details["id"], details["status"], details["datasetId"]) == (JOB_ID, "running", "ds_1234567890abcdef")
    assert details["progress"]["percentage"] == 66.5
    assert (details["metrics"]["currentLoss"], details["metrics"]["bestLoss"]) == (0.342, 0.298)
    assert details["resourceUsage"] == {"gpuHours": 4.2, "cost": 35.7, "efficiency": 0.94}
    assert details["checkpoints"][0]["id"] == "ckpt-epoch-1"
    assert details["startedAt"] == "2024-01-15T10:35:00Z"

    status, stopped = curl(stop_job, gateway)
    assert status == 200, stopped
    stored = cluster.api.get(API, "TrainingJob", JOB_ID)
    assert stored["spec"]["suspend"] is True
    assert stored["metadata"]["annotations"]["training.tensorone.ai/stop-reason"] == "User requested stop"

    cluster.api.patch_status(API, "TrainingJob", JOB_ID, {"phase": "Stopped"})
    status, resumed = curl(resume_job, gateway)
    assert status == 200, resumed
    spec = cluster.api.get(API, "TrainingJob", JOB_ID)["spec"]
    assert (spec["suspend"], spec["resumeFrom"]) == (False, "ckpt-epoch-1")


def test_refused_callers_change_nothing(cluster: EmulatorServer, gateway: GatewayProcess) -> None:
    create_llm = COMMANDS[0]
    status, body = curl(create_llm, gateway, token="not-a-token")
    assert (status, body["error"]) == (401, "UNAUTHENTICATED")
    status, body = curl(create_llm, gateway, token=READER_TOKEN)
    assert (status, body["error"]) == (403, "FORBIDDEN")
    assert set(body) == {"error", "message", "details"}
    assert cluster.api.list(API, "TrainingJob") == []
