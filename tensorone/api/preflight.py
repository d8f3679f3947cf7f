"""What a TrainingJob must pass before its PyTorchJob is created: the create-time checks (pure).

The schema and the CEL rules of the CRD refuse most bad manifests at apply time; these checks
cover what they cannot see: the GPU catalog, other objects (the Dataset, the nodes) and names the
operator reserves. The operator runs them before it creates a job's children and holds the job
with a condition while one fails; the SDK, ``t1 create`` and the gateway run the same functions
on create and refuse the job with the error instead, so every path gives the same answer.

Each check returns the error it found (a ``TensorOneError`` with the reference API's code, the
field and the structured details of the reference's error body) or None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tensorone.api.catalog import GPU_PRODUCT_LABEL, GpuType, available_gpu_types, catalog_entry, spot_error
from tensorone.api.trainable import VisionTask, untrainable_error, vision_task_error, vision_task_of
from tensorone.api.v1alpha1 import Dataset, ModelType, TrainingJobSpec
from tensorone.api.v1alpha1.dataset import DatasetFormat
from tensorone.errors import (
    ConfigurationError,
    DatasetNotFound,
    DatasetNotReady,
    InsufficientResources,
    TensorOneError,
)

# The torch rendezvous port of a PyTorchJob (the Training Operator's MASTER_PORT).
MASTER_PORT = 23456
IMAGE_FORMATS = frozenset({"imagefolder", "coco"})
TEXT_FORMATS = ("jsonl", "json", "csv", "parquet", "text")
# Dataset formats a vision classification job reads its image paths and labels from (a manifest).
MANIFEST_FORMATS = ("csv", "jsonl", "json", "parquet")
# Augmentations that move objects between images: detection only.
DETECTION_AUGMENTATIONS = ("mosaic", "copyPaste")
# Environment names the operator or the Training Operator set: a custom job may not override them.
RESERVED_ENV_PREFIXES = ("TENSORONE_", "PET_", "MASTER_")
RESERVED_ENV_NAMES = frozenset({"RANK", "WORLD_SIZE", "LOCAL_RANK", "HF_TOKEN", "PYTHONUNBUFFERED"})


def gpu_type_error(spec: TrainingJobSpec, catalog: Mapping[str, GpuType]) -> ConfigurationError | None:
    """spec.gpuType must be a key of the GPU catalog (a CPU-only job has none), and a job with
    spec.spot must name a type with spot capacity."""
    if spec.gpu_type:
        try:
            catalog_entry(spec.gpu_type, catalog)
        except ConfigurationError as error:
            return error
    return spot_error(spec, catalog)


def dataset_error(
    namespace: str, spec: TrainingJobSpec, dataset: Dataset | None, *, dataset_id: str | None = None
) -> DatasetNotFound | None:
    """The Dataset named by spec.datasetId must exist in the job's namespace, not be going away,
    and not be known unusable (Ready False: a pvc source whose claim is missing).

    ``dataset_id`` is the id as the caller wrote it (``ds_...``), for the details, when it differs
    from the Dataset's name.
    """
    if dataset is None or dataset.metadata.deletion_timestamp is not None:
        return DatasetNotFound(
            f"Dataset {spec.dataset_id!r} does not exist in namespace {namespace!r}",
            field="spec.datasetId",
            details={"datasetId": dataset_id or spec.dataset_id},
        )
    conditions = dataset.status.conditions if dataset.status is not None else None
    ready = next((c for c in conditions or [] if c.type == "Ready"), None)
    if ready is not None and ready.status == "False":
        return DatasetNotReady(
            f"Dataset {spec.dataset_id!r} is not Ready ({ready.message})",
            field="spec.datasetId",
            details={"datasetId": dataset_id or spec.dataset_id, "reason": ready.reason},
        )
    return None


def _data_errors(spec: TrainingJobSpec, dataset: Dataset) -> list[ConfigurationError]:
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
    if spec.model_type == ModelType.multimodal and data_format in IMAGE_FORMATS:
        return [
            ConfigurationError(
                f"Dataset {name!r} has format {data_format}, a vision format; a multimodal job reads chat "
                f"messages with images from one of {', '.join(TEXT_FORMATS)}",
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
    if spec.model_type == ModelType.vision:
        return vision_errors(spec, dataset)
    return []


def vision_errors(spec: TrainingJobSpec, dataset: Dataset) -> list[ConfigurationError]:
    """A vision job against what its Dataset makes of it: a task the trainer trains with an
    architecture of that task (``tensorone.api.trainable.vision_task_error``) and, for image
    classification, images on a claim and augmentations that apply to it."""
    task_error = vision_task_error(spec, DatasetFormat(dataset.spec.format))
    if task_error is not None:
        return [task_error]
    if vision_task_of(DatasetFormat(dataset.spec.format)) != VisionTask.classification:
        return []
    name = dataset.metadata.name
    errors: list[ConfigurationError] = []
    source = dataset.spec.source
    if source.pvc is None:
        given = "uri" if source.uri is not None else "huggingFace" if source.hugging_face is not None else "inline"
        errors.append(
            ConfigurationError(
                f"Dataset {name!r} has a {given} source; image classification reads its images from a claim: "
                "source.pvc (a folder per class, or a manifest whose image paths are on the claim)",
                field="spec.datasetId",
            )
        )
    columns = dataset.spec.columns
    data_format = dataset.spec.format
    manifest = data_format in MANIFEST_FORMATS and columns is not None and columns.image and columns.label
    if data_format != "imagefolder" and not manifest:
        errors.append(
            ConfigurationError(
                f"Dataset {name!r} has format {data_format}; image classification reads format imagefolder (a "
                f"folder per class), or a manifest ({', '.join(MANIFEST_FORMATS)}) with both columns.image (the "
                "image path) and columns.label (its class)",
                field="spec.datasetId",
            )
        )
    augmentation = spec.config.augmentation
    for field in DETECTION_AUGMENTATIONS:
        if augmentation is not None and augmentation.to_wire().get(field) is not None:
            errors.append(
                ConfigurationError(
                    f"{field} combines objects of several images, for object detection; image classification "
                    "applies fliplr, flipud, scale, translate, degrees, hsvH, hsvS, hsvV and mixup",
                    field=f"spec.config.augmentation.{field}",
                )
            )
    return errors


def _custom_errors(spec: TrainingJobSpec) -> list[ConfigurationError]:
    """Names a custom image may not take: reserved environment variables, the rendezvous port."""
    custom = spec.config.custom
    if custom is None:
        return []
    errors = [
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
        errors.append(
            ConfigurationError(
                f"port {MASTER_PORT} is the torch rendezvous port of the PyTorchJob; choose another",
                field="spec.config.custom.progressPort",
            )
        )
    return errors


def configuration_errors(spec: TrainingJobSpec, dataset: Dataset) -> list[ConfigurationError]:
    """What the schema cannot check: the job against its Dataset, and reserved names."""
    return _data_errors(spec, dataset) + _custom_errors(spec)


def configuration_error(spec: TrainingJobSpec, dataset: Dataset) -> ConfigurationError | None:
    """:func:`configuration_errors` as one error: the first names the field, the message all of them."""
    errors = configuration_errors(spec, dataset)
    if not errors:
        return None
    first = errors[0]
    return ConfigurationError(
        "; ".join(str(error) for error in errors),
        details={
            "field": first.field,
            "reason": first.message,
            "errors": [{"field": error.field, "reason": error.message} for error in errors],
        },
    )


def gpu_nodes_error(
    key: str | None, catalog: Mapping[str, GpuType], nodes: Iterable[Mapping[str, Any]], *, spot: bool = False
) -> InsufficientResources | None:
    """Some node must offer the GPU type ``key`` (spec.gpuType; a CPU-only job, None, passes); a
    spot node of that type (the entry's spot node labels) for a job with ``spot``."""
    entry = catalog.get(key) if key else None
    if key is None or entry is None:
        return None
    nodes = list(nodes)
    available = available_gpu_types(nodes, catalog, spot=spot)
    if key in available:
        return None
    where = f"node label {GPU_PRODUCT_LABEL} in {', '.join(entry.products)}"
    if spot and entry.spot is not None:
        where += ", " + ", ".join(f"{label}={value}" for label, value in entry.spot.node_selector.items())
    return InsufficientResources(
        f"no {'spot ' if spot else ''}node offers GPU type {key!r} ({where}); available "
        f"{'spot ' if spot else ''}GPU types: {', '.join(available) if available else 'none'}",
        field="spec.gpuType",
        details={"requestedGpuType": key, "availableGpuTypes": available},
    )


def create_error(
    namespace: str,
    spec: TrainingJobSpec,
    *,
    dataset: Dataset | None,
    catalog: Mapping[str, GpuType],
    nodes: Iterable[Mapping[str, Any]] | None,
    dataset_id: str | None = None,
) -> TensorOneError | None:
    """Every check, in the operator's order (GPU type, model type, Dataset, configuration, GPU
    nodes): the first error, or None. ``nodes`` None leaves the node check out (``checkGpuNodes: false``, or a
    caller who may not list nodes); ``dataset_id`` is as in :func:`dataset_error`."""
    error: TensorOneError | None = (
        gpu_type_error(spec, catalog)
        or untrainable_error(spec)
        or dataset_error(namespace, spec, dataset, dataset_id=dataset_id)
    )
    if error is None and dataset is not None:
        error = configuration_error(spec, dataset)
    if error is None and nodes is not None:
        error = gpu_nodes_error(spec.gpu_type, catalog, nodes, spot=spec.spot)
    return error
