"""The resolved job turned into the trainer's settings: every field honoured or refused.

``ResolvedJob`` is the only input of the trainer, and it carries every default already
(``tensorone.api.resolved.with_defaults``). This module refuses, with a ``ConfigurationError``
naming the field and what is allowed, anything this trainer cannot do faithfully: nothing in
``config`` is silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tensorone.api.resolved import ResolvedJob
from tensorone.api.v1alpha1.dataset import DatasetFormat, DatasetSpec
from tensorone.api.v1alpha1.trainingjob import (
    LoraParameters,
    MixedPrecision,
    ModelType,
    Optimization,
    Strategy,
    TrainingHyperparameters,
)
from tensorone.errors import ConfigurationError

# The modelTypes this trainer implements; the others are refused by name (see tasks/).
IMPLEMENTED_MODEL_TYPES = (ModelType.llm,)
TEXT_FORMATS = (DatasetFormat.jsonl, DatasetFormat.json, DatasetFormat.csv, DatasetFormat.parquet, DatasetFormat.text)
RESUME_FROM = re.compile(r"^(latest|none|[a-z0-9]([-a-z0-9_.]*[a-z0-9])?)$")  # as spec.resumeFrom
VISION_ONLY_FIELDS = ("architecture", "input_size", "num_classes", "augmentation")


@dataclass(frozen=True)
class Settings:
    """What one training run does, with every default applied and every combination checked."""

    job_name: str
    namespace: str
    model_type: ModelType
    base_model: str
    strategy: Strategy
    lora: LoraParameters | None
    training: TrainingHyperparameters
    optimization: Optimization
    dataset_name: str
    dataset: DatasetSpec
    dataset_mount_path: Path
    checkpoint_dir: Path
    output_dir: Path
    resume_from: str | None
    report_port: int
    use_gpu: bool
    cache_dir: str | None


def settings_from_job(job: ResolvedJob, *, cuda_available: bool) -> Settings:
    """Turn the resolved job into settings, refusing what this trainer cannot honour.

    ``cuda_available`` is passed in (rather than asked of torch here) so the rules are plain
    functions of their inputs.
    """
    config = job.config
    model_type = ModelType(job.model_type)
    if model_type == ModelType.custom:
        raise ConfigurationError(
            "modelType custom runs the user's own image (config.custom), not the TensorOne trainer; "
            f"this trainer implements: {', '.join(IMPLEMENTED_MODEL_TYPES)}",
            field="modelType",
        )
    if model_type not in IMPLEMENTED_MODEL_TYPES:
        raise ConfigurationError(
            f"modelType {model_type} is not implemented by this trainer yet; allowed: "
            f"{', '.join(IMPLEMENTED_MODEL_TYPES)}",
            field="modelType",
        )
    for name in VISION_ONLY_FIELDS:
        if getattr(config, name) is not None:
            raise ConfigurationError(f"applies only to modelType vision, not {model_type}", field=_config_path(name))
    if config.custom is not None:
        raise ConfigurationError("applies only to modelType custom", field="config.custom")
    if not config.base_model:
        raise ConfigurationError("is required for modelType llm (a hub id or a local path)", field="config.baseModel")
    if config.strategy is None:
        raise ConfigurationError("is required for modelType llm; allowed: lora, qlora, full", field="config.strategy")
    strategy = Strategy(config.strategy)
    if strategy == Strategy.full and config.parameters is not None:
        raise ConfigurationError("LoRA parameters apply only to strategy lora or qlora", field="config.parameters")
    lora = config.parameters if strategy != Strategy.full else None
    training = config.training
    optimization = config.optimization

    if training.eval_steps is not None and training.eval_split <= 0.0:
        raise ConfigurationError("needs config.training.evalSplit greater than 0", field="config.training.evalSteps")
    if job.use_gpu and not cuda_available:
        raise ConfigurationError(
            "the job asks for GPUs (gpuType is set) but CUDA is not available in this process", field="useGpu"
        )
    precision = MixedPrecision(optimization.mixed_precision)
    if precision == MixedPrecision.fp16 and not job.use_gpu:
        raise ConfigurationError(
            "fp16 needs a CUDA GPU (it trains with a gradient scaler); on CPU use bf16 or no. The trainer "
            "refuses rather than silently training in fp32",
            field="config.optimization.mixedPrecision",
        )
    if precision == MixedPrecision.fp16 and strategy == Strategy.qlora:
        raise ConfigurationError(
            "fp16 is not supported with strategy qlora; use bf16 or no", field="config.optimization.mixedPrecision"
        )
    if strategy == Strategy.qlora:
        if not job.use_gpu:
            raise ConfigurationError(
                "qlora loads the model in 4 bits with bitsandbytes, which needs a CUDA GPU; set gpuType, or use "
                "strategy lora or full on CPU",
                field="config.strategy",
            )
        if not _bitsandbytes_installed():
            raise ConfigurationError(
                "qlora needs the bitsandbytes package in the trainer image", field="config.strategy"
            )

    dataset = job.dataset
    dataset_format = DatasetFormat(dataset.format)
    if dataset_format not in TEXT_FORMATS:
        raise ConfigurationError(
            f"{dataset_format} is an image format; modelType llm reads {', '.join(TEXT_FORMATS)}",
            field="dataset.format",
        )
    columns = dataset.columns
    if columns is not None:
        for name in ("image", "label", "annotations"):
            if getattr(columns, name) is not None:
                raise ConfigurationError(
                    "image columns apply only to vision jobs; modelType llm uses text, prompt and completion, "
                    "or messages",
                    field=f"dataset.columns.{name}",
                )
    if dataset.source.inline is not None and dataset_format not in (DatasetFormat.jsonl, DatasetFormat.json):
        raise ConfigurationError(
            "inline records are JSON objects: format must be jsonl or json", field="dataset.format"
        )

    resume_from = job.resume_from
    if resume_from is not None and not RESUME_FROM.match(resume_from):
        raise ConfigurationError(
            f"{resume_from!r} is not latest, none or a checkpoint id (such as ckpt-epoch-1)", field="resumeFrom"
        )
    if not 0 <= job.report_port <= 65535:
        raise ConfigurationError(
            f"{job.report_port} is not a port; allowed: 1 to 65535, or 0 for any free port", field="reportPort"
        )

    return Settings(
        job_name=job.name,
        namespace=job.namespace,
        model_type=model_type,
        base_model=config.base_model,
        strategy=strategy,
        lora=lora,
        training=training,
        optimization=optimization,
        dataset_name=job.dataset_name,
        dataset=dataset,
        dataset_mount_path=Path(job.dataset_mount_path),
        checkpoint_dir=Path(job.checkpoint_dir),
        output_dir=Path(job.output_dir),
        resume_from=resume_from,
        report_port=job.report_port,
        use_gpu=job.use_gpu,
        cache_dir=job.cache_dir,
    )


def _config_path(python_name: str) -> str:
    head, *rest = python_name.split("_")
    return "config." + head + "".join(part.capitalize() for part in rest)


def _bitsandbytes_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None
