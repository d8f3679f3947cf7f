"""The one exception hierarchy of the project.

Every error a user can see says what was wrong, where (a field path when there is one) and what
is allowed. The ``code`` mirrors the reference REST API's error names (CONFIGURATION_ERROR,
DATASET_NOT_FOUND, INSUFFICIENT_RESOURCES, ...), so the same word shows up in a condition reason,
an Event, a CLI message and an SDK exception.
"""

from __future__ import annotations


class TensorOneError(Exception):
    """Base of every error raised by this project's code."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        if self.field:
            return f"{self.field}: {self.message}"
        return self.message


class ConfigurationError(TensorOneError):
    """A manifest or configuration value is invalid (CONFIGURATION_ERROR)."""

    code = "CONFIGURATION_ERROR"


class ValidationFailed(ConfigurationError):
    """A manifest failed schema or CEL validation; ``errors`` holds every problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        text = "; ".join(str(e) for e in errors)
        super().__init__(text)

    def __str__(self) -> str:
        return self.message


class FieldError:
    """One validation problem: the field path (``spec.config.training.learningRate``) and why."""

    __slots__ = ("field", "reason")

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"

    def __repr__(self) -> str:
        return f"FieldError({self.field!r}, {self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldError) and (self.field, self.reason) == (
            other.field,
            other.reason,
        )

    def __hash__(self) -> int:
        return hash((self.field, self.reason))


class DatasetNotFound(TensorOneError):
    """The Dataset a job names does not exist (DATASET_NOT_FOUND)."""

    code = "DATASET_NOT_FOUND"


class DataError(TensorOneError):
    """Training data cannot be read or has too many bad rows (DATA_ERROR)."""

    code = "DATA_ERROR"


class InsufficientResources(TensorOneError):
    """No node offers the requested GPU type (INSUFFICIENT_RESOURCES)."""

    code = "INSUFFICIENT_RESOURCES"


class JobNotFound(TensorOneError):
    """No TrainingJob of that name exists (JOB_NOT_FOUND)."""

    code = "JOB_NOT_FOUND"


class InvalidJobState(TensorOneError):
    """The verb does not apply to the job in its current phase (INVALID_JOB_STATE)."""

    code = "INVALID_JOB_STATE"


class CheckpointNotFound(TensorOneError):
    """The named checkpoint does not exist (CHECKPOINT_NOT_FOUND)."""

    code = "CHECKPOINT_NOT_FOUND"


class MissingExtra(TensorOneError):
    """A verb needs the packages of an extra that is not installed (MISSING_EXTRA)."""

    code = "MISSING_EXTRA"

    def __init__(self, extra: str, *, needed_by: str, missing: str) -> None:
        super().__init__(
            f"{needed_by} needs the {extra} extra, which is not installed here (no module named {missing}): "
            f"pip install 'tensorone-training[{extra}]'"
        )
