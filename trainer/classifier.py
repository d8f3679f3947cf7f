"""The image classifier: a transformers model built from a named architecture, or loaded from a
base model with a head for the job's classes; how its input is normalised; saving it.

``config.architecture`` (a row of ``tensorone.api.trainable.VISION_ARCHITECTURES``) builds the
published configuration of that model from scratch (random weights, seeded). ``config.baseModel``
loads a model of a supported family (``AutoModelForImageClassification.from_pretrained``, a hub id
or a folder) and gives it a new classification head unless its head already has exactly the job's
classes. Normalisation: the base model's image processor's mean and standard deviation, else the
family's (ViT: 0.5; ResNet and ConvNeXt: ImageNet's). Input size: ``config.inputSize``, else the
base model's (its processor's size, or its config's image_size), else 224 x 224.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tensorone.api.resolved import ResolvedJob
from tensorone.api.trainable import VISION_ARCHITECTURES, VisionTask, vision_families
from tensorone.errors import ConfigurationError
from trainer.data.augmentation import Normalisation
from trainer.model import hub_options

log = logging.getLogger("trainer")

DEFAULT_INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A family's statistics when the model comes with no image processor (what its processors default to).
FAMILY_STATISTICS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet": (IMAGENET_MEAN, IMAGENET_STD),
    "convnext": (IMAGENET_MEAN, IMAGENET_STD),
}


def _resnet(depths: list[int], bottleneck: bool) -> dict[str, Any]:
    widths = [256, 512, 1024, 2048] if bottleneck else [64, 128, 256, 512]
    return {
        "embedding_size": 64,
        "hidden_sizes": widths,
        "depths": depths,
        "layer_type": "bottleneck" if bottleneck else "basic",
    }


def _vit(width: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "hidden_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * width,
        "patch_size": 16,
    }


def _convnext(widths: list[int], depths: list[int]) -> dict[str, Any]:
    return {"hidden_sizes": widths, "depths": depths}


# The published configuration of each architecture name: the transformers config's arguments.
ARCHITECTURE_SETTINGS: dict[str, Callable[[], dict[str, Any]]] = {
    "resnet18": lambda: _resnet([2, 2, 2, 2], bottleneck=False),
    "resnet34": lambda: _resnet([3, 4, 6, 3], bottleneck=False),
    "resnet50": lambda: _resnet([3, 4, 6, 3], bottleneck=True),
    "resnet101": lambda: _resnet([3, 4, 23, 3], bottleneck=True),
    "vit-tiny": lambda: _vit(192, 12, 3),
    "vit-small": lambda: _vit(384, 12, 6),
    "vit-base": lambda: _vit(768, 12, 12),
    "vit-large": lambda: _vit(1024, 24, 16),
    "convnext-tiny": lambda: _convnext([96, 192, 384, 768], [3, 3, 9, 3]),
    "convnext-small": lambda: _convnext([96, 192, 384, 768], [3, 3, 27, 3]),
    "convnext-base": lambda: _convnext([128, 256, 512, 1024], [3, 3, 27, 3]),
    "convnext-large": lambda: _convnext([192, 384, 768, 1536], [3, 3, 27, 3]),
}


def labels_config(classes: list[str]) -> dict[str, Any]:
    """The config fields that name the classes (saved with the model, read by pipelines)."""
    return {
        "num_labels": len(classes),
        "id2label": dict(enumerate(classes)),
        "label2id": {name: number for number, name in enumerate(classes)},
    }


def architecture_config(architecture: str, classes: list[str], input_size: tuple[int, int]) -> Any:
    """The transformers config of a named architecture, for the job's classes and input size."""
    from transformers import AutoConfig

    entry = VISION_ARCHITECTURES.get(architecture)
    if entry is None or entry.task != VisionTask.classification:
        names = [name for name, a in VISION_ARCHITECTURES.items() if a.task == VisionTask.classification]
        raise ConfigurationError(
            f"{architecture!r} is not an image classification architecture; allowed: {', '.join(names)}",
            field="config.architecture",
        )
    settings = ARCHITECTURE_SETTINGS[architecture]() | labels_config(classes)
    if entry.family == "vit":
        height, width = input_size
        settings["image_size"] = height if height == width else [height, width]
    return AutoConfig.for_model(entry.family, **settings)


def family_of(job: ResolvedJob) -> str:
    """The model family (transformers model_type) the job trains, refused when not supported."""
    if job.config.base_model is None:
        architecture = job.config.architecture or ""
        entry = VISION_ARCHITECTURES.get(architecture)
        if entry is None:
            raise ConfigurationError(
                f"{architecture!r} is not built by this trainer; allowed: {', '.join(ARCHITECTURE_SETTINGS)}",
                field="config.architecture",
            )
        return entry.family
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(job.config.base_model, **hub_options(job))
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot load {job.config.base_model}: {error}", field="config.baseModel") from error
    families = vision_families(VisionTask.classification)
    if config.model_type not in families:
        raise ConfigurationError(
            f"{job.config.base_model} is a {config.model_type} model; image classification trains the "
            f"{', '.join(families)} families",
            field="config.baseModel",
        )
    return str(config.model_type)


