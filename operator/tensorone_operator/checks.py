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

from tensorone.errors import ConfigurationError, DatasetNotFound, InsufficientResources
from tensorone_operator.builders import MASTER_PORT
from tensorone_operator.catalog import available_gpu_types, gpu_type
from tensorone_operator.config import OperatorConfig
from tensorone_operator.status import Problem

IMAGE_FORMATS = frozenset({"imagefolder", "coco"})
TEXT_FORMATS = ("jsonl", "json", "csv", "parquet", "text")
# Environment names the operator or the Training Operator set: a custom job may not override them.
RESERVED_ENV_PREFIXES = ("TENSORONE_", "PET_", "MASTER_")
RESERVED_ENV_NAMES = frozenset({"RANK", "WORLD_SIZE", "LOCAL_RANK", "HF_TOKEN", "PYTHONUNBUFFERED"})


def check_gpu_type(spec: Mapping[str, Any], config: OperatorConfig) -> Problem | None:
    """spec.gpuType must be a key of the operator's GPU catalog."""
    try:
        gpu_type(spec, config)
    except ConfigurationError as exc:
        return Problem("ConfigurationValid", exc.code, str(exc), waiting=False)
    return None


def check_dataset(namespace: str, spec: Mapping[str, Any], dataset: Mapping[str, Any] | None) -> Problem | None:
    """The Dataset named by spec.datasetId must exist in the job's namespace (waiting otherwise)."""
    if dataset is None or (dataset.get("metadata") or {}).get("deletionTimestamp"):
        error = DatasetNotFound(
            f"Dataset {spec.get('datasetId')!r} does not exist in namespace {namespace!r}; the job starts "
            "when it is created",
            field="spec.datasetId",
        )
        return Problem("DatasetReady", error.code, str(error), waiting=True)
    return None


def check_configuration(spec: Mapping[str, Any], dataset: Mapping[str, Any]) -> Problem | None:
    """What the schema cannot check: the job against its Dataset, and reserved names."""
    problems: list[ConfigurationError] = []
    model_type = spec.get("modelType")
    data_format = (dataset.get("spec") or {}).get("format")
    columns = (dataset.get("spec") or {}).get("columns") or {}
    dataset_name = (dataset.get("metadata") or {}).get("name")
    if model_type == "llm" and data_format in IMAGE_FORMATS:
        problems.append(
            ConfigurationError(
                f"Dataset {dataset_name!r} has format {data_format}, which holds images; an llm job needs "
                f"text: one of {', '.join(TEXT_FORMATS)}",
                field="spec.datasetId",
            )
        )
    if model_type == "vision" and data_format not in IMAGE_FORMATS and not columns.get("image"):
        problems.append(
            ConfigurationError(
                f"Dataset {dataset_name!r} has format {data_format} without an image column; a vision job needs "
                "format imagefolder or coco, or columns.image",
                field="spec.datasetId",
            )
        )
    custom = (spec.get("config") or {}).get("custom") or {}
    for index, variable in enumerate(custom.get("env") or []):
        name = str(variable.get("name", ""))
        if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES):
            problems.append(
                ConfigurationError(
                    f"{name} is set by the operator or the Training Operator; reserved are "
                    f"{', '.join(sorted(RESERVED_ENV_NAMES))} and names starting with "
                    f"{', '.join(RESERVED_ENV_PREFIXES)}",
                    field=f"spec.config.custom.env[{index}].name",
                )
            )
    if custom.get("progressPort") == MASTER_PORT:
        problems.append(
            ConfigurationError(
                f"port {MASTER_PORT} is the torch rendezvous port of the PyTorchJob; choose another",
                field="spec.config.custom.progressPort",
            )
        )
    if not problems:
        return None
    return Problem(
        "ConfigurationValid", problems[0].code, "; ".join(str(problem) for problem in problems), waiting=False
    )


def check_gpu_nodes(
    spec: Mapping[str, Any], config: OperatorConfig, nodes: Iterable[Mapping[str, Any]]
) -> Problem | None:
    """Some node must offer spec.gpuType (waiting otherwise: a node may join, an autoscaler may add one)."""
    key = spec.get("gpuType")
    if not key or not config.check_gpu_nodes:
        return None
    available = available_gpu_types(nodes, config)
    if key in available:
        return None
    error = InsufficientResources(
        f"no node offers GPU type {key!r} (node label nvidia.com/gpu.product in "
        f"{', '.join(config.gpu_catalog[key].products)}); available GPU types: "
        f"{', '.join(available) if available else 'none'}; the job starts when such a node joins",
        field="spec.gpuType",
    )
    return Problem("ResourcesAvailable", error.code, str(error), waiting=True)
