"""Checks a TrainingJob must pass before its PyTorchJob is created (pure; no I/O).

Each returns a ``Problem`` (condition type, error code, message naming the field or id) or None.
The rules are ``tensorone.api.preflight``'s, which the SDK, ``t1 create`` and the gateway run on
create too; here a failed rule holds the job with a condition instead of refusing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tensorone.api import preflight
from tensorone.api.trainable import untrainable_error
from tensorone.api.v1alpha1 import ConditionType, Dataset, Reason, TrainingJobSpec
from tensorone.errors import ConfigurationError, DatasetNotReady
from tensorone_operator.catalog import JobResources, job_resources
from tensorone_operator.config import OperatorConfig
from tensorone_operator.status import Problem


def check_gpu_type(spec: TrainingJobSpec, config: OperatorConfig) -> tuple[JobResources | None, Problem | None]:
    """spec.gpuType must be a key of the operator's GPU catalog, and a spot job's type must have spot
    capacity: the job's resources, or the problem (checked first: no child exists before it passes)."""
    try:
        return job_resources(spec, config), None
    except ConfigurationError as exc:
        return None, Problem(ConditionType.ConfigurationValid, Reason(exc.code), str(exc), waiting=False)


def check_trainable(spec: TrainingJobSpec) -> Problem | None:
    """The trainer of this release must train the job's model type: a job it cannot run is refused
    before any child exists, so no pod is scheduled and nothing is billed."""
    error = untrainable_error(spec)
    if error is None:
        return None
    return Problem(ConditionType.ConfigurationValid, Reason.CONFIGURATION_ERROR, str(error), waiting=False)


def check_dataset(namespace: str, spec: TrainingJobSpec, dataset: Dataset | None) -> Problem | None:
    """The Dataset named by spec.datasetId must exist in the job's namespace and be Ready (waiting
    otherwise: a Dataset that is not Ready would fail in the pods)."""
    error = preflight.dataset_error(namespace, spec, dataset)
    if isinstance(error, DatasetNotReady):
        message = f"{error}; the job starts when it is"
        return Problem(ConditionType.DatasetReady, Reason.CLAIM_NOT_FOUND, message, waiting=True)
    if error is not None:
        message = f"{error}; the job starts when it is created"
        return Problem(ConditionType.DatasetReady, Reason.DATASET_NOT_FOUND, message, waiting=True)
    return None


def check_configuration(spec: TrainingJobSpec, dataset: Dataset) -> Problem | None:
    """What the schema cannot check: the job against its Dataset, and reserved names."""
    error = preflight.configuration_error(spec, dataset)
    if error is None:
        return None
    return Problem(ConditionType.ConfigurationValid, Reason.CONFIGURATION_ERROR, str(error), waiting=False)


def check_gpu_nodes(
    resources: JobResources, config: OperatorConfig, nodes: Iterable[Mapping[str, Any]]
) -> Problem | None:
    """Some node must offer the job's GPU type, a spot node for a spot job (waiting otherwise: a node
    may join, an autoscaler may add one)."""
    if resources.entry is None or not config.check_gpu_nodes:
        return None
    error = preflight.gpu_nodes_error(resources.gpu_type, config.gpu_catalog, nodes, spot=resources.spot is not None)
    if error is None:
        return None
    message = f"{error}; the job starts when such a node joins"
    return Problem(ConditionType.ResourcesAvailable, Reason.INSUFFICIENT_RESOURCES, message, waiting=True)
