"""The reference's Python SDK example, as written (its indentation restored: the published text
lost it), run both ways: through the gateway over HTTP, and against the Kubernetes API. Only the
client's construction differs; ``time.sleep`` plays the operator, writing the status it would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.factories import API
from tests.gateway.process import ADMIN_TOKEN, GatewayProcess
from tests.kube.server import EmulatorServer

EXAMPLE = (Path(__file__).parent / "data" / "reference-sdk-example.txt").read_text()
CONSTRUCTION = 'client = TensorOneClient(api_key="YOUR_API_KEY")'
# What the operator writes as the job runs, one step per sleep of the example's loop (it sleeps once
# more after reading the final status).
STATUSES: list[dict[str, Any] | None] = [
    {"phase": "Running", "progress": {"percentage": 50.0}, "metrics": {"currentLoss": 0.5}},
    {"phase": "Completed", "progress": {"percentage": 100.0}, "metrics": {"currentLoss": 0.25}},
    None,
]


def run_example(cluster: EmulatorServer, construction: str) -> list[str]:
    """Run the example with ``construction`` in place of its client line; what it printed."""
    assert CONSTRUCTION in EXAMPLE
    printed: list[str] = []
    steps = iter(STATUSES)

    def sleep(seconds: float) -> None:
        assert seconds == 30
        status = next(steps)
        if status is not None:
            cluster.api.patch_status(API, "TrainingJob", "llama-7b-finetune", status)

    def record(*values: Any) -> None:
        printed.append(" ".join(str(value) for value in values))

    scope: dict[str, Any] = {"time": SimpleNamespace(sleep=sleep), "print": record}
    exec(compile(EXAMPLE.replace(CONSTRUCTION, construction), "reference-sdk-example", "exec"), scope)
    return printed


EXPECTED = [
    "Created job: llama-7b-finetune",
    "Progress: None% - Loss: None",
    "Progress: 50.0% - Loss: 0.5",
    "Progress: 100.0% - Loss: 0.25",
    "Training completed with status: completed",
]


def test_through_the_gateway(cluster: EmulatorServer, gateway: GatewayProcess) -> None:
    printed = run_example(cluster, f'client = TensorOneClient(api_key="{ADMIN_TOKEN}", base_url="{gateway.url}")')
    assert printed == EXPECTED
    stored = cluster.api.get(API, "TrainingJob", "llama-7b-finetune")
    assert stored["spec"]["datasetId"] == "ds-1234567890abcdef"
    assert stored["spec"]["config"]["parameters"]["targetModules"] == ["q_proj", "v_proj", "k_proj", "o_proj"]


def test_against_the_kubernetes_api(cluster: EmulatorServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cluster.kubeconfig()))
    printed = run_example(cluster, f'client = TensorOneClient(api_key="{ADMIN_TOKEN}", kubeconfig="{kubeconfig}")')
    assert printed == EXPECTED


@pytest.mark.parametrize("transport", ["gateway", "kubernetes"])
def test_errors_carry_code_field_and_details_both_ways(
    cluster: EmulatorServer, gateway: GatewayProcess, tmp_path: Path, transport: str
) -> None:
    from tensorone import TensorOneClient
    from tensorone.errors import DatasetNotFound, InsufficientResources

    make: Callable[[], TensorOneClient]
    if transport == "gateway":
        make = lambda: TensorOneClient(api_key=ADMIN_TOKEN, base_url=gateway.url)  # noqa: E731
        gpu_field = "gpuType"
    else:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(cluster.kubeconfig()))
        make = lambda: TensorOneClient(api_key=ADMIN_TOKEN, kubeconfig=str(kubeconfig))  # noqa: E731
        gpu_field = "spec.gpuType"
    client = make()
    arguments: dict[str, Any] = {
        "name": "My Job",
        "model_type": "llm",
        "dataset_id": "ds_1234567890abcdef",
        "config": {"base_model": "meta-llama/Llama-2-7b-hf", "strategy": "lora"},
    }
    with pytest.raises(InsufficientResources) as short:
        client.training.jobs.create(**arguments, gpu_type="h100")
    assert short.value.code == "INSUFFICIENT_RESOURCES" and short.value.field == gpu_field
    assert short.value.details["availableGpuTypes"] == ["a100", "v100"]
    with pytest.raises(DatasetNotFound) as missing:
        client.training.jobs.create(**{**arguments, "dataset_id": "ds_invalid_id"})
    assert missing.value.details["datasetId"] == "ds_invalid_id"
    job = client.training.jobs.create(**arguments)
    assert (job.id, job.name, job.dataset_id) == ("my-job", "My Job", "ds_1234567890abcdef")
