"""The contract between the operator and the trainer: the resolved job configuration.

The operator writes one of these into the job's ConfigMap (key ``job.yaml``), mounted in every
training pod at ``/etc/tensorone/job/job.yaml`` (the path is in ``TENSORONE_JOB_CONFIG``). ``t1
train`` builds the same object from a TrainingJob manifest and a Dataset on a laptop. Both build it
with ``resolve_job``, which applies every default (``with_defaults``), and ``ResolvedConfig`` refuses
a config without them: the trainer reads nothing else and never needs to know a default. The
trainer holds the job it is given to the CRDs' rules with ``check_rules``, which evaluates the rules
of the API types themselves (the CRDs' schema and CEL), not a copy of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import Field, model_validator

from tensorone.api import API_VERSION
from tensorone.api.report import DEFAULT_REPORT_PORT
from tensorone.api.v1alpha1.base import ApiModel
from tensorone.api.v1alpha1.dataset import DatasetSpec
from tensorone.api.v1alpha1.trainingjob import (
    LoraParameters,
    ModelType,
    Optimization,
    OutputExport,
    Strategy,
    TrainingConfig,
    TrainingHyperparameters,
    TrainingJobSpec,
)
from tensorone.errors import ConfigurationError, ValidationFailed

JOB_CONFIG_ENV = "TENSORONE_JOB_CONFIG"
DEFAULT_JOB_CONFIG_PATH = "/etc/tensorone/job/job.yaml"
DEFAULT_CHECKPOINT_DIR = "/checkpoints"
# The trainer's metrics log (rank 0), in the checkpoint directory: on the job's claim in a pod.
METRICS_LOG = "metrics.jsonl"
DEFAULT_DATASET_MOUNT = "/data"


# A resolved job says whether its pods have GPUs, not which ones: when the CRDs' rules are evaluated
# on it, this catalog key stands for the GPU type it was granted.
GRANTED_GPU_TYPE = "granted"

# The strategies that train adapters, and so need LoRA parameters.
ADAPTER_STRATEGIES = (Strategy.lora, Strategy.qlora)


class ResolvedConfig(TrainingConfig):
    """A TrainingJob's config with every default applied (``with_defaults``): the training and
    optimization sections are always present, and so are the LoRA parameters of strategies lora
    and qlora."""

    training: TrainingHyperparameters = Field(description="Optimization loop settings.")
    optimization: Optimization = Field(description="Memory and numeric settings.")

    @model_validator(mode="after")
    def _adapters_have_parameters(self) -> Self:
        if self.strategy in ADAPTER_STRATEGIES and self.parameters is None:
            raise ValueError(f"parameters are required for strategy {self.strategy}")
        return self


def with_defaults(config: TrainingConfig) -> ResolvedConfig:
    """The config with every section a job left out filled with the model defaults: the one place
    where defaults are applied for the trainer."""
    defaults: dict[str, Any] = {}
    if config.training is None:
        defaults["training"] = TrainingHyperparameters()
    if config.optimization is None:
        defaults["optimization"] = Optimization()
    if config.strategy in ADAPTER_STRATEGIES and config.parameters is None:
        defaults["parameters"] = LoraParameters()
    return ResolvedConfig.model_validate(config.model_copy(update=defaults).to_wire())


class ResolvedJob(ApiModel):
    """Everything the trainer needs, with every default applied."""

    name: str = Field(description="TrainingJob name.")
    namespace: str = Field(default="default", description="TrainingJob namespace.")
    uid: str | None = Field(default=None, description="TrainingJob uid.")
    model_type: ModelType = Field(description="llm, vision, multimodal or custom.")
    config: ResolvedConfig = Field(description="The TrainingJob's config with defaults applied.")
    dataset_name: str = Field(description="Name of the Dataset.")
    dataset: DatasetSpec = Field(description="The Dataset's spec.")
    dataset_mount_path: str = Field(
        default=DEFAULT_DATASET_MOUNT,
        description="Where a pvc source's claim is mounted; the data is at this path joined with source.pvc.path.",
    )
    checkpoint_dir: str = Field(default=DEFAULT_CHECKPOINT_DIR, description="Where checkpoints are written.")
    output_dir: str = Field(
        default=f"{DEFAULT_CHECKPOINT_DIR}/output",
        description="Where the final adapter or model is written, in the Hugging Face layout.",
    )
    resume_from: str | None = Field(
        default=None, description="Checkpoint id, latest, or none; absent means latest when checkpoints exist."
    )
    start_id: str | None = Field(
        default=None,
        max_length=128,
        description="Which start of the job this configuration is for: '<uid>:<generation>', the TrainingJob "
        "generation whose spec started the run (its creation, a resume after a stop, a new resumeFrom). The "
        "checkpoints a run saves carry it, and a restart of the same start (a pod that failed, was preempted or "
        "drained) continues from them: resumeFrom names where a start begins, not where each restart goes back "
        "to. Absent for a local run.",
    )
    report_port: int = Field(default=DEFAULT_REPORT_PORT, description="Port of /progress and /metrics on rank 0.")
    use_gpu: bool = Field(default=False, description="Whether the pods have GPUs (gpuType set).")
    cache_dir: str | None = Field(default=None, description="Hugging Face cache directory.")
    output: OutputExport | None = Field(
        default=None, description="Where rank 0 uploads the output once the training completes (spec.output)."
    )

    def write(self, path: Path) -> None:
        path.write_text(self.to_yaml())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_wire(), sort_keys=False)

    @classmethod
    def read(cls, path: Path) -> ResolvedJob:
        data: Any = yaml.safe_load(path.read_text())
        return cls.model_validate(data)


def resolve_job(
    spec: TrainingJobSpec,
    dataset: DatasetSpec,
    *,
    name: str,
    namespace: str,
    report_port: int,
    use_gpu: bool,
    uid: str | None = None,
    dataset_mount_path: str = DEFAULT_DATASET_MOUNT,
    checkpoint_dir: str = DEFAULT_CHECKPOINT_DIR,
    output_dir: str | None = None,
    resume_from: str | None = None,
    cache_dir: str | None = None,
    start_id: str | None = None,
) -> ResolvedJob:
    """The resolved job of a TrainingJob's spec and its Dataset's spec, built the same way by the
    operator and by ``t1 train``.

    What the job says comes from the spec, with every default applied. Where it runs is given:
    the paths default to where a training pod mounts the data and checkpoint claims (a laptop
    passes its own folders), ``resume_from`` overrides the spec's ``resumeFrom`` when given.
    """
    return ResolvedJob(
        name=name,
        namespace=namespace,
        uid=uid,
        model_type=spec.model_type,
        config=with_defaults(spec.config),
        dataset_name=spec.dataset_id,
        dataset=dataset,
        dataset_mount_path=dataset_mount_path,
        checkpoint_dir=checkpoint_dir,
        output_dir=output_dir if output_dir is not None else f"{checkpoint_dir}/output",
        resume_from=resume_from or spec.resume_from,
        start_id=start_id,
        report_port=report_port,
        use_gpu=use_gpu,
        cache_dir=cache_dir,
        output=spec.output,
    )


def check_rules(job: ResolvedJob) -> None:
    """Refuse a resolved job that breaks a rule of the TrainingJob or Dataset CRD.

    The rules are the CRDs' own (OpenAPI schema and CEL), evaluated by ``validate``, which checks an
    object as the API server does, on the TrainingJob and Dataset the job stands for: each rule is
    written once, on the API types. The first problem is raised, naming the field as the resolved
    job spells it (``config.training.evalSteps``, ``dataset.format``, ``resumeFrom``).
    """
    spec: dict[str, Any] = {
        "modelType": str(job.model_type),
        "datasetId": job.dataset_name,
        "config": job.config.to_wire(),
    }
    if job.use_gpu:
        spec["gpuType"] = GRANTED_GPU_TYPE
    if job.resume_from is not None:
        spec["resumeFrom"] = job.resume_from
    if job.output is not None:
        spec["output"] = job.output.to_wire()
    metadata = {"name": job.name, "namespace": job.namespace}
    dataset_metadata = {"name": job.dataset_name, "namespace": job.namespace}
    objects = (
        ({"apiVersion": API_VERSION, "kind": "TrainingJob", "metadata": metadata, "spec": spec}, _JOB_FIELDS),
        (
            {"apiVersion": API_VERSION, "kind": "Dataset", "metadata": dataset_metadata, "spec": job.dataset.to_wire()},
            _DATASET_FIELDS,
        ),
    )
    # The rules' evaluator (a CEL interpreter, a JSON-schema validator) is loaded only here: the
    # operator builds resolved jobs and never checks them, and would otherwise carry it (10 MB).
    from tensorone.api.admission import validate

    for obj, fields in objects:
        try:
            validate(obj)
        except ValidationFailed as failed:
            first = failed.errors[0]
            raise ConfigurationError(first.reason, field=_resolved_field(first.field, fields)) from None


# Where a field of the TrainingJob and of the Dataset lives in the resolved job.
_JOB_FIELDS = {"spec.datasetId": "datasetName", "spec.gpuType": "useGpu", "spec": ""}
_DATASET_FIELDS = {"spec": "dataset", "metadata.name": "datasetName"}


def _resolved_field(path: str, fields: dict[str, str]) -> str:
    """``spec.config.x`` -> ``config.x``; ``spec.format`` of the Dataset -> ``dataset.format``."""
    for prefix, resolved in fields.items():
        if path == prefix:
            return resolved or path
        if path.startswith(f"{prefix}."):
            rest = path[len(prefix) + 1 :]
            return f"{resolved}.{rest}" if resolved else rest
    return path
