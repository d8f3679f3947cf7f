"""The gateway in front of the whole local cluster (emulator, the real operator, a node running
the real trainer): a reference-style create with curl, the job trained to the end, then its
details, events and checkpoints with curl, in the reference's shapes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.rest import rest_from_job
from tests.factories import tiny_dataset, tiny_training_job
from tests.gateway.process import GatewayProcess
from tests.kube.polling import wait_for
from tests.system.conftest import TRAINING_TIMEOUT, LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")]


@pytest.fixture
def gateway(cluster: LocalCluster, tmp_path: Path) -> Iterator[GatewayProcess]:
    with GatewayProcess(cluster.server.url, log=tmp_path / "gateway.log") as process:
        yield process


def curl(gateway: GatewayProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    command = ["curl", "-s", "-X", method, f"{gateway.url}{path}", "-H", "Authorization: Bearer any-token"]
    if body is not None:
        command += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    result = subprocess.run([*command, "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=60, check=True)
    text, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(text)


def test_a_job_created_with_curl_trains_to_the_end(cluster: LocalCluster, gateway: GatewayProcess) -> None:
    cluster.apply(tiny_dataset("ds-tiny-records"))
    body = rest_from_job(tiny_training_job("unused", dataset_id="ds-tiny-records", epochs=3))
    body.update(name="Tiny LoRA run", datasetId="ds_tiny_records")

    status, created = curl(gateway, "POST", "/v2/training/jobs", body)
    assert status == 201, created
    assert (created["id"], created["name"], created["status"]) == ("tiny-lora-run", "Tiny LoRA run", "pending")

    def finished() -> dict[str, Any] | None:
        _, job = curl(gateway, "GET", "/v2/training/jobs/tiny-lora-run")
        if job["status"] in ("failed", "cancelled"):
            pytest.fail(f"the job ended {job['status']}: {job.get('message')}")
        return job if job["status"] == "completed" else None

    job = wait_for(finished, "the job completed", timeout=TRAINING_TIMEOUT)
    assert job["progress"]["percentage"] == 100
    assert job["datasetId"] == "ds_tiny_records"
    assert isinstance(job["metrics"]["currentLoss"], float)
    for key in ("createdAt", "startedAt", "completedAt", "updatedAt"):
        assert job[key].endswith("Z"), key

    _, checkpoints = curl(gateway, "GET", "/v2/training/jobs/tiny-lora-run/checkpoints")
    assert checkpoints["checkpoints"] and {"id", "epoch", "step", "loss", "createdAt"} <= set(
        checkpoints["checkpoints"][0]
    )
    _, events = curl(gateway, "GET", "/v2/training/jobs/tiny-lora-run/events")
    reasons = [event["reason"] for event in events["events"]]
    assert "Completed" in reasons, reasons
    steps = [event for event in events["events"] if event["reason"] == "TrainingStep"]
    assert [event["step"] for event in steps] == list(range(1, job["progress"]["totalSteps"] + 1))
    assert {"loss", "learningRate", "gradNorm", "tokensPerSecond", "lastSeen"} <= set(steps[-1])
    _, kubernetes_only = curl(gateway, "GET", "/v2/training/jobs/tiny-lora-run/events?metrics=false")
    assert [e for e in events["events"] if e["reason"] != "TrainingStep" and e["reason"] != "Evaluation"] == (
        kubernetes_only["events"]
    )

    status, listed = curl(gateway, "GET", "/v2/training/jobs?status=completed")
    assert status == 200 and [item["id"] for item in listed["jobs"]] == ["tiny-lora-run"]
    status, deleted = curl(gateway, "DELETE", "/v2/training/jobs/tiny-lora-run?wait=30")
    assert (status, deleted) == (200, {"id": "tiny-lora-run", "status": "deleted"})
