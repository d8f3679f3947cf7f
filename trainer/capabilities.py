"""What this trainer can do: a resolved job it cannot honour faithfully is refused, by field.

``ResolvedJob`` is the only input of the trainer and carries every default already
(``tensorone.api.resolved.with_defaults``). The rules the CRDs state are checked by the one rule
function, ``tensorone.api.resolved.check_rules``; this module adds only what depends on this
trainer and this process: the model types and data formats it implements (text for llm; for vision, the operator's own
rules against the Dataset), and the GPU and
libraries a job needs here. Each refusal is a ``ConfigurationError`` naming the field and what is
allowed: nothing in the job is silently ignored.
"""

from __future__ import annotations

import importlib.util

from tensorone.api.preflight import vision_errors
from tensorone.api.resolved import ResolvedJob, check_rules
from tensorone.api.trainable import TRAINED_MODEL_TYPES, untrainable_error
from tensorone.api.v1alpha1 import Dataset, TrainingJobSpec
from tensorone.api.v1alpha1.dataset import TEXT_FORMATS, DatasetFormat
from tensorone.api.v1alpha1.trainingjob import MixedPrecision, ModelType, ObjectMeta, Strategy
from tensorone.errors import ConfigurationError, NotImplementedByTrainer

IMAGE_COLUMNS = ("image", "label", "annotations")
# The columns of the layouts other than chat: a multimodal job learns assistant turns.
MULTIMODAL_REFUSED_COLUMNS = ("text", "prompt", "completion", "label", "annotations")
# The module each tracker of config.tracking needs, and the package that provides it.
TRACKER_LIBRARIES = {
    "mlflow": ("mlflow", "mlflow-skinny"),
    "tensorboard": ("tensorboardX", "tensorboardX"),
    "wandb": ("wandb", "wandb"),
}


def refuse_unsupported(job: ResolvedJob, *, cuda_available: bool, merge_adapter: bool = False) -> None:
    """Raise a ConfigurationError for the first thing in ``job`` this trainer cannot honour here.

    ``cuda_available`` is passed in (rather than asked of torch here) so the checks are plain
    functions of their inputs; ``merge_adapter`` is the ``--merge`` option of the command.
    """
    _refuse_model_type(job.model_type)
    _refuse_missing_gpu(job, cuda_available=cuda_available)
    check_rules(job)
    if job.model_type == ModelType.vision:
        _refuse_what_a_vision_job_cannot_run(job)
    elif job.model_type == ModelType.llm:
        _refuse_non_text_data(job)
    elif job.model_type == ModelType.multimodal:
        _refuse_non_chat_data(job)
    _refuse_missing_trackers(job)
    if merge_adapter and job.config.strategy != Strategy.lora:
        raise ConfigurationError(f"merging applies to strategy lora only, not {job.config.strategy}", field="--merge")
    if not 0 <= job.report_port <= 65535:
        raise ConfigurationError(
            f"{job.report_port} is not a port; allowed: 1 to 65535, or 0 for any free port", field="reportPort"
        )


def _refuse_model_type(model_type: ModelType) -> None:
    if model_type == ModelType.custom:
        raise ConfigurationError(
            "modelType custom runs the user's own image (config.custom), not the TensorOne trainer; "
            f"this trainer implements: {', '.join(TRAINED_MODEL_TYPES)}",
            field="modelType",
        )
    if model_type not in TRAINED_MODEL_TYPES:
        raise NotImplementedByTrainer(
            f"modelType {model_type} is not implemented by this trainer yet; allowed: {', '.join(TRAINED_MODEL_TYPES)}",
            field="modelType",
        )


