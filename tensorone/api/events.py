"""A job's events: the Kubernetes Events about it merged with its trainer's per-step metric events.

``list_events`` (SDK, ``t1 events``, the gateway) returns ``JobEvent``s, oldest first. A Kubernetes
Event (lifecycle, checkpoints, warnings) has ``type`` Normal or Warning and the reason the operator
gave it. A metric event is one optimizer step (reason ``TrainingStep``: step, epoch, loss, learning
rate, gradient norm, throughput) or one evaluation (reason ``Evaluation``: the eval loss after a
step), with the numbers in fields of their own and in the message.

Where the metric events come from (docs/operator.md, "Metric events"): the rank-0 trainer keeps
its last ``RING_RECORDS`` records in memory and serves them in pages at ``GET /metric-events`` on
the report port (``MetricPage``); the operator reads the new ones after each ``/progress`` poll
and keeps the job's store, the ConfigMap ``<job>-metrics`` (``metric_store_name``): at most
``STORE_STEPS`` step records and ``STORE_EVALS`` evaluations, written at most once every
``STORE_WRITE_SECONDS`` per job and once when the job ends. It lives beside the TrainingJob (owned
by it, deleted with it) and never grows it.

A page is untrusted input (a custom image serves whatever it likes): its size, its number of
records and every value are bounded here, and a page that breaks a bound is refused whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from tensorone.api.report import (
    CLOCK_SKEW,
    MAX_LEARNING_RATE,
    MAX_RATE,
    MAX_STEPS,
    InvalidReport,
    ReportTime,
)
from tensorone.api.v1alpha1.base import ApiModel
from tensorone.api.v1alpha1.trainingjob import MAX_EPOCHS
from tensorone.errors import field_path

# Reasons of metric events (Kubernetes Events have the operator's reasons).
STEP_REASON = "TrainingStep"
EVAL_REASON = "Evaluation"
METRIC_REASONS = (STEP_REASON, EVAL_REASON)

# The trainer's ring: the records a reader can still fetch. At the operator's default poll of 5 s,
# 4096 records cover a trainer doing up to 800 steps a second; a faster one loses the oldest
# records between two polls (the store then has gaps; the metrics log on the PVC has every step).
RING_RECORDS = 4096
# One page: at most this many records, this many bytes (a record of our trainer is about 200 bytes).
MAX_PAGE_RECORDS = 1000
MAX_PAGE_BYTES = 512 * 1024
# A loss, eval loss or gradient norm beyond this is no measurement (the status has no use for it).
MAX_METRIC_VALUE = 1e12

# The store (a ConfigMap per job): the steps kept (older ones thinned, see ``merged``), the
# evaluations kept (the newest), and how often it is written. A record's line is at most
# ``MAX_RECORD_BYTES`` (the bounds above make that true; our trainer's are about 190), so the
# store stays under 410 KB, well within the 1 MiB a ConfigMap may hold.
STORE_STEPS = 1024
STORE_EVALS = 128
STORE_WRITE_SECONDS = 30.0
STORE_KEY = "events.jsonl"
STORE_LABEL = "training.tensorone.ai/metrics-of"
# The trainer process (its start time) whose records the store holds last.
STORE_PROCESS_ANNOTATION = "training.tensorone.ai/metrics-process"
MAX_RECORD_BYTES = 352


def metric_store_name(job_name: str) -> str:
    """The ConfigMap holding a job's metric events."""
    return f"{job_name}-metrics"


def _metric(description: str, *, low: float = -MAX_METRIC_VALUE) -> Any:
    return Field(default=None, ge=low, le=MAX_METRIC_VALUE, allow_inf_nan=False, description=description)


