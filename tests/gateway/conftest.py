"""The emulator with bearer-token authentication, a GPU node, the reference's Datasets, and the
gateway both in-process (starlette's TestClient) and as its own uvicorn process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tensorone.gateway.app import GatewayConfig, create_app
from tests.factories import dataset, gpu_node
from tests.gateway.process import TOKENS, GatewayProcess
from tests.kube.server import EmulatorServer

# The Datasets the reference's examples name (ds_1234567890abcdef, ds_vision_objects_001), as
# the gateway maps their ids to Dataset names.
LLM_DATASET = "ds-1234567890abcdef"
VISION_DATASET = "ds-vision-objects-001"


@pytest.fixture
def cluster() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        server.emulator.tokens.update(TOKENS)
        server.api.create(gpu_node("gpu-a100-1", "NVIDIA-A100-SXM4-80GB"))
        server.api.create(gpu_node("gpu-v100-1", "Tesla-V100-SXM2-32GB"))
        server.api.create(dataset(LLM_DATASET))
        server.api.create(dataset(VISION_DATASET, format="imagefolder", source={"uri": "s3://bucket/objects"}))
        yield server


@pytest.fixture
def app_client(cluster: EmulatorServer) -> Iterator[TestClient]:
    with TestClient(create_app(GatewayConfig(api_server=cluster.url))) as client:
        yield client


@pytest.fixture
def gateway(cluster: EmulatorServer, tmp_path: Path) -> Iterator[GatewayProcess]:
    with GatewayProcess(cluster.url, log=tmp_path / "gateway.log") as process:
        yield process