def normalisation_for(job: ResolvedJob, family: str) -> tuple[Normalisation, list[str]]:
    """The input size and statistics of the job's model, and notices (a base model without an
    image processor)."""
    mean, std = FAMILY_STATISTICS[family]
    size: tuple[int, int] | None = None
    notices: list[str] = []
    if job.config.base_model is not None:
        processor = _image_processor(job)
        if processor is None:
            notices.append(
                f"{job.config.base_model} has no image processor: inputs are normalised with the {family} "
                "family's mean and standard deviation"
            )
        else:
            mean = _triple(getattr(processor, "image_mean", None)) or mean
            std = _triple(getattr(processor, "image_std", None)) or std
            size = _processor_size(getattr(processor, "size", None))
        if size is None:
            size = _config_size(job)
    if job.config.input_size is not None:
        size = (job.config.input_size[0], job.config.input_size[1])
    height, width = size or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)
    return Normalisation(height=height, width=width, mean=mean, std=std), notices


def load_classifier(
    job: ResolvedJob, classes: list[str], normalisation: Normalisation, device: torch.device
) -> tuple[Any, list[str]]:
    """The model to train, on the device, in training mode, and notices (a new head)."""
    from transformers import AutoModelForImageClassification

    notices: list[str] = []
    input_size = (normalisation.height, normalisation.width)
    if job.config.base_model is None:
        architecture = job.config.architecture or ""
        config = architecture_config(architecture, classes, input_size)
        model: Any = AutoModelForImageClassification.from_config(config)
        log.info("built %s from scratch for %d classes, input %dx%d", architecture, len(classes), *input_size)
    else:
        model, notice = _from_base_model(job, classes)
        if notice:
            notices.append(notice)
    if job.config.optimization.gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise ConfigurationError(
                f"{type(model).__name__} does not support gradient checkpointing; set it to false",
                field="config.optimization.gradientCheckpointing",
            )
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)
    model.train()
    return model, notices


def _from_base_model(job: ResolvedJob, classes: list[str]) -> tuple[Any, str | None]:
    from transformers import AutoConfig, AutoModelForImageClassification

    base = job.config.base_model
    assert base is not None
    options = hub_options(job)
    try:
        previous = AutoConfig.from_pretrained(base, **options)
        model = AutoModelForImageClassification.from_pretrained(
            base, **labels_config(classes), ignore_mismatched_sizes=True, dtype=torch.float32, **options
        )
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot load {base}: {error}", field="config.baseModel") from error
    had = {int(k): str(v) for k, v in (getattr(previous, "id2label", None) or {}).items()}
    if had == dict(enumerate(classes)) and _has_classifier(previous):
        return model, None
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Module):
        raise ConfigurationError(f"{type(model).__name__} has no classifier head to replace", field="config.baseModel")
    for module in head.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=getattr(model.config, "initializer_range", 0.02))
            torch.nn.init.zeros_(module.bias)
    return model, f"a new classification head for {len(classes)} classes (the base model's had {len(had)})"


def _has_classifier(config: Any) -> bool:
    """Whether a config is of a model with a classification head (not a bare backbone)."""
    return any(name.endswith("ForImageClassification") for name in getattr(config, "architectures", None) or [])


def _image_processor(job: ResolvedJob) -> Any:
    from transformers import AutoImageProcessor
    from transformers.utils import logging as transformers_logging

    # Without torchvision, transformers says at length that it uses its Pillow backend: it is the one meant.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        return AutoImageProcessor.from_pretrained(job.config.base_model, **hub_options(job))
    except (OSError, ValueError):
        return None
    finally:
        transformers_logging.set_verbosity(verbosity)


def _triple(values: Any) -> tuple[float, float, float] | None:
    if isinstance(values, (list, tuple)) and len(values) == 3:
        return (float(values[0]), float(values[1]), float(values[2]))
    return None


def _processor_size(size: Any) -> tuple[int, int] | None:
    if isinstance(size, dict):
        if size.get("height") and size.get("width"):
            return (int(size["height"]), int(size["width"]))
        if size.get("shortest_edge"):
            return (int(size["shortest_edge"]), int(size["shortest_edge"]))
    return None


def _config_size(job: ResolvedJob) -> tuple[int, int] | None:
    from transformers import AutoConfig

    assert job.config.base_model is not None
    image_size = getattr(AutoConfig.from_pretrained(job.config.base_model, **hub_options(job)), "image_size", None)
    if isinstance(image_size, int):
        return (image_size, image_size)
    if isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        return (int(image_size[0]), int(image_size[1]))
    return None


def save_classifier(model: Any, normalisation: Normalisation, directory: Path) -> None:
    """The model and an image processor that prepares an image exactly as evaluation did (resize
    to the input size, bilinear; scale to [0, 1]; normalise): ``pipeline("image-classification",
    directory)`` classifies with it."""
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    model.save_pretrained(directory)
    ViTImageProcessorPil(
        size={"height": normalisation.height, "width": normalisation.width},
        image_mean=list(normalisation.mean),
        image_std=list(normalisation.std),
    ).save_pretrained(directory)
