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

from tensorone.api.v1alpha1.trainingjob import ModelType, TrainingJobSpec
from tensorone.errors import ConfigurationError

# The model types the trainer implements, in the order the docs list them.
TRAINED_MODEL_TYPES: tuple[ModelType, ...] = (ModelType.llm, ModelType.multimodal)


class VisionTask(StrEnum):
    """What a vision job learns; its Dataset's format says which (coco: detection)."""

    classification = "classification"
    detection = "detection"


@dataclass(frozen=True)
class VisionArchitecture:
    """What a ``config.architecture`` name builds: the task, and the transformers model family."""

    task: VisionTask
    family: str  # the transformers config's model_type, such as "vit" or "rt_detr"
    description: str  # one line for the docs


# config.architecture -> what the trainer builds for it. A name outside this table is refused by
# the operator before scheduling; a vision job that names only config.baseModel is checked by the
# trainer against the model's own config.
VISION_ARCHITECTURES: dict[str, VisionArchitecture] = {}


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
    return ConfigurationError(
        f"architecture {architecture!r} is not built by this release's trainer; refused before anything is "
        f"scheduled. Supported: {supported} (or config.baseModel, a transformers model of a supported family)",
        field="spec.config.architecture",
        details={"architecture": architecture, "supportedArchitectures": list(VISION_ARCHITECTURES)},
    )
