"""The progress report carried by Kubeflow Trainer's ``status.trainerStatus`` (Trainer v2.2, KEP-2779).

With the ``TrainJobStatus`` feature gate on, Trainer v2.2's controller serves an HTTPS endpoint
and gives every trainer container of a TrainJob three variables: ``KUBEFLOW_TRAINER_SERVER_URL``
(``https://<webhook service>.<namespace>.svc:10443/apis/trainer.kubeflow.org/v1alpha1/namespaces/NS/trainjobs/NAME/status``),
``KUBEFLOW_TRAINER_SERVER_CA_CERT`` and ``KUBEFLOW_TRAINER_SERVER_TOKEN``, the paths of the CA
certificate that signed the endpoint's certificate and of a projected service-account token whose
audience names the TrainJob (both under ``/var/run/secrets/kubeflow/trainer``; the kubelet renews
the token, so it is read again for every post). A trainer POSTs ``{"trainerStatus": {...}}`` there
with ``Authorization: Bearer <token>``; the controller checks the token and writes the object into
the TrainJob's ``status.trainerStatus``, which its CRD bounds: ``progressPercentage`` 0-100,
``estimatedRemainingSeconds`` >= 0 (int32), ``metrics`` at most 256 ``{name, value}`` strings of
1-64 characters, and ``lastUpdatedTime`` required.

The rank-0 TensorOne trainer (``tensorone.reporting.client.Reporter``) posts its report there as
``progressPercentage``, ``estimatedRemainingSeconds`` and one metric per report field (``METRICS``:
``loss``, ``learning_rate``, ``current_step``, ... with ``tensorone_report`` naming this format),
and the operator reads it back into a ``ProgressReport`` instead of polling the pod. What does not
fit a 64-character metric stays with the termination message as before: the list of checkpoints
kept (only the newest one is posted), the trainer's messages, the final model and its export.

Both directions are here, pure: ``trainer_status_of`` (report -> wire) and ``report_of``
(wire -> report). A trainerStatus is untrusted input: ``report_of`` checks its shape, every value it
reads and the report it makes against the bounds of ``parse_report``, and raises ``InvalidReport``
naming the field or the metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from tensorone.api.report import (
    CHECKPOINT_ID_PATTERN,
    InvalidReport,
    ProgressReport,
    TrainerState,
    check_times,
    remaining_seconds,
)
from tensorone.api.timestamps import parse_time, rfc3339

URL_ENV = "KUBEFLOW_TRAINER_SERVER_URL"
CA_CERT_ENV = "KUBEFLOW_TRAINER_SERVER_CA_CERT"
TOKEN_ENV = "KUBEFLOW_TRAINER_SERVER_TOKEN"
# Where Trainer v2.2 mounts the token and the CA certificate (the projected volume kubeflow-trainer-token).
MOUNT_PATH = "/var/run/secrets/kubeflow/trainer"
TOKEN_AUDIENCE_PREFIX = "trainer.kubeflow.org"

MAX_METRICS = 256
MAX_METRIC_TEXT = 64  # a metric's name and value, each 1-64 characters
MAX_REMAINING_SECONDS = 2**31 - 1  # int32

FORMAT_METRIC = "tensorone_report"
FORMAT_VERSION = "1"
EVAL_PREFIX = "eval_"


def status_path(namespace: str, name: str) -> str:
    """The endpoint's path for a TrainJob (what follows the server in ``KUBEFLOW_TRAINER_SERVER_URL``)."""
    return f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{namespace}/trainjobs/{name}/status"


def token_audience(namespace: str, name: str) -> str:
    """The audience of the token that may post a TrainJob's status."""
    return f"{TOKEN_AUDIENCE_PREFIX}/v1alpha1/namespaces/{namespace}/trainjobs/{name}/status"


class Kind(StrEnum):
    """How a metric's value is written."""

    whole = "whole"  # a whole number >= 0
    number = "number"  # a finite decimal number
    time = "time"  # RFC 3339, UTC
    state = "state"  # a TrainerState
    checkpoint = "checkpoint"  # a checkpoint id


