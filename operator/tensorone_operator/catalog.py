"""The GPU catalog at work: which nodes offer a GPU type, what a job is given and what it costs.

Pure functions of the spec, the configuration and node objects; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from tensorone.errors import ConfigurationError
from tensorone_operator.config import GpuType, OperatorConfig

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"


def gpu_type(spec: Mapping[str, Any], config: OperatorConfig) -> GpuType | None:
    """The catalog entry of ``spec.gpuType``; None for a CPU-only job.

    Raises ConfigurationError naming the field and the catalog keys when the type is unknown.
    """
    key = spec.get("gpuType")
    if not key:
        return None
    entry = config.gpu_catalog.get(key)
    if entry is None:
        allowed = ", ".join(sorted(config.gpu_catalog))
        raise ConfigurationError(f"unknown GPU type {key!r}; the catalog offers: {allowed}", field="spec.gpuType")
    return entry


def gpus_per_worker(spec: Mapping[str, Any]) -> int:
    """GPUs per pod: spec.gpusPerWorker, 1 by default when gpuType is set, 0 for CPU jobs."""
    if not spec.get("gpuType"):
        return 0
    return int(spec.get("gpusPerWorker") or 1)


def node_gpu_types(node: Mapping[str, Any], config: OperatorConfig) -> set[str]:
    """Catalog keys a node offers: its product label is listed in the entry and it has GPUs.

    A node counts when its ``nvidia.com/gpu`` allocatable is above zero (or not reported yet, as
    on a node whose device plugin has not registered) and it is not cordoned.
    """
    labels = (node.get("metadata") or {}).get("labels") or {}
    product = labels.get(GPU_PRODUCT_LABEL)
    if not product or (node.get("spec") or {}).get("unschedulable"):
        return set()
    allocatable = ((node.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE)
    if allocatable is not None and str(allocatable) in {"0", ""}:
        return set()
    return {key for key, entry in config.gpu_catalog.items() if product in entry.products}


def available_gpu_types(nodes: Iterable[Mapping[str, Any]], config: OperatorConfig) -> list[str]:
    """Sorted catalog keys that at least one node offers."""
    offered: set[str] = set()
    for node in nodes:
        offered |= node_gpu_types(node, config)
    return sorted(offered)


_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(MB|GB|TB)$")


def scale_memory(per_gpu: str, count: int) -> str:
    """``80GB`` x 2 -> ``160GB`` (the unit of the catalog entry is kept)."""
    match = _MEMORY.match(per_gpu)
    if not match:
        return per_gpu
    total = float(match.group(1)) * count
    return f"{total:g}{match.group(2)}"


def resource_allocation(spec: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """``status.resourceAllocation``: display name, workers, GPUs in total, GPU memory per worker."""
    entry = gpu_type(spec, config)
    workers = int(spec.get("maxWorkers") or 1)
    if entry is None:
        return {"gpuType": "CPU", "workers": workers, "gpus": 0, "memoryPerWorker": config.cpu_job.memory}
    gpus = gpus_per_worker(spec)
    return {
        "gpuType": entry.display_name,
        "workers": workers,
        "gpus": gpus * workers,
        "memoryPerWorker": scale_memory(entry.memory_per_gpu, gpus),
    }


def hourly_cost(spec: Mapping[str, Any], config: OperatorConfig) -> float:
    """Price of one hour of the whole job: catalog price per GPU x GPUs per worker x workers."""
    entry = gpu_type(spec, config)
    if entry is None:
        return 0.0
    return round(entry.hourly_price * gpus_per_worker(spec) * int(spec.get("maxWorkers") or 1), 4)


def estimated_cost(
    spec: Mapping[str, Any],
    config: OperatorConfig,
    *,
    spent: float = 0.0,
    remaining_seconds: float | None = None,
) -> dict[str, Any]:
    """``status.estimatedCost``: hourly price and the estimated total.

    The total is what has been spent so far plus the hourly price times the time still expected:
    the trainer's remaining-time estimate once it reports one (the reconciler passes it in from the
    progress report), otherwise the job's time limit ``maxRuntimeSeconds`` as an upper bound. With
    neither, the total is unknown and left out rather than guessed.
    """
    hourly = hourly_cost(spec, config)
    cost: dict[str, Any] = {"hourly": hourly, "currency": config.currency}
    if remaining_seconds is None and spec.get("maxRuntimeSeconds"):
        remaining_seconds = float(spec["maxRuntimeSeconds"])
    if remaining_seconds is not None:
        cost["total"] = round(spent + hourly * remaining_seconds / 3600.0, 2)
    return cost
