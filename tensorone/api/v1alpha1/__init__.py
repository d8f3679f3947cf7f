"""Version v1alpha1 of the ``training.tensorone.ai`` API."""

from tensorone.api.v1alpha1.base import MAX_JOB_NAME_LENGTH, Condition
from tensorone.api.v1alpha1.dataset import Dataset, DatasetFormat, DatasetSpec, DatasetStatus
from tensorone.api.v1alpha1.trainingjob import (
    TERMINAL_PHASES,
    Checkpoint,
    ModelType,
    Phase,
    Priority,
    Strategy,
    TrainingConfig,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
)

__all__ = [
    "MAX_JOB_NAME_LENGTH",
    "TERMINAL_PHASES",
    "Checkpoint",
    "Condition",
    "Dataset",
    "DatasetFormat",
    "DatasetSpec",
    "DatasetStatus",
    "ModelType",
    "Phase",
    "Priority",
    "Strategy",
    "TrainingConfig",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
]