# Metric name -> (the ProgressReport field it carries, how it is written).
METRICS: dict[str, tuple[str, Kind]] = {
    "state": ("state", Kind.state),
    "current_step": ("step", Kind.whole),
    "total_steps": ("total_steps", Kind.whole),
    "current_epoch": ("epoch", Kind.whole),
    "total_epochs": ("total_epochs", Kind.whole),
    "loss": ("loss", Kind.number),
    "best_loss": ("best_loss", Kind.number),
    "eval_loss": ("eval_loss", Kind.number),
    "best_eval_loss": ("best_eval_loss", Kind.number),
    "eval_perplexity": ("eval_perplexity", Kind.number),
    "learning_rate": ("learning_rate", Kind.number),
    "tokens_per_second": ("tokens_per_second", Kind.number),
    "samples_per_second": ("samples_per_second", Kind.number),
    "memory_bytes": ("memory_bytes", Kind.whole),
    "elapsed_seconds": ("elapsed_seconds", Kind.number),
    "step_seconds": ("step_seconds", Kind.number),
    "started_at": ("started_at", Kind.time),
    "resumed_from": ("resumed_from", Kind.checkpoint),
    "start_step": ("start_step", Kind.whole),
    "best_checkpoint": ("best_checkpoint", Kind.checkpoint),
}
# The newest checkpoint (the list of those kept comes with the termination message) and the step of
# the latest evaluation (the evaluation curve's next point).
CHECKPOINT_METRICS: dict[str, tuple[str, Kind]] = {
    "checkpoint": ("id", Kind.checkpoint),
    "checkpoint_step": ("step", Kind.whole),
    "checkpoint_epoch": ("epoch", Kind.whole),
    "checkpoint_loss": ("loss", Kind.number),
    "checkpoint_created_at": ("created_at", Kind.time),
    "checkpoint_size_bytes": ("size_bytes", Kind.whole),
    "checkpoint_reason": ("reason", Kind.checkpoint),
}
EVAL_STEP_METRIC = "eval_step"
# Names an evaluation metric cannot take behind EVAL_PREFIX: they carry report fields.
_RESERVED = {*METRICS, *CHECKPOINT_METRICS, EVAL_STEP_METRIC, FORMAT_METRIC}


# Report -> trainerStatus (the trainer) --------------------------------------------------------


