"""What the TensorOne trainer of this release trains: one list, checked everywhere.

The CRD accepts every model type of the reference API, so that a manifest stays valid as the
trainer grows; this list says which of them the trainer image of this release actually trains.
The operator refuses a job outside it before it creates any child (no pod, no GPU, no cost), the
SDK, ``t1 create``, ``t1 validate`` and the gateway refuse it on create, and the trainer itself
refuses it by the same rule (``trainer.capabilities``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tensorone.api.v1alpha1.dataset import DatasetFormat
from tensorone.api.v1alpha1.trainingjob import ModelType, TrainingJobSpec
from tensorone.errors import ConfigurationError

# The model types the trainer implements, in the order the docs list them.
TRAINED_MODEL_TYPES: tuple[ModelType, ...] = (ModelType.llm, ModelType.vision, ModelType.multimodal)


class VisionTask(StrEnum):
    """What a vision job learns; its Dataset's format says which (coco: detection)."""

    classification = "classification"
    detection = "detection"


# The vision tasks the trainer implements; a vision job of another task is refused before scheduling.
TRAINED_VISION_TASKS: tuple[VisionTask, ...] = (VisionTask.classification, VisionTask.detection)


def vision_task_of(data_format: DatasetFormat) -> VisionTask:
    """What a vision job on a Dataset of this format learns: boxes from coco, a class per image otherwise."""
    return VisionTask.detection if data_format == DatasetFormat.coco else VisionTask.classification


@dataclass(frozen=True)
class VisionArchitecture:
    """What a ``config.architecture`` name builds: the task, and the transformers model family."""

    task: VisionTask
    family: str  # the transformers config's model_type, such as "vit" or "rt_detr"
    description: str  # one line for the docs


# config.architecture -> what the trainer builds for it. A name outside this table is refused by
# the operator before scheduling; a vision job that names only config.baseModel is checked by the
# trainer against the model's own config.
VISION_ARCHITECTURES: dict[str, VisionArchitecture] = {
    "rt-detr-r18": VisionArchitecture(
        VisionTask.detection, "rt_detr", "RT-DETR, ResNet-18-vd backbone, 3 decoder layers"
    ),
    "rt-detr-r50": VisionArchitecture(
        VisionTask.detection, "rt_detr", "RT-DETR, ResNet-50-vd backbone, 6 decoder layers"
    ),
    "rt-detr-v2-r18": VisionArchitecture(
        VisionTask.detection, "rt_detr_v2", "RT-DETRv2, ResNet-18-vd backbone, 3 decoder layers"
    ),
    "rt-detr-v2-r50": VisionArchitecture(
        VisionTask.detection, "rt_detr_v2", "RT-DETRv2, ResNet-50-vd backbone, 6 decoder layers"
    ),
    "resnet18": VisionArchitecture(VisionTask.classification, "resnet", "ResNet-18 (basic blocks), 11.7M parameters"),
    "resnet34": VisionArchitecture(VisionTask.classification, "resnet", "ResNet-34 (basic blocks), 21.8M parameters"),
    "resnet50": VisionArchitecture(
        VisionTask.classification, "resnet", "ResNet-50 (bottleneck blocks), 25.6M parameters"
    ),
    "resnet101": VisionArchitecture(
        VisionTask.classification, "resnet", "ResNet-101 (bottleneck blocks), 44.5M parameters"
    ),
    "vit-tiny": VisionArchitecture(VisionTask.classification, "vit", "ViT-Ti/16: width 192, 12 layers, 3 heads, 5.7M"),
    "vit-small": VisionArchitecture(VisionTask.classification, "vit", "ViT-S/16: width 384, 12 layers, 6 heads, 22M"),
    "vit-base": VisionArchitecture(VisionTask.classification, "vit", "ViT-B/16: width 768, 12 layers, 12 heads, 86M"),
    "vit-large": VisionArchitecture(
        VisionTask.classification, "vit", "ViT-L/16: width 1024, 24 layers, 16 heads, 304M"
    ),
    "convnext-tiny": VisionArchitecture(VisionTask.classification, "convnext", "ConvNeXt-T: depths 3-3-9-3, 28M"),
    "convnext-small": VisionArchitecture(VisionTask.classification, "convnext", "ConvNeXt-S: depths 3-3-27-3, 50M"),
    "convnext-base": VisionArchitecture(VisionTask.classification, "convnext", "ConvNeXt-B: width 128-1024, 89M"),
    "convnext-large": VisionArchitecture(VisionTask.classification, "convnext", "ConvNeXt-L: width 192-1536, 198M"),
}

