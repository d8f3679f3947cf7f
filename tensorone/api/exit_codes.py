"""How a trainer process ends, as its exit code: the contract between the trainer and the operator.

The operator gives our trainer's replicas Training Operator v1.9's ``restartPolicy: ExitCode``
(and those of a custom image that follows this table, ``config.custom.exitCodes: Trainer``:
see :func:`follows_table`), which restarts a pod whose container exited with a code from 128 to 255
and fails the job for 1 to 127 (``IsRetryableExitCode`` in kubeflow/training-operator
pkg/util/train). So every error that a restart cannot change (the job, its data or its checkpoint
is wrong) has its own code below 128, and an unexpected error, which may well be transient (an
NCCL or CUDA fault, a lost file system), exits 138 (128 + SIGUSR1, the code Kubernetes users take
for "retry me") and is retried. With ``ExitCode`` the Training Operator does not count those
restarts against ``backoffLimit``, so the operator counts them itself against
``spec.maxRestarts``. The termination message's ``reason`` names the error (the exception type)
beside the code.

A pod's trainer that stops on SIGTERM after saving a checkpoint exits 143 (128 + SIGTERM), under
the launcher (``trainer.launch``, what pods run): SIGTERM reaches a pod that is being deleted, and
unless its job is stopping or over (then the Training Operator creates no pod again) that is a
drain, an eviction or a spot reclaim, after which the pod must come back and resume. An exit 0
would end the job as Succeeded when it is rank 0's. The pods of the same run stop with it (the
trainer agrees on a stop over every process) and exit 143 too. Exit 143 is retried and never a
failure: it does not count against ``spec.maxRestarts``.
"""

from __future__ import annotations

from enum import IntEnum

from tensorone.api.v1alpha1 import ExitCodes, ModelType, Reason, TrainingJobSpec
from tensorone.errors import CheckpointNotFound, DataError, NotImplementedByTrainer, TensorOneError

# Exit codes from here up are retried by the Training Operator; those below fail the job.
RETRYABLE_FROM = 128


class ExitCode(IntEnum):
    """The trainer's exit codes (docs/trainer.md has the same table); MEANINGS says what each means."""

    COMPLETED = 0
    CONFIGURATION = 2  # ConfigurationError
    DATA = 3  # DataError
    DIVERGED = 4
    CHECKPOINT = 5  # CheckpointNotFound, CheckpointDamaged
    NOT_IMPLEMENTED = 6  # NotImplementedByTrainer
    UNEXPECTED = 138  # any other exception; the termination message's reason is its type
    TERMINATED = 143  # stopped on SIGTERM in a pod (its own or a peer's) after saving a checkpoint


# What each exit code means, as docs/trainer.md and a failure message say it.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.COMPLETED: "completed, or stopped after saving a checkpoint",
    ExitCode.CONFIGURATION: "configuration error: the job must be changed",
    ExitCode.DATA: "data error: the data is unreadable, has too many bad rows, or changed under the checkpoint",
    ExitCode.DIVERGED: "diverged: the loss became NaN or infinite",
    ExitCode.CHECKPOINT: "checkpoint error: the checkpoint to resume from does not exist or does not verify",
    ExitCode.NOT_IMPLEMENTED: "not implemented: a model type or feature this trainer has no code for",
    ExitCode.UNEXPECTED: "unexpected error, retried",
    ExitCode.TERMINATED: "stopped on SIGTERM after saving a checkpoint (the pod, or a peer's, was deleted, drained "
    "or preempted); retried, resumes from the checkpoint, not counted as a failure",
}

# The condition reason of a job that failed with a permanent exit code.
FAILURE_REASONS: dict[ExitCode, Reason] = {
    ExitCode.CONFIGURATION: Reason.CONFIGURATION_ERROR,
    ExitCode.DATA: Reason.DATA_ERROR,
    ExitCode.DIVERGED: Reason.Diverged,
    ExitCode.CHECKPOINT: Reason.CHECKPOINT_NOT_FOUND,
    ExitCode.NOT_IMPLEMENTED: Reason.NOT_IMPLEMENTED,
}


def follows_table(spec: TrainingJobSpec) -> bool:
    """Whether the job's pods end with the codes of this table: our trainer's do; a custom image's
    only when the job says so (``config.custom.exitCodes: Trainer``), since a custom script's
    Python exception exits 1, which this table would never retry."""
    if spec.model_type != ModelType.custom:
        return True
    custom = spec.config.custom
    return custom is not None and custom.exit_codes == ExitCodes.Trainer


def is_retryable(code: int) -> bool:
    """Whether the Training Operator restarts a pod that exited with ``code`` (non-zero)."""
    return code >= RETRYABLE_FROM


def failure_reason(code: int) -> Reason | None:
    """The reason of a trainer that exited with ``code``: None for success and for codes not in the table."""
    return FAILURE_REASONS.get(ExitCode(code)) if code in ExitCode._value2member_map_ else None


def meaning(code: int) -> str | None:
    """What exit ``code`` means in the table; None for a code not in it."""
    return MEANINGS.get(ExitCode(code)) if code in ExitCode._value2member_map_ else None


def exit_code_for(error: TensorOneError) -> ExitCode:
    """The exit code of a run that failed with ``error``."""
    if isinstance(error, CheckpointNotFound):
        return ExitCode.CHECKPOINT
    if isinstance(error, DataError):
        return ExitCode.DATA
    if isinstance(error, NotImplementedByTrainer):
        return ExitCode.NOT_IMPLEMENTED
    return ExitCode.CONFIGURATION