def _text(value: Any, kind: Kind) -> str | None:
    """A report value as a metric's value; None when it has none the schema can carry."""
    if value is None:
        return None
    if kind == Kind.time:
        # Microseconds kept: a process is known by its start time, which its termination message
        # gives to the microsecond.
        return str(value.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    if kind == Kind.number:
        number = float(value)
        return repr(number) if math.isfinite(number) else None  # the termination message tells a divergence
    text = str(value)
    return text if 0 < len(text) <= MAX_METRIC_TEXT else None


def progress_percentage(report: ProgressReport) -> int | None:
    """Whole percent of the planned steps done (100 once completed); None without a plan."""
    if report.state == TrainerState.completed:
        return 100
    if report.total_steps <= 0:
        return None
    return max(0, min(100, math.floor(100 * report.step / report.total_steps)))


def trainer_status_of(report: ProgressReport, *, now: datetime) -> dict[str, Any]:
    """``report`` as the ``trainerStatus`` object a trainer posts at ``now`` (wire form)."""
    metrics: dict[str, str | None] = {FORMAT_METRIC: FORMAT_VERSION}
    for name, (field, kind) in METRICS.items():
        metrics[name] = _text(getattr(report, field), kind)
    if report.checkpoints:
        newest = report.checkpoints[-1]
        for name, (field, kind) in CHECKPOINT_METRICS.items():
            metrics[name] = _text(getattr(newest, field), kind)
        if metrics["checkpoint"] is None:  # an id too long to post: none of it is
            metrics.update(dict.fromkeys(CHECKPOINT_METRICS))
    if report.eval_history:
        metrics[EVAL_STEP_METRIC] = str(report.eval_history[-1].step)
    for metric, value in sorted(report.eval_metrics.items()):
        name = EVAL_PREFIX + metric
        if len(name) <= MAX_METRIC_TEXT and name not in _RESERVED:
            metrics[name] = _text(value, Kind.number)
    status: dict[str, Any] = {
        "metrics": [{"name": name, "value": value} for name, value in metrics.items() if value is not None],
        "lastUpdatedTime": rfc3339(report.updated_at or now),
    }
    percentage = progress_percentage(report)
    if percentage is not None:
        status["progressPercentage"] = percentage
    remaining = remaining_seconds(report)
    if remaining is not None:
        status["estimatedRemainingSeconds"] = min(math.ceil(remaining), MAX_REMAINING_SECONDS)
    return status


# trainerStatus -> report (the operator) -------------------------------------------------------

_COUNT = re.compile(r"^[0-9]{1,19}$")
_NUMBER = re.compile(r"^-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?$")
_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$")
_ALLOWED = {
    Kind.whole: "a whole number of at most 19 digits",
    Kind.number: "a finite decimal number such as 0.25 or 1e-05",
    Kind.time: "an RFC 3339 time such as 2026-01-15T12:00:00Z",
    Kind.state: f"one of {', '.join(TrainerState)}",
    Kind.checkpoint: f"a checkpoint id matching {CHECKPOINT_ID_PATTERN}",
}


def _value(name: str, text: str, kind: Kind) -> Any:
    """A metric's value read as ``kind``; InvalidReport naming the metric and what it allows."""
    try:
        if kind == Kind.whole and _COUNT.match(text):
            return int(text)
        if kind == Kind.number and _NUMBER.match(text) and math.isfinite(number := float(text)):
            return number
        if kind == Kind.time and _TIME.match(text):
            return parse_time(text)
        if kind == Kind.state and text in set(TrainerState):
            return text
        if kind == Kind.checkpoint and re.match(CHECKPOINT_ID_PATTERN, text):
            return text
    except ValueError:  # a time of the right shape that does not exist (month 13)
        pass
    raise InvalidReport(f"trainerStatus metric {name}: {text[:MAX_METRIC_TEXT]!r} is not {_ALLOWED[kind]}")


def is_ours(status: Mapping[str, Any] | None) -> bool:
    """Whether a trainerStatus says it carries a TensorOne report (any version: a version this
    operator does not read is refused by ``report_of``, not taken for someone else's status)."""
    metrics = (status or {}).get("metrics")
    if not isinstance(metrics, list):
        return False
    return any(isinstance(m, Mapping) and m.get("name") == FORMAT_METRIC for m in metrics[:MAX_METRICS])


def _metrics(status: Mapping[str, Any]) -> dict[str, str]:
    """The metrics by name, checked against the CRD's bounds; a name given twice is refused."""
    items = status.get("metrics")
    if items is None:
        items = []
    if not isinstance(items, list) or len(items) > MAX_METRICS:
        raise InvalidReport(f"trainerStatus.metrics must be a list of at most {MAX_METRICS} entries")
    metrics: dict[str, str] = {}
    for index, item in enumerate(items):
        name, value = (item.get("name"), item.get("value")) if isinstance(item, Mapping) else (None, None)
        if not all(isinstance(text, str) and 0 < len(text) <= MAX_METRIC_TEXT for text in (name, value)):
            raise InvalidReport(
                f"trainerStatus.metrics[{index}] must have a name and a value of 1 to {MAX_METRIC_TEXT} characters"
            )
        if name in metrics:
            raise InvalidReport(f"trainerStatus metric {name} is given twice")
        metrics[str(name)] = str(value)
    return metrics


def _whole(status: Mapping[str, Any], field: str, high: int) -> None:
    """Refuse a top-level number of trainerStatus that is present but not a whole number in 0..high."""
    value = status.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high):
        raise InvalidReport(f"trainerStatus.{field}: {str(value)[:40]!r} is not a whole number from 0 to {high}")


