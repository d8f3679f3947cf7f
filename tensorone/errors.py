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
    """Base of every error raised by this project's code.

    ``code`` is the reference API's error name, ``field`` the path of the field at fault (when one
    is), ``details`` the structured part of the reference's error body: given explicitly, or
    ``{"field", "reason"}`` when the error names a field. ``http_status`` is the status the
    gateway answers with.
    """

    code = "INTERNAL_ERROR"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self._details = details

    @property
    def details(self) -> dict[str, Any]:
        """The structured details, as the reference's error body carries them."""
        found: dict[str, Any] = {"field": self.field, "reason": self.message} if self.field else {}
        found.update(self._details or {})
        return found

    def to_body(self) -> dict[str, Any]:
        """The reference API's error body: ``{"error": CODE, "message": ..., "details": {...}}``."""
        return {"error": self.code, "message": str(self), "details": self.details}

    def __str__(self) -> str:
        if self.field:
            return f"{self.field}: {self.message}"
        return self.message


class ConfigurationError(TensorOneError):
    """A manifest or configuration value is invalid (CONFIGURATION_ERROR)."""

    code = "CONFIGURATION_ERROR"
    http_status = 400


class ValidationFailed(ConfigurationError):
    """A manifest failed schema or CEL validation; ``errors`` holds every problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        text = "; ".join(str(e) for e in errors)
        first = errors[0] if errors else None
        super().__init__(
            text,
            field=first.field if first else None,
            details={
                "reason": first.reason if first else text,
                "errors": [{"field": e.field, "reason": e.reason} for e in errors],
            },
        )

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
    http_status = 404


class DatasetNotReady(DatasetNotFound):
    """The Dataset exists but its source is not usable yet (a pvc source whose claim is missing):
    DATASET_NOT_FOUND to a caller of the reference API; the job's condition says CLAIM_NOT_FOUND."""


class DataError(TensorOneError):
    """Training data cannot be read or has too many bad rows (DATA_ERROR)."""

    code = "DATA_ERROR"
    http_status = 400


class InsufficientResources(TensorOneError):
    """No node offers the requested GPU type (INSUFFICIENT_RESOURCES)."""

    code = "INSUFFICIENT_RESOURCES"
    http_status = 409


class JobNotFound(TensorOneError):
    """No TrainingJob of that name exists (JOB_NOT_FOUND)."""

    code = "JOB_NOT_FOUND"
    http_status = 404


class InvalidJobState(TensorOneError):
    """The verb does not apply to the job in its current phase (INVALID_JOB_STATE)."""

    code = "INVALID_JOB_STATE"
    http_status = 409


class NotImplementedByTrainer(ConfigurationError):
    """The job asks for something the trainer does not implement: a model type without a task
    (NOT_IMPLEMENTED)."""

    code = "NOT_IMPLEMENTED"


class CheckpointNotFound(TensorOneError):
    """The named checkpoint does not exist (CHECKPOINT_NOT_FOUND)."""

    code = "CHECKPOINT_NOT_FOUND"
    http_status = 404


class LogNotFound(TensorOneError):
    """The log asked for is not there: the job has no pod of that rank (yet, or any more), or its
    container has no such run (LOG_NOT_FOUND)."""

    code = "LOG_NOT_FOUND"
    http_status = 404


class AlreadyExists(TensorOneError):
    """An object of that name exists already (ALREADY_EXISTS)."""

    code = "ALREADY_EXISTS"
    http_status = 409


class Unauthenticated(TensorOneError):
    """The API server did not accept the credential (UNAUTHENTICATED)."""

    code = "UNAUTHENTICATED"
    http_status = 401


class Forbidden(TensorOneError):
    """The credential is valid, but RBAC does not allow the request (FORBIDDEN)."""

    code = "FORBIDDEN"
    http_status = 403


class Unreachable(TensorOneError):
    """The API server or the gateway cannot be reached (CONNECTION_ERROR)."""

    code = "CONNECTION_ERROR"
    http_status = 503


class TransferError(TensorOneError):
    """A download's copy failed (TRANSFER_ERROR): the pod that copies a job's files off its
    checkpoint claim did not start, or its copy failed or ended early."""

    code = "TRANSFER_ERROR"
    http_status = 502


class StoreError(TransferError):
    """An object store (spec.output's S3 or S3-compatible store) refused or failed a transfer: no such
    bucket, credentials refused, unreachable, or an export that is not complete (STORE_ERROR)."""

    code = "STORE_ERROR"


class DigestMismatch(TransferError):
    """A file's content is not what its SHA-256 says it was (DIGEST_MISMATCH): changed or damaged
    in the store, on the claim, or on the way."""

    code = "DIGEST_MISMATCH"


class MissingExtra(TensorOneError):
    """A verb needs the packages of an extra that is not installed (MISSING_EXTRA)."""

    code = "MISSING_EXTRA"
    http_status = 500

    def __init__(self, extra: str, *, needed_by: str, missing: str) -> None:
        super().__init__(
            f"{needed_by} needs the {extra} extra, which is not installed here (no module named {missing}): "
            f"pip install 'tensorone-training[{extra}]'"
        )


# The errors an API answer can carry, by code: what an error body is turned back into.
_BY_CODE: dict[str, type[TensorOneError]] = {
    cls.code: cls
    for cls in (
        ConfigurationError,
        DatasetNotFound,
        DataError,
        InsufficientResources,
        JobNotFound,
        InvalidJobState,
        CheckpointNotFound,
        AlreadyExists,
        Unauthenticated,
        Forbidden,
        Unreachable,
    )
}


def error_from_body(body: Any) -> TensorOneError:
    """The exception an error body ``{"error", "message", "details"}`` describes; the base class
    for a code this version does not know."""
    if not isinstance(body, dict):
        return TensorOneError(f"unexpected answer: {body!r}"[:500])
    raw_details = body.get("details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    cls = _BY_CODE.get(str(body.get("error")), TensorOneError)
    field = details.get("field")
    message = str(body.get("message") or body.get("error") or "unknown error")
    # The message of a field error starts with its field; keep it once.
    if isinstance(field, str) and message.startswith(f"{field}: "):
        message = message[len(field) + 2 :]
    error = cls(message, field=field if isinstance(field, str) else None, details=details)
    if cls is TensorOneError and body.get("error"):
        error.code = str(body["error"])
    return error
