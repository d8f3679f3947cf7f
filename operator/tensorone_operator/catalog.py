"""The GPU catalog at work: what a job is given and what it costs (which nodes offer a GPU type is
``tensorone.api.catalog``).

Pure functions of the typed spec, the configuration and node objects; no I/O. A job's catalog
entry is looked up once (``job_resources``) and the result passed to everything that needs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tensorone.api.catalog import GPU_PRODUCT_LABEL, GPU_RESOURCE, GpuType, catalog_entry
from tensorone.api.v1alpha1 import TrainingJobSpec
from tensorone.api.v1alpha1.trainingjob import EstimatedCost, ResourceAllocation
from tensorone_operator.config import OperatorConfig

__all__ = [
    "GPU_PRODUCT_LABEL",
    "GPU_RESOURCE",
    "JobResources",
    "estimated_cost",
    "job_resources",
    "resource_allocation",
    "scale_memory",
]


@dataclass(frozen=True)
class JobResources:
    """What a job is given, from its spec and the catalog: the entry of its GPU type (None for a
    CPU-only job), GPUs per worker (0 on CPU) and workers."""

    gpu_type: str | None
    entry: GpuType | None
    gpus_per_worker: int
    workers: int

    @property
    def gpus(self) -> int:
        """GPUs of the whole job."""
        return self.gpus_per_worker * self.workers

    @property
    def processes_per_worker(self) -> int:
        """Training processes per pod: one per GPU, one on CPU."""
        return max(self.gpus_per_worker, 1)

    @property
    def hourly_price_per_gpu(self) -> float:
        """The catalog price of one GPU for one hour (0 on CPU)."""
        return self.entry.hourly_price if self.entry else 0.0

    def hourly_cost(self) -> float:
        """Price of one hour of the whole job: catalog price per GPU x GPUs per worker x workers."""
        return round(self.hourly_price_per_gpu * self.gpus_per_worker * self.workers, 4)


def job_resources(spec: TrainingJobSpec, config: OperatorConfig) -> JobResources:
    """The job's resources: ``spec.gpuType`` looked up in the catalog, ``gpusPerWorker`` 1 by
    default when a GPU type is set, 0 for CPU jobs.

    Raises ConfigurationError naming the field and the catalog keys when the type is unknown.
    """
    key = spec.gpu_type
    if not key:
        return JobResources(gpu_type=None, entry=None, gpus_per_worker=0, workers=spec.max_workers)
    entry = catalog_entry(key, config.gpu_catalog)
    return JobResources(gpu_type=key, entry=entry, gpus_per_worker=spec.gpus_per_worker or 1, workers=spec.max_workers)


_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(MB|GB|TB)$")


def scale_memory(per_gpu: str, count: int) -> str:
    """``80GB`` x 2 -> ``160GB`` (the unit of the catalog entry is kept)."""
    match = _MEMORY.match(per_gpu)
    if not match:
        return per_gpu
    total = float(match.group(1)) * count
    return f"{total:g}{match.group(2)}"


def resource_allocation(resources: JobResources, config: OperatorConfig) -> dict[str, Any]:
    """``status.resourceAllocation`` (wire form): display name, workers, GPUs in total, GPU memory per worker."""
    if resources.entry is None:
        allocation = ResourceAllocation(
            gpu_type="CPU", workers=resources.workers, gpus=0, memory_per_worker=config.cpu_job.memory
        )
    else:
        allocation = ResourceAllocation(
            gpu_type=resources.entry.display_name,
            workers=resources.workers,
            gpus=resources.gpus,
            memory_per_worker=scale_memory(resources.entry.memory_per_gpu, resources.gpus_per_worker),
        )
    return allocation.to_wire()


def estimated_cost(
    resources: JobResources,
    config: OperatorConfig,
    *,
    max_runtime_seconds: int | None,
    spent: float = 0.0,
    remaining_seconds: float | None = None,
) -> dict[str, Any]:
    """``status.estimatedCost``: hourly price and the estimated total.

    The total is what has been spent so far plus the hourly price times the time still expected:
    the trainer's remaining-time estimate once it reports one (the live status passes it in from
    the progress report), otherwise the job's time limit ``maxRuntimeSeconds`` as an upper bound.
    With neither, the total is unknown and left out rather than guessed.
    """
    hourly = resources.hourly_cost()
    if remaining_seconds is None and max_runtime_seconds:
        remaining_seconds = float(max_runtime_seconds)
    total = None if remaining_seconds is None else round(spent + hourly * remaining_seconds / 3600.0, 2)
    return EstimatedCost(hourly=hourly, total=total, currency=config.currency).to_wire()