# ProgressReport field -> the metric that carries it, to name the metric a refusal is about.
_METRIC_OF = {field: name for name, (field, _) in METRICS.items()}
_CHECKPOINT_METRIC_OF = {field: name for name, (field, _) in CHECKPOINT_METRICS.items()}


def _snake(name: str) -> str:
    """A field's name as the report's model spells it (validation errors give the wire's camelCase)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def report_of(status: Mapping[str, Any], *, now: datetime) -> ProgressReport:
    """The report a TensorOne trainer posted as ``status`` (a TrainJob's ``status.trainerStatus``),
    read at ``now``: every value checked as ``parse_report`` checks a pod's report, ``updatedAt``
    being ``lastUpdatedTime``. The checkpoint list holds the newest checkpoint alone; there are no
    curves (the evaluation curve's last point is the latest evaluation when ``eval_step`` is given).

    Raises ``InvalidReport`` naming the field or the metric and what it allows."""
    if not isinstance(status, Mapping):
        raise InvalidReport("trainerStatus must be an object")
    metrics = _metrics(status)
    version = metrics.get(FORMAT_METRIC)
    if version is None:
        raise InvalidReport(f"trainerStatus metric {FORMAT_METRIC} is missing: no TensorOne trainer posted it")
    if version != FORMAT_VERSION:
        raise InvalidReport(
            f"trainerStatus metric {FORMAT_METRIC}: {version!r} is no report format this "
            f"operator reads ({FORMAT_VERSION})"
        )
    _whole(status, "progressPercentage", 100)
    _whole(status, "estimatedRemainingSeconds", MAX_REMAINING_SECONDS)
    updated = status.get("lastUpdatedTime")
    if not isinstance(updated, str):
        raise InvalidReport("trainerStatus.lastUpdatedTime is required: an RFC 3339 time")
    fields: dict[str, Any] = {"updated_at": _value("lastUpdatedTime", updated, Kind.time)}
    for name, (field, kind) in METRICS.items():
        if name in metrics:
            fields[field] = _value(name, metrics[name], kind)
    if "state" not in fields:
        raise InvalidReport("trainerStatus metric state is required")
    if "checkpoint" in metrics:
        checkpoint = {
            field: _value(name, metrics[name], kind)
            for name, (field, kind) in CHECKPOINT_METRICS.items()
            if name in metrics
        }
        fields["checkpoints"] = [checkpoint]
    if EVAL_STEP_METRIC in metrics and "eval_loss" in fields:
        step = _value(EVAL_STEP_METRIC, metrics[EVAL_STEP_METRIC], Kind.whole)
        fields["eval_history"] = [{"step": step, "loss": fields["eval_loss"]}]
    fields["eval_metrics"] = {
        name.removeprefix(EVAL_PREFIX): _value(name, value, Kind.number)
        for name, value in metrics.items()
        if name.startswith(EVAL_PREFIX) and name not in _RESERVED
    }
    try:
        report = ProgressReport.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        location = [str(part) for part in first["loc"]]
        where = _where(location)
        raise InvalidReport(f"{where}: {first['msg']}") from None
    check_times(report, now=now)
    return report


def _where(location: list[str]) -> str:
    """The metric (or field) of trainerStatus a validation error of the report is about."""
    if not location:
        return "trainerStatus"
    field = _snake(location[0])
    if field == "checkpoints":
        inner = _snake(location[2]) if len(location) > 2 else "id"
        return f"trainerStatus metric {_CHECKPOINT_METRIC_OF.get(inner, 'checkpoint')}"
    if field == "eval_metrics":
        return (
            f"trainerStatus metric {EVAL_PREFIX}{location[1]}" if len(location) > 1 else "trainerStatus eval_ metrics"
        )
    if field == "eval_history":
        return f"trainerStatus metric {EVAL_STEP_METRIC}"
    if field == "updated_at":
        return "trainerStatus.lastUpdatedTime"
    return f"trainerStatus metric {_METRIC_OF.get(field, field)}"
