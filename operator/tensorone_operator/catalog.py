"""The GPU catalog at work with the operator's configuration: what a job is given and what it
costs (the pure functions are ``tensorone.api.catalog``'s, which the SDK and the gateway use too).

Pure functions of the typed spec, the configuration and node objects; no I/O. A job's catalog
entry is looked up once (``job_resources``) and the result passed to everything that needs it.
"""

from __future__ import annotations

from typing import Any

from tensorone.api import catalog
from tensorone.api.catalog import GPU_PRODUCT_LABEL, GPU_RESOURCE, JobResources, scale_memory
from tensorone.api.v1alpha1 import TrainingJobSpec
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


def job_resources(spec: TrainingJobSpec, config: OperatorConfig) -> JobResources:
    """The job's resources from the configured catalog (:func:`tensorone.api.catalog.job_resources`)."""
    return catalog.job_resources(spec, config.gpu_catalog, cpu_pod_hourly_price=config.cpu_job.hourly_price)


def resource_allocation(resources: JobResources, config: OperatorConfig) -> dict[str, Any]:
    """``status.resourceAllocation`` with the configured CPU-only pod memory."""
    return catalog.resource_allocation(resources, cpu_memory=config.cpu_job.memory)


def estimated_cost(
    resources: JobResources,
    config: OperatorConfig,
    *,
    max_runtime_seconds: int | None,
    spent: float = 0.0,
    remaining_seconds: float | None = None,
) -> dict[str, Any]:
    """``status.estimatedCost`` in the configured currency (see :func:`tensorone.api.catalog.estimated_cost`)."""
    return catalog.estimated_cost(
        resources,
        currency=config.currency,
        max_runtime_seconds=max_runtime_seconds,
        spent=spent,
        remaining_seconds=remaining_seconds,
    )