# Architectures asked for by name that this release will not build, and why. YOLO models come from
# Ultralytics, which is AGPL-3.0 (and needs torchvision): the trainer image does not ship it.
REFUSED_ARCHITECTURES: dict[str, str] = {
    name: "YOLO detectors come from Ultralytics, licensed AGPL-3.0, which the trainer does not ship; "
    "RT-DETR is a real-time detector of comparable accuracy"
    for name in ("yolov5", "yolov8", "yolov9", "yolov10", "yolo11", "yolo12")
}


def vision_families(task: VisionTask) -> list[str]:
    """The transformers model families (config model_type) the trainer builds for ``task``, in table order."""
    families = (a.family for a in VISION_ARCHITECTURES.values() if a.task == task)
    return list(dict.fromkeys(families))


def trained_description() -> str:
    """What can run, for a message: the trained model types, and custom images."""
    return f"{', '.join(TRAINED_MODEL_TYPES)} (and modelType custom with your own image in config.custom)"


def untrainable_error(spec: TrainingJobSpec) -> ConfigurationError | None:
    """A job of a model type this release's trainer does not train, or None.

    A custom job runs the user's own image, so any model type it names is the image's business.
    """
    if spec.model_type == ModelType.custom:
        return None
    if spec.model_type in TRAINED_MODEL_TYPES:
        return _architecture_error(spec)
    return ConfigurationError(
        f"modelType {spec.model_type} is not trained by this release's trainer, so the job would fail "
        f"in its pods; refused before anything is scheduled. It trains: {trained_description()}",
        field="spec.modelType",
        details={"modelType": str(spec.model_type), "trainedModelTypes": [str(t) for t in TRAINED_MODEL_TYPES]},
    )


def _architecture_error(spec: TrainingJobSpec) -> ConfigurationError | None:
    """A vision job's config.architecture must be one the trainer builds."""
    architecture = spec.config.architecture
    if spec.model_type != ModelType.vision or architecture is None or architecture in VISION_ARCHITECTURES:
        return None
    supported = ", ".join(VISION_ARCHITECTURES) or "none yet"
    why = REFUSED_ARCHITECTURES.get(architecture.lower().removesuffix(".pt").rstrip("nsmlx"))
    return ConfigurationError(
        f"architecture {architecture!r} is not built by this release's trainer"
        + (f" ({why})" if why else "")
        + f"; refused before anything is scheduled. Supported: {supported} (or config.baseModel, a transformers "
        "model of a supported family)",
        field="spec.config.architecture",
        details={"architecture": architecture, "supportedArchitectures": list(VISION_ARCHITECTURES)},
    )


def vision_task_error(spec: TrainingJobSpec, data_format: DatasetFormat) -> ConfigurationError | None:
    """A vision job whose Dataset asks for a task the trainer does not implement, or whose
    config.architecture is built for another task than its Dataset's; None otherwise."""
    if spec.model_type != ModelType.vision:
        return None
    task = vision_task_of(data_format)
    if task not in TRAINED_VISION_TASKS:
        return ConfigurationError(
            f"a vision job on a {data_format} Dataset is {task}, which this release's trainer does not train; "
            f"refused before anything is scheduled. It trains: {', '.join(TRAINED_VISION_TASKS)} "
            f"(Dataset format {DatasetFormat.coco} for detection)",
            field="spec.datasetId",
        )
    built = VISION_ARCHITECTURES.get(spec.config.architecture or "")
    if built is not None and built.task != task:
        matching = [name for name, a in VISION_ARCHITECTURES.items() if a.task == task]
        return ConfigurationError(
            f"architecture {spec.config.architecture} is a {built.task} model, but its {data_format} Dataset "
            f"asks for {task}; use one of: {', '.join(matching) or 'none yet'}",
            field="spec.config.architecture",
        )
    return None
