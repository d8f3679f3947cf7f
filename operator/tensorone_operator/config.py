"""The operator's configuration file (``OperatorConfig``) and its built-in GPU catalog.

The Helm chart renders this file (YAML, camelCase) into a ConfigMap mounted at
``/etc/tensorone/operator/config.yaml``; ``TENSORONE_OPERATOR_CONFIG`` names another path. A missing
file means the built-in defaults below, so the operator also runs with no configuration at all.
Every field has a default; unknown fields are refused with the field's path, so a typo in the chart
values is an error at start-up rather than a silently ignored setting.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from tensorone.api.catalog import (
    DEFAULT_CPU_JOB_MEMORY,
    DEFAULT_CURRENCY,
    DEFAULT_GPU_CATALOG,
    QUANTITY_PATTERN,
    ConfigModel,
    GpuType,
)
from tensorone.api.pods import DEFAULT_TRAINER_IMAGE
from tensorone.api.report import DEFAULT_REPORT_PORT
from tensorone.api.v1alpha1.base import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN
from tensorone.api.v1alpha1.trainingjob import GPU_TYPE_MAX_LENGTH
from tensorone.errors import ConfigurationError

CONFIG_ENV = "TENSORONE_OPERATOR_CONFIG"
DEFAULT_CONFIG_PATH = "/etc/tensorone/operator/config.yaml"

# The catalog's types live in tensorone.api.catalog, so the SDK and the gateway check jobs against
# them too; they are part of this file's schema.
__all__ = [
    "DEFAULT_GPU_CATALOG",
    "ChildBackend",
    "GpuType",
    "OperatorConfig",
    "TrainJobProgress",
    "load_config",
    "parse_config",
]


class CheckpointStorageDefaults(ConfigModel):
    """Defaults of the checkpoint claim the operator creates when a job names none."""

    size: str = Field(
        default="20Gi", pattern=QUANTITY_PATTERN, description="Size when spec.checkpointStorage.size is unset."
    )
    storage_class_name: str = Field(
        default="",
        max_length=253,
        pattern=f"^$|{DNS_SUBDOMAIN_PATTERN}",
        description="StorageClass when the job names none; empty means the cluster's default StorageClass.",
    )


class CpuJobResources(ConfigModel):
    """Requests and limits of a CPU-only job's pods (a job without gpuType)."""

    cpu: str = Field(
        default="2",
        pattern=QUANTITY_PATTERN,
        description='CPU per pod, a Kubernetes quantity written as a string ("2", not 2).',
    )
    memory: str = Field(
        default=DEFAULT_CPU_JOB_MEMORY, pattern=QUANTITY_PATTERN, description="Memory per pod, for example 8Gi."
    )
    hourly_price: float = Field(
        default=0.0,
        ge=0,
        le=1e6,
        description="Price of one CPU-only pod for an hour, in the catalog's currency: what a CPU job's cost "
        "(and spec.maxCost) counts. 0: CPU jobs cost nothing.",
    )


class EphemeralStorage(ConfigModel):
    """The node disk a training container may use: its writable layer, its logs and its emptyDirs
    (our trainer's /tmp and home, which hold the Hugging Face cache: the model and data downloads)."""

    request: str = Field(
        default="20Gi", pattern=QUANTITY_PATTERN, description="ephemeral-storage requested per pod (scheduling)."
    )
    limit: str = Field(
        default="200Gi",
        pattern=QUANTITY_PATTERN,
        description="ephemeral-storage limit per pod: a pod that writes more is evicted, not the node filled. "
        "Room for the base model's download.",
    )


class PriorityClasses(ConfigModel):
    """PriorityClass name per spec.priority; an empty name sets no priorityClassName."""

    high: str = Field(default="tensorone-high", description="PriorityClass of priority high.")
    normal: str = Field(default="tensorone-normal", description="PriorityClass of priority normal.")
    low: str = Field(default="tensorone-low", description="PriorityClass of priority low.")

    def for_priority(self, priority: str) -> str:
        """The class name for ``high``, ``normal`` or ``low``."""
        return str(getattr(self, priority))