def _refuse_missing_gpu(job: ResolvedJob, *, cuda_available: bool) -> None:
    """What needs a CUDA GPU in this process: the job's GPUs themselves, fp16 and qlora."""
    if job.use_gpu and not cuda_available:
        raise ConfigurationError(
            "the job asks for GPUs (gpuType is set) but CUDA is not available in this process", field="useGpu"
        )
    if job.config.optimization.mixed_precision == MixedPrecision.fp16 and not job.use_gpu:
        raise ConfigurationError(
            "fp16 needs a CUDA GPU (it trains with a gradient scaler); on CPU use bf16 or no. The trainer "
            "refuses rather than silently training in fp32",
            field="config.optimization.mixedPrecision",
        )
    if job.config.strategy == Strategy.qlora:
        if not job.use_gpu:
            raise ConfigurationError(
                "qlora loads the model in 4 bits with bitsandbytes, which needs a CUDA GPU; set gpuType, or use "
                "strategy lora or full on CPU",
                field="config.strategy",
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigurationError(
                "qlora needs the bitsandbytes package in the trainer image", field="config.strategy"
            )


def _refuse_what_a_vision_job_cannot_run(job: ResolvedJob) -> None:
    """The operator's own rules for a vision job (``tensorone.api.trainable`` for the architecture,
    ``tensorone.api.preflight.vision_errors`` against the Dataset), named as the resolved job
    spells its fields."""
    spec = TrainingJobSpec(model_type=job.model_type, dataset_id=job.dataset_name, config=job.config)
    dataset = Dataset(metadata=ObjectMeta(name=job.dataset_name, namespace=job.namespace), spec=job.dataset)
    error = untrainable_error(spec)
    errors = [error] if error is not None else vision_errors(spec, dataset)
    if errors:
        first = errors[0]
        field = (first.field or "").removeprefix("spec.")
        raise ConfigurationError(first.message, field="dataset" if field == "datasetId" else field)


def _refuse_non_text_data(job: ResolvedJob) -> None:
    """The llm task reads text: image formats and image columns belong to vision jobs."""
    dataset_format = DatasetFormat(job.dataset.format)
    if dataset_format not in TEXT_FORMATS:
        raise ConfigurationError(
            f"{dataset_format} is an image format; modelType llm reads {', '.join(TEXT_FORMATS)}",
            field="dataset.format",
        )
    columns = job.dataset.columns
    for name in IMAGE_COLUMNS:
        if columns is not None and getattr(columns, name) is not None:
            raise ConfigurationError(
                "image columns apply only to vision and multimodal jobs; modelType llm uses text, prompt and "
                "completion, or messages",
                field=f"dataset.columns.{name}",
            )


def _refuse_non_chat_data(job: ResolvedJob) -> None:
    """The multimodal task reads conversations (a messages column) in a text format, with images in
    the messages or in an image column."""
    dataset_format = DatasetFormat(job.dataset.format)
    if dataset_format not in TEXT_FORMATS:
        raise ConfigurationError(
            f"{dataset_format} is a vision format; modelType multimodal reads chat messages with images from "
            f"{', '.join(TEXT_FORMATS)}",
            field="dataset.format",
        )
    columns = job.dataset.columns
    for name in MULTIMODAL_REFUSED_COLUMNS:
        if columns is not None and getattr(columns, name) is not None:
            raise ConfigurationError(
                "modelType multimodal trains on chat messages (columns.messages, with columns.image for images "
                "outside the messages)",
                field=f"dataset.columns.{name}",
            )


def _refuse_missing_trackers(job: ResolvedJob) -> None:
    """Each tracker of config.tracking needs its client library in this image (the `tracking` extra)."""
    tracking = job.config.tracking
    if tracking is None:
        return
    for tracker, (module, package) in TRACKER_LIBRARIES.items():
        if getattr(tracking, tracker) is not None and not _installed(module):
            raise ConfigurationError(
                f"{tracker} tracking needs the {package} package, which this trainer image does not have; "
                "install the tracking extra (pip install 'tensorone-training[tracking]') or leave "
                f"config.tracking.{tracker} out",
                field=f"config.tracking.{tracker}",
            )


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it (the trackers take seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # what an import hook that hides the package answers
        return False
