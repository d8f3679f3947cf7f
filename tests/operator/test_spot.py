"""Spot capacity (pure): the catalog's spot settings place a spot job's pods and price it; a job
asking for spot its GPU type does not offer is refused before any child exists."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from tensorone_operator import builders, catalog, checks
from tensorone_operator.config import OperatorConfig, parse_config

from tensorone.api import preflight
from tensorone.api.catalog import DEFAULT_GPU_CATALOG, SpotCapacity, Toleration
from tensorone.api.v1alpha1 import Dataset, TrainingJob

GKE_SPOT = SpotCapacity(
    node_selector={"cloud.google.com/gke-spot": "true"},
    tolerations=[Toleration(key="cloud.google.com/gke-spot", value="true", effect="NoSchedule")],
    hourly_price=0.28,
)
KARPENTER_SPOT = SpotCapacity(
    node_selector={"karpenter.sh/capacity-type": "spot"},
    tolerations=[Toleration(key="example.com/spot", operator="Exists")],
    hourly_price=1.3,
)
# L4 (one product: a node selector) and A100 (several: a node affinity) with spot capacity; H100 without.
CATALOG = {
    **DEFAULT_GPU_CATALOG,
    "l4": DEFAULT_GPU_CATALOG["l4"].model_copy(update={"spot": GKE_SPOT}),
    "a100": DEFAULT_GPU_CATALOG["a100"].model_copy(update={"spot": KARPENTER_SPOT}),
}
CONFIG = OperatorConfig(gpu_catalog=CATALOG)
DATASET = Dataset.model_validate(
    {"metadata": {"name": "chat", "namespace": "team"}, "spec": {"format": "jsonl", "source": {"uri": "https://x/y"}}}
)


def job(**spec: Any) -> TrainingJob:
    return TrainingJob.model_validate(
        {
            "apiVersion": "training.tensorone.ai/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "llama", "namespace": "team", "uid": "uid-1"},
            "spec": {"modelType": "llm", "datasetId": "chat", "config": {"baseModel": "gpt2"}, **spec},
        }
    )


def pod_spec(training_job: TrainingJob, replica: str = "Master") -> dict[str, Any]:
    child = builders.build_pytorchjob(training_job, DATASET, CONFIG)
    result: dict[str, Any] = child["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]
    return result


def test_a_spot_job_selects_the_spot_nodes_and_tolerates_their_taints_in_every_replica() -> None:
    spot = pod_spec(job(gpuType="l4", spot=True, maxWorkers=2))
    assert spot["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4", "cloud.google.com/gke-spot": "true"}
    assert spot["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
    ]
    assert pod_spec(job(gpuType="l4", spot=True, maxWorkers=2), "Worker") == spot
    # Several products: the affinity keeps them, the spot label is a node selector beside it.
    several = pod_spec(job(gpuType="a100", spot=True))
    assert several["nodeSelector"] == {"karpenter.sh/capacity-type": "spot"}
    assert several["affinity"] == pod_spec(job(gpuType="a100"))["affinity"]
    assert several["tolerations"][1] == {"key": "example.com/spot", "operator": "Exists"}
    # The same type on demand: no spot label, no spot toleration.
    on_demand = pod_spec(job(gpuType="l4"))
    assert on_demand["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert on_demand["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_placement_is_one_function_for_every_builder_of_pods() -> None:
    given = catalog.job_resources(job(gpuType="l4", spot=True).spec, CONFIG)
    placement = builders.pod_placement(given)
    assert {key: pod_spec(job(gpuType="l4", spot=True))[key] for key in placement} == placement
    assert builders.pod_placement(catalog.job_resources(job().spec, CONFIG)) == {}


def test_a_spot_job_costs_the_spot_price_and_says_it_runs_on_spot() -> None:
    spec = job(gpuType="l4", spot=True, gpusPerWorker=2, maxWorkers=3, maxRuntimeSeconds=7200).spec
    given = catalog.job_resources(spec, CONFIG)
    assert given.hourly_price_per_gpu == 0.28 and given.hourly_cost() == 1.68  # 0.28 x 2 GPUs x 3 workers
    assert catalog.estimated_cost(given, CONFIG, max_runtime_seconds=7200) == {
        "hourly": 1.68,
        "currency": "USD",
        "total": 3.36,
    }
    assert catalog.resource_allocation(given, CONFIG)["spot"] is True
    on_demand = catalog.job_resources(job(gpuType="l4", gpusPerWorker=2, maxWorkers=3).spec, CONFIG)
    assert on_demand.hourly_cost() == 4.8
    assert "spot" not in catalog.resource_allocation(on_demand, CONFIG)


def test_spot_on_a_type_without_spot_capacity_is_refused_naming_the_types_that_offer_it() -> None:
    resources, problem = checks.check_gpu_type(job(gpuType="h100", spot=True).spec, CONFIG)
    assert resources is None and problem is not None
    assert (problem.code, problem.waiting) == ("CONFIGURATION_ERROR", False)
    assert problem.message == (
        "spec.spot: GPU type 'h100' has no spot capacity; spot is offered for GPU types: a100, l4 "
        "(gpuCatalog.<type>.spot in the operator's configuration)"
    )
    # The same answer from the SDK's and the gateway's create-time checks, with the details.
    error = preflight.create_error(
        "team", job(gpuType="h100", spot=True).spec, dataset=DATASET, catalog=CATALOG, nodes=None
    )
    assert error is not None and error.field == "spec.spot"
    assert error.details["spotGpuTypes"] == ["a100", "l4"] and error.details["requestedGpuType"] == "h100"
    # The built-in catalog has no spot capacity (the labels are the cloud's): every spot job is refused.
    none = preflight.gpu_type_error(job(gpuType="l4", spot=True).spec, DEFAULT_GPU_CATALOG)
    assert none is not None and "spot is offered for GPU types: none" in str(none)
    # An unknown GPU type is that error, not the spot one.
    _, problem = checks.check_gpu_type(job(gpuType="tpu", spot=True).spec, CONFIG)
    assert problem is not None and problem.message.startswith("spec.gpuType: unknown GPU type 'tpu'")
    # Without a GPU type (the CRD refuses it first).
    cpu = preflight.gpu_type_error(job(spot=True).spec, CATALOG)
    assert cpu is not None and "a job without gpuType runs on CPU" in str(cpu)


def node(product: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": product, "labels": {"nvidia.com/gpu.product": product, **labels}},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }


def test_a_spot_job_waits_for_a_spot_node_of_its_type() -> None:
    spot = catalog.job_resources(job(gpuType="l4", spot=True).spec, CONFIG)
    on_demand_only = [node("NVIDIA-L4")]
    problem = checks.check_gpu_nodes(spot, CONFIG, on_demand_only)
    assert problem is not None and problem.code == "INSUFFICIENT_RESOURCES" and problem.waiting
    assert "no spot node offers GPU type 'l4'" in problem.message
    assert "cloud.google.com/gke-spot=true" in problem.message
    assert (
        checks.check_gpu_nodes(
            spot, CONFIG, [*on_demand_only, node("NVIDIA-L4", **{"cloud.google.com/gke-spot": "true"})]
        )
        is None
    )
    assert checks.check_gpu_nodes(catalog.job_resources(job(gpuType="l4").spec, CONFIG), CONFIG, on_demand_only) is None


def test_spot_settings_in_the_config_file_are_checked_by_field() -> None:
    entry = {"displayName": "L4", "products": ["NVIDIA-L4"], "memoryPerGpu": "24GB", "hourlyPrice": 0.8}
    spot = {
        "nodeSelector": {"eks.amazonaws.com/capacityType": "SPOT"},
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoExecute"}],
        "hourlyPrice": 0.3,
    }
    config = parse_config({"gpuCatalog": {"l4": {**entry, "spot": spot}}})
    loaded = config.gpu_catalog["l4"].spot
    assert (
        loaded is not None and loaded.hourly_price == 0.3 and loaded.tolerations[0].to_wire()["effect"] == "NoExecute"
    )
    bad_cases = [
        ({"nodeSelector": {}, "hourlyPrice": 1}, "nodeSelector"),
        ({"nodeSelector": {"bad key!": "x"}, "hourlyPrice": 1}, "not a valid label key"),
        ({"nodeSelector": {"spot": "yes please"}, "hourlyPrice": 1}, "not a valid label value"),
        ({"nodeSelector": {"spot": "true"}, "hourlyPrice": -1}, "hourlyPrice"),
        ({"nodeSelector": {"spot": "true"}, "tolerations": [{"key": "spot"}], "hourlyPrice": 1}, "needs a value"),
        (
            {
                "nodeSelector": {"spot": "true"},
                "tolerations": [{"key": "s", "operator": "Exists", "value": "x"}],
                "hourlyPrice": 1,
            },
            "takes no value",
        ),
    ]
    for bad, says in bad_cases:
        with pytest.raises(Exception, match=says) as raised:
            parse_config({"gpuCatalog": {"l4": {**entry, "spot": bad}}})
        assert "gpuCatalog.l4.spot" in str(raised.value), str(raised.value)
    with pytest.raises(ValidationError):
        Toleration.model_validate({"key": "spot", "operator": "Exists", "effect": "Sometimes"})
