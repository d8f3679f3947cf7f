"""How a trainer process ends, as its exit code: one table, for the pod and the operator.

Kubeflow's ``restartPolicy: ExitCode`` retries exit codes 128 and above (a process killed by a
signal) and treats 1-127 as permanent: every code below is a verdict that restarting the same pod
cannot change, so none is retried in vain. The termination message's ``reason`` names the error
(the exception type) beside the code.
"""

from __future__ import annotations

from enum import IntEnum

from tensorone.errors import CheckpointNotFound, ConfigurationError, DataError, TensorOneError


class NotImplementedByTrainer(ConfigurationError):
    """The job asks for something this trainer does not implement (a model type without a task)."""

    code = "NOT_IMPLEMENTED"


class ExitCode(IntEnum):
    """The trainer's exit codes (docs/trainer.md has the same table)."""

    COMPLETED = 0  # completed, or stopped on SIGTERM/SIGINT (after saving a checkpoint when it could)
    UNEXPECTED = 1  # an unexpected error; the reason is the exception type
    CONFIGURATION = 2  # ConfigurationError: the job must be changed
    DATA = 3  # DataError: the data cannot be read, too many rows are bad, or it changed under a checkpoint
    DIVERGED = 4  # the loss became NaN or infinite; the last good checkpoint is kept
    CHECKPOINT = (
        5  # CheckpointNotFound, CheckpointDamaged: the checkpoint to resume from is absent or fails its digests
    )
    NOT_IMPLEMENTED = 6  # NotImplementedByTrainer: a model type (or feature) this trainer has no code for


def exit_code_for(error: TensorOneError) -> ExitCode:
    """The exit code of a run that failed with ``error``."""
    if isinstance(error, CheckpointNotFound):
        return ExitCode.CHECKPOINT
    if isinstance(error, DataError):
        return ExitCode.DATA
    if isinstance(error, NotImplementedByTrainer):
        return ExitCode.NOT_IMPLEMENTED
    return ExitCode.CONFIGURATION
