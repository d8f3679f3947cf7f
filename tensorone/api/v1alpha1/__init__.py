"""Version v1alpha1 of the ``training.tensorone.ai`` API."""

from tensorone.api.v1alpha1.base import MAX_JOB_NAME_LENGTH, Condition
from tensorone.api.v1alpha1.dataset import Dataset, DatasetFormat, DatasetSpec, DatasetStatus
from tensorone.api.v1alpha1.trainingjob import (
    CHECK_CONDITIONS,
    CHILD_CONDITIONS,
    TERMINAL_PHASES,
    Checkpoint,
    ConditionType,
    ExitCodes,
    ModelType,
    Phase,
    Priority,
    Reason,
    Strategy,
    TrainingConfig,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
)

__all__ = [
    "CHECK_CONDITIONS",
    "CHILD_CONDITIONS",
    "MAX_JOB_NAME_LENGTH",
    "TERMINAL_PHASES",
    "Checkpoint",
    "Condition",
    "ConditionType",
    "Dataset",
    "DatasetFormat",
    "DatasetSpec",
    "DatasetStatus",
    "ExitCodes",
    "ModelType",
    "Phase",
    "Priority",
    "Reason",
    "Strategy",
    "TrainingConfig",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
]