class ChildBackend(StrEnum):
    """The kind of child that runs a TrainingJob's pods: Training Operator v1.9's PyTorchJob
    (kubeflow.org/v1), or Kubeflow Trainer v2's TrainJob (trainer.kubeflow.org/v1alpha1)."""

    pytorchjob = "pytorchjob"
    trainjob = "trainjob"


class TrainJobProgress(StrEnum):
    """Where the operator reads a running TrainJob's progress report."""

    auto = "auto"  # status.trainerStatus once the trainer posts there, the rank-0 pod until then
    trainer_status = "trainerStatus"  # status.trainerStatus only: the operator never contacts a pod
    poll = "poll"  # the rank-0 pod's /progress, as for a PyTorchJob


class OperatorConfig(ConfigModel):
    """Everything the operator can be configured with; each field has a default."""

    backend: ChildBackend = Field(
        default=ChildBackend.pytorchjob,
        description="The child kind of every job: pytorchjob (Kubeflow Training Operator v1.9, kubeflow.org/v1 "
        "PyTorchJob) or trainjob (Kubeflow Trainer v2.2 or later, trainer.kubeflow.org/v1alpha1 TrainJob on a "
        "ClusterTrainingRuntime the chart ships). Applies to jobs created afterwards: a running job's child of "
        "the other kind is no longer followed.",
    )
    namespace_backends: dict[str, ChildBackend] = Field(
        default_factory=dict,
        description="Per-namespace exceptions to backend: namespace name -> pytorchjob or trainjob. Set by the "
        "operator's administrator here, not by a namespace label, so a tenant cannot choose.",
        json_schema_extra={"propertyNames": {"maxLength": 63, "pattern": DNS_LABEL_PATTERN}},
    )
    train_job_runtime_prefix: str = Field(
        default="tensorone",
        min_length=1,
        max_length=40,
        pattern=DNS_LABEL_PATTERN,
        description="Prefix of the ClusterTrainingRuntimes a TrainJob names: PREFIX-trainer-PRIORITY for the "
        "built-in trainer and PREFIX-custom-PRIORITY for custom images (PRIORITY: high, normal, low), which the "
        "chart installs when a backend is trainjob.",
    )

    train_job_progress: TrainJobProgress = Field(
        default=TrainJobProgress.auto,
        description="Where a TrainJob's live progress is read: auto (the TrainJob's status.trainerStatus once the "
        "trainer posts its report there, which Kubeflow Trainer v2.2+ with the TrainJobStatus feature gate allows; "
        "the rank-0 pod's /progress until then and otherwise), trainerStatus (status.trainerStatus only: the "
        "operator never contacts a TrainJob's pods, for networks where it cannot reach them; the feature gate must "
        "be on) or poll (the rank-0 pod's /progress, as for a PyTorchJob). The final report and the checkpoints "
        "kept come from the pod's termination message in every case.",
    )

    trainer_image: str = Field(
        default=DEFAULT_TRAINER_IMAGE,
        min_length=1,
        pattern=r"^[^\s]+$",
        description="Image of the built-in trainer (modelType llm, vision, multimodal).",
    )
    trainer_image_pull_policy: str = Field(
        default="IfNotPresent",
        pattern=r"^(Always|IfNotPresent|Never)$",
        description="imagePullPolicy of the training containers: Always, IfNotPresent or Never.",
    )
    training_service_account: str = Field(
        default="tensorone-training",
        description="ServiceAccount of the training pods; empty means the namespace's default account.",
    )
    priority_classes: PriorityClasses = Field(
        default_factory=PriorityClasses, description="PriorityClass per spec.priority."
    )
    termination_grace_period_seconds: int = Field(
        default=300,
        ge=10,
        le=86400,
        description="Seconds the trainer gets after SIGTERM (stop, preemption) to save a checkpoint.",
    )
    progress_poll_seconds: float = Field(
        default=5, gt=0, le=3600, description="How often the rank-0 trainer's /progress is read, in seconds."
    )
    progress_writes_per_second: float = Field(
        default=100,
        gt=0,
        le=10000,
        description="Budget of status writes for progress alone (step, metrics, curves) over all running jobs: "
        "each job's progress is written at most every (running jobs / this) seconds. A change of phase, "
        "condition or checkpoints is written at once.",
    )
    report_port: int = Field(
        default=DEFAULT_REPORT_PORT, ge=1024, le=65535, description="Port of the trainer's /progress and /metrics."
    )
    check_gpu_nodes: bool = Field(
        default=True,
        description="Check that some node offers the requested GPU type (INSUFFICIENT_RESOURCES); needs "
        "cluster-wide read of nodes. False trusts the scheduler (and the queue) alone.",
    )
    checkpoint_storage: CheckpointStorageDefaults = Field(
        default_factory=CheckpointStorageDefaults,
        description="The checkpoint claim the operator creates when a job names none.",
    )
    cpu_job: CpuJobResources = Field(
        default_factory=CpuJobResources,
        description="Requests and limits of the pods of a CPU-only job (no spec.gpuType), for development clusters.",
    )
    ephemeral_storage: EphemeralStorage = Field(
        default_factory=EphemeralStorage,
        description="Node disk of a training pod (the model download lands there); custom images too.",
    )
    shm_size: str = Field(
        default="8Gi",
        pattern=QUANTITY_PATTERN,
        description="Size limit of /dev/shm (a memory emptyDir) in training pods.",
    )
    currency: str = Field(
        default=DEFAULT_CURRENCY, min_length=1, max_length=8, description="Currency of the catalog prices, such as USD."
    )
    gpu_catalog: dict[str, GpuType] = Field(
        default_factory=lambda: dict(DEFAULT_GPU_CATALOG),
        description="GPU types by key (the value of spec.gpuType); a catalog in the config file replaces the "
        "built-in one entirely.",
        # What the validator below checks, for JSON-schema readers of this model (the chart's values schema).
        json_schema_extra={
            "minProperties": 1,
            "propertyNames": {"maxLength": GPU_TYPE_MAX_LENGTH, "pattern": DNS_LABEL_PATTERN},
        },
    )

    @field_validator("gpu_catalog")
    @classmethod
    def _catalog_keys(cls, catalog: dict[str, GpuType]) -> dict[str, GpuType]:
        if not catalog:
            raise ValueError("the GPU catalog needs at least one entry")
        # Keys are checked as TrainingJobSpec.gpuType is, so every catalog key can be requested.
        for key in catalog:
            if len(key) > GPU_TYPE_MAX_LENGTH or not re.match(DNS_LABEL_PATTERN, key):
                raise ValueError(
                    f"catalog key {key!r} cannot be requested: spec.gpuType allows at most {GPU_TYPE_MAX_LENGTH} "
                    "lower-case letters, digits and '-'"
                )
        return catalog

    def backend_for(self, namespace: str) -> ChildBackend:
        """The child kind of jobs in ``namespace``."""
        return self.namespace_backends.get(namespace, self.backend)

    def backends(self) -> frozenset[ChildBackend]:
        """Every child kind some namespace uses: the kinds the operator watches."""
        return frozenset({self.backend, *self.namespace_backends.values()})


def parse_config(data: Any, *, source: str = "operator config") -> OperatorConfig:
    """Validate a parsed YAML document as an OperatorConfig; errors name the field and the source."""
    if data is None:
        return OperatorConfig()
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return OperatorConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigurationError(f"{source}: {problems}") from exc


def load_config(path: str | os.PathLike[str] | None = None) -> OperatorConfig:
    """Read the config file named by ``path``, ``$TENSORONE_OPERATOR_CONFIG`` or the default path.

    A missing file means the built-in defaults; a present but invalid file is an error.
    """
    location = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    if not location.exists():
        return OperatorConfig()
    try:
        data = yaml.safe_load(location.read_text())
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{location}: not valid YAML: {exc}") from exc
    return parse_config(data, source=str(location))
