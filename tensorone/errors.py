"""The one exception hierarchy of the project.

Every error a user can see says what was wrong, where (a field path when there is one) and what
is allowed. The ``code`` mirrors the reference REST API's error names (CONFIGURATION_ERROR,
DATASET_NOT_FOUND, INSUFFICIENT_RESOURCES, ...), so the same word shows up in a condition reason,
an Event, a CLI message and an SDK exception. ``field_path`` and ``json_type`` spell a field's
path and a value's type the way every such message does.
"""

from __future__ import annotations

from typing import Any


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


def field_path(parts: tuple[str | int, ...] | list[str | int]) -> str:
    """``("spec", "tags", 0)`` -> ``spec.tags[0]``, the API server's spelling of a field path."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "<object>"


# Checked in order after bool (a bool is an int in Python, a boolean in JSON).
_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: Any) -> str:
    """The JSON name of a value's type (``array``, ``object``, ...), as messages about it say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for python_type, name in _JSON_TYPES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


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


class NotImplementedByTrainer(ConfigurationError):
    """The job asks for something the trainer does not implement: a model type without a task
    (NOT_IMPLEMENTED)."""

    code = "NOT_IMPLEMENTED"


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