class MetricRecord(ApiModel):
    """One record of the trainer's metrics: an optimizer step or an evaluation."""

    seq: int = Field(ge=1, le=MAX_STEPS, description="Position in the trainer process's records (from 1).")
    kind: Literal["step", "eval"] = Field(description="step: one optimizer step; eval: one evaluation.")
    step: int = Field(ge=0, le=MAX_STEPS, description="Optimizer step (for an evaluation: the step it followed).")
    time: ReportTime = Field(description="When it was recorded.")
    epoch: int | None = Field(default=None, ge=0, le=MAX_EPOCHS, description="Epoch of the step, 1-based.")
    loss: float | None = _metric("Training loss of the step.")
    learning_rate: float | None = Field(
        default=None, ge=0.0, le=MAX_LEARNING_RATE, allow_inf_nan=False, description="Learning rate the update used."
    )
    grad_norm: float | None = _metric("Total gradient norm before clipping.", low=0.0)
    tokens_per_second: float | None = Field(
        default=None, ge=0.0, le=MAX_RATE, allow_inf_nan=False, description="Tokens per second of the step."
    )
    samples_per_second: float | None = Field(
        default=None, ge=0.0, le=MAX_RATE, allow_inf_nan=False, description="Samples per second of the step."
    )
    eval_loss: float | None = _metric("Evaluation loss.")

    def to_line(self) -> str:
        """The record as one line of the store (compact JSON, the time at millisecond precision)."""
        wire = self.to_wire()
        wire["time"] = self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return json.dumps(wire, separators=(",", ":"))


class MetricPage(ApiModel):
    """``GET /metric-events?after=SEQ&limit=N``: the trainer's records after ``SEQ``, oldest first."""

    records: list[MetricRecord] = Field(default_factory=list, max_length=MAX_PAGE_RECORDS)


def parse_page(body: str | bytes, *, after: int, now: datetime) -> list[MetricRecord]:
    """The records of a ``/metric-events`` answer asked for after ``after``, checked against every
    bound: size, count, values, times (no later than ``now`` by more than CLOCK_SKEW) and order
    (each ``seq`` after ``after`` and above the one before). Raises ``InvalidReport`` naming the
    field."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > MAX_PAGE_BYTES:
        raise InvalidReport(f"metric events page of {size} bytes is over the limit of {MAX_PAGE_BYTES} bytes")
    try:
        page = MetricPage.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = f"metric events field {field_path(list(first['loc']))}" if first["loc"] else "metric events page"
        raise InvalidReport(f"{where}: {first['msg']}") from None
    previous = after
    for index, record in enumerate(page.records):
        if record.seq <= previous:
            raise InvalidReport(
                f"metric events field records[{index}].seq: {record.seq} does not follow {previous} "
                "(records come in order, after the one asked for)"
            )
        if record.time > now + CLOCK_SKEW:
            raise InvalidReport(
                f"metric events field records[{index}].time: {record.time.isoformat()} is in the future "
                f"(the reader's clock reads {now.isoformat()})"
            )
        previous = record.seq
    return page.records


def merged(stored: Sequence[MetricRecord], new: Sequence[MetricRecord], *, rerun: bool = False) -> list[MetricRecord]:
    """The store after ``new`` records (oldest first), within its bounds.

    A record of ``new`` replaces a stored one of the same kind and step. With ``rerun`` (``new``
    comes from a later trainer process, which may have resumed from an earlier checkpoint and
    trains those steps again), the first step of ``new`` replaces everything stored from that step
    on. Beyond STORE_STEPS steps, the newest STORE_STEPS / 2 stay at full resolution and the older
    ones are thinned to every 2nd, 4th, 8th ... step as the run grows, the oldest the most (the
    first step always kept): the whole run stays covered. Beyond STORE_EVALS evaluations, the oldest go."""
    first_new_step = min((r.step for r in new if r.kind == "step"), default=None)
    replaced = {(r.kind, r.step) for r in new}
    kept = [
        r
        for r in stored
        if (r.kind, r.step) not in replaced and not (rerun and first_new_step is not None and r.step >= first_new_step)
    ]
    every = sorted([*kept, *new], key=lambda r: (r.step, r.kind == "eval", r.time))
    steps = [r for r in every if r.kind == "step"]
    evals = [r for r in every if r.kind == "eval"][-STORE_EVALS:]
    if len(steps) > STORE_STEPS:
        recent = STORE_STEPS // 2
        steps = _thinned(steps[:-recent], recent) + steps[-recent:]
    return sorted([*steps, *evals], key=lambda r: (r.step, r.kind == "eval", r.time))


def _thinned(steps: Sequence[MetricRecord], limit: int) -> list[MetricRecord]:
    """At most ``limit`` of ``steps``: the first, and those whose step is a multiple of the
    smallest power of two that leaves no more (so thinning again keeps the same spread)."""
    stride = 1
    while True:
        kept = [r for i, r in enumerate(steps) if i == 0 or r.step % stride == 0]
        if len(kept) <= limit:
            return kept
        stride *= 2


def store_text(records: Iterable[MetricRecord]) -> str:
    """The store's data: one record a line."""
    return "".join(record.to_line() + "\n" for record in records)


