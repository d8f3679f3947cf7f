"""The contract between the operator and the trainer: the resolved job configuration.

The operator writes one of these into the job's ConfigMap (key ``job.yaml``), mounted in every
training pod at ``/etc/tensorone/job/job.yaml`` (the path is in ``TENSORONE_JOB_CONFIG``). ``t1
train`` builds the same object from a TrainingJob manifest and a Dataset on a laptop. The trainer
reads nothing else: every default is already applied here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from tensorone.api.v1alpha1.base import ApiModel
from tensorone.api.v1alpha1.dataset import DatasetSpec
from tensorone.api.v1alpha1.trainingjob import ModelType, TrainingConfig

JOB_CONFIG_ENV = "TENSORONE_JOB_CONFIG"
DEFAULT_JOB_CONFIG_PATH = "/etc/tensorone/job/job.yaml"
DEFAULT_CHECKPOINT_DIR = "/checkpoints"
DEFAULT_DATASET_MOUNT = "/data"
# One port on rank 0 serves /progress (JSON, the operator polls it) and /metrics (Prometheus).
DEFAULT_REPORT_PORT = 9400
TERMINATION_LOG_ENV = "TENSORONE_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class ResolvedJob(ApiModel):
    """Everything the trainer needs, with every default applied."""

    name: str = Field(description="TrainingJob name.")
    namespace: str = Field(default="default", description="TrainingJob namespace.")
    uid: str | None = Field(default=None, description="TrainingJob uid.")
    model_type: ModelType = Field(description="llm, vision, multimodal or custom.")
    config: TrainingConfig = Field(description="The TrainingJob's config with defaults applied.")
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
    report_port: int = Field(default=DEFAULT_REPORT_PORT, description="Port of /progress and /metrics on rank 0.")
    use_gpu: bool = Field(default=False, description="Whether the pods have GPUs (gpuType set).")
    cache_dir: str | None = Field(default=None, description="Hugging Face cache directory.")

    def write(self, path: Path) -> None:
        path.write_text(self.to_yaml())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_wire(), sort_keys=False)

    @classmethod
    def read(cls, path: Path) -> ResolvedJob:
        data: Any = yaml.safe_load(path.read_text())
        return cls.model_validate(data)
