"""Checks a TrainingJob must pass before its PyTorchJob is created (pure; no I/O).

Each returns a ``Problem`` (condition type, error code, message naming the field or id) or None.
The codes are the reference API's: CONFIGURATION_ERROR, DATASET_NOT_FOUND, INSUFFICIENT_RESOURCES.
The schema and the CEL rules of the CRD refuse most bad manifests at apply time; these checks
cover what they cannot see: the operator's GPU catalog, other objects (the Dataset, the nodes) and
names the operator reserves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tensorone.api.v1alpha1 import ConditionType, Dataset, ModelType, Reason, TrainingJobSpec
from tensorone.errors import ConfigurationError, DatasetNotFound, InsufficientResources
from tensorone_operator.builders import MASTER_PORT
from tensorone_operator.catalog import GPU_PRODUCT_LABEL, JobResources, available_gpu_types, job_resources
from tensorone_operator.config import OperatorConfig
from tensorone_operator.status import Problem

IMAGE_FORMATS = frozenset({"imagefolder", "coco"})
TEXT_FORMATS = ("jsonl", "json", "csv", "parquet", "text")
# Environment names the operator or the Training Operator set: a custom job may not override them.
RESERVED_ENV_PREFIXES = ("TENSORONE_", "PET_", "MASTER_")
RESERVED_ENV_NAMES = frozenset({"RANK", "WORLD_SIZE", "LOCAL_RANK", "HF_TOKEN", "PYTHONUNBUFFERED"})


def check_gpu_type(spec: TrainingJobSpec, config: OperatorConfig) -> tuple[JobResources | None, Problem | None]:
    """spec.gpuType must be a key of the operator's GPU catalog: the job's resources, or the problem."""
    try:
        return job_resources(spec, config), None
    except ConfigurationError as exc:
        return None, Problem(ConditionType.ConfigurationValid, Reason(exc.code), str(exc), waiting=False)


def check_dataset(namespace: str, spec: TrainingJobSpec, dataset: Dataset | None) -> Problem | None:
    """The Dataset named by spec.datasetId must exist in the job's namespace and be Ready (waiting otherwise)."""
    if dataset is None or dataset.metadata.deletion_timestamp is not None:
        error = DatasetNotFound(
            f"Dataset {spec.dataset_id!r} does not exist in namespace {namespace!r}; the job starts when it is created",
            field="spec.datasetId",
        )
        return Problem(ConditionType.DatasetReady, Reason.DATASET_NOT_FOUND, str(error), waiting=True)
    # A Dataset that is not Ready would fail in the pods: hold the job until it is (only a pvc
    # source whose claim is missing is ever not Ready).
    conditions = dataset.status.conditions if dataset.status is not None else None
    ready = next((c for c in conditions or [] if c.type == ConditionType.Ready), None)
    if ready is not None and ready.status == "False":
        message = (
            f"spec.datasetId: Dataset {spec.dataset_id!r} is not Ready ({ready.message}); the job starts when it is"
        )
        return Problem(ConditionType.DatasetReady, Reason.CLAIM_NOT_FOUND, message, waiting=True)
    return None


def _data_problems(spec: TrainingJobSpec, dataset: Dataset) -> list[ConfigurationError]:
    """The job's model type against the Dataset's format."""
    data_format = dataset.spec.format
    has_image_column = bool(dataset.spec.columns and dataset.spec.columns.image)
    name = dataset.metadata.name
    if spec.model_type == ModelType.llm and data_format in IMAGE_FORMATS:
        return [
            ConfigurationError(
                f"Dataset {name!r} has format {data_format}, which holds images; an llm job needs "
                f"text: one of {', '.join(TEXT_FORMATS)}",
                field="spec.datasetId",
            )
        ]
    if spec.model_type == ModelType.vision and data_format not in IMAGE_FORMATS and not has_image_column:
        return [
            ConfigurationError(
                f"Dataset {name!r} has format {data_format} without an image column; a vision job needs "
                "format imagefolder or coco, or columns.image",
                field="spec.datasetId",
            )
        ]
    return []


def _custom_problems(spec: TrainingJobSpec) -> list[ConfigurationError]:
    """Names a custom image may not take: reserved environment variables, the rendezvous port."""
    custom = spec.config.custom
    if custom is None:
        return []
    problems = [
        ConfigurationError(
            f"{variable.name} is set by the operator or the Training Operator; reserved are "
            f"{', '.join(sorted(RESERVED_ENV_NAMES))} and names starting with "
            f"{', '.join(RESERVED_ENV_PREFIXES)}",
            field=f"spec.config.custom.env[{index}].name",
        )
        for index, variable in enumerate(custom.env or [])
        if variable.name in RESERVED_ENV_NAMES or variable.name.startswith(RESERVED_ENV_PREFIXES)
    ]
    if custom.progress_port == MASTER_PORT:
        problems.append(
            ConfigurationError(
                f"port {MASTER_PORT} is the torch rendezvous port of the PyTorchJob; choose another",
                field="spec.config.custom.progressPort",
            )
        )
    return problems


def check_configuration(spec: TrainingJobSpec, dataset: Dataset) -> Problem | None:
    """What the schema cannot check: the job against its Dataset, and reserved names."""
    problems = _data_problems(spec, dataset) + _custom_problems(spec)
    if not problems:
        return None
    return Problem(
        ConditionType.ConfigurationValid,
        Reason.CONFIGURATION_ERROR,
        "; ".join(str(problem) for problem in problems),
        waiting=False,
    )


def check_gpu_nodes(
    resources: JobResources, config: OperatorConfig, nodes: Iterable[Mapping[str, Any]]
) -> Problem | None:
    """Some node must offer the job's GPU type (waiting otherwise: a node may join, an autoscaler may add one)."""
    key, entry = resources.gpu_type, resources.entry
    if key is None or entry is None or not config.check_gpu_nodes:
        return None
    available = available_gpu_types(nodes, config)
    if key in available:
        return None
    error = InsufficientResources(
        f"no node offers GPU type {key!r} (node label {GPU_PRODUCT_LABEL} in "
        f"{', '.join(entry.products)}); available GPU types: "
        f"{', '.join(available) if available else 'none'}; the job starts when such a node joins",
        field="spec.gpuType",
    )
    return Problem(ConditionType.ResourcesAvailable, Reason.INSUFFICIENT_RESOURCES, str(error), waiting=True)