def read_store(text: str | None) -> list[MetricRecord]:
    """The records of a store's data; a line that is no valid record is skipped (whoever may edit
    ConfigMaps in the namespace may edit this one)."""
    records = []
    for line in (text or "").splitlines()[: STORE_STEPS + STORE_EVALS]:
        if len(line) > MAX_RECORD_BYTES:
            continue
        try:
            records.append(MetricRecord.model_validate_json(line))
        except ValidationError:
            continue
    return records


class JobEvent(ApiModel):
    """One event of a job: a Kubernetes Event (type Normal or Warning) or a metric event (reason
    TrainingStep or Evaluation, with its numbers). The same shape in the SDK, ``t1 events -o json``
    and the gateway."""

    type: str = Field(description="Normal or Warning.")
    reason: str = Field(description="Why: the operator's reason, or TrainingStep / Evaluation for a metric event.")
    message: str = Field(description="What happened, for people.")
    count: int = Field(default=1, ge=1, description="How many times it happened (Kubernetes Events are deduplicated).")
    first_seen: datetime | None = Field(default=None, description="When it first happened.")
    last_seen: datetime | None = Field(default=None, description="When it last happened.")
    step: int | None = Field(default=None, description="Optimizer step (metric events).")
    epoch: int | None = Field(default=None, description="Epoch of the step, 1-based.")
    loss: float | None = Field(default=None, description="Training loss of the step.")
    learning_rate: float | None = Field(default=None, description="Learning rate the step's update used.")
    grad_norm: float | None = Field(default=None, description="Total gradient norm of the step, before clipping.")
    tokens_per_second: float | None = Field(default=None, description="Tokens per second of the step (all ranks).")
    samples_per_second: float | None = Field(default=None, description="Samples per second of the step (all ranks).")
    eval_loss: float | None = Field(default=None, description="Evaluation loss after the step.")

    @property
    def is_metric(self) -> bool:
        return self.reason in METRIC_REASONS and self.step is not None


def metric_event(record: MetricRecord) -> JobEvent:
    """A record of the store as a job event."""
    if record.kind == "eval":
        message = f"step {record.step}: eval loss {_number(record.eval_loss)}"
        return JobEvent(
            type="Normal",
            reason=EVAL_REASON,
            message=message,
            first_seen=record.time,
            last_seen=record.time,
            step=record.step,
            epoch=record.epoch,
            eval_loss=record.eval_loss,
        )
    parts = [f"loss {_number(record.loss)}"]
    if record.learning_rate is not None:
        parts.append(f"lr {record.learning_rate:.3g}")
    if record.grad_norm is not None:
        parts.append(f"grad norm {_number(record.grad_norm)}")
    if record.tokens_per_second:
        parts.append(f"{record.tokens_per_second:.0f} tokens/sec")
    elif record.samples_per_second:
        parts.append(f"{record.samples_per_second:.1f} samples/sec")
    epoch = f" (epoch {record.epoch})" if record.epoch is not None else ""
    return JobEvent(
        type="Normal",
        reason=STEP_REASON,
        message=f"step {record.step}{epoch}: " + ", ".join(parts),
        first_seen=record.time,
        last_seen=record.time,
        step=record.step,
        epoch=record.epoch,
        loss=record.loss,
        learning_rate=record.learning_rate,
        grad_norm=record.grad_norm,
        tokens_per_second=record.tokens_per_second,
        samples_per_second=record.samples_per_second,
    )


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def in_time_order(kubernetes: Iterable[JobEvent], metrics: Iterable[JobEvent]) -> list[JobEvent]:
    """Both kinds of events in one list, oldest first (by when each last happened; a Kubernetes
    Event before a metric event of the same moment). Events without a time come first."""
    floor = datetime.min.replace(tzinfo=UTC)

    def key(item: tuple[int, int, JobEvent]) -> tuple[datetime, int, int]:
        source, index, event = item
        return (event.last_seen or floor, source, index)

    numbered = [(0, i, e) for i, e in enumerate(kubernetes)] + [(1, i, e) for i, e in enumerate(metrics)]
    return [event for _, _, event in sorted(numbered, key=key)]
