"""The contract between a running trainer and the operator: the progress report.

The rank-0 trainer (ours, or a custom image using ``tensorone.reporting.client``) serves the latest
``ProgressReport`` as JSON at ``GET /progress`` on the report port; the operator polls it and
mirrors it into the TrainingJob's status. When the pod ends, a compact form of the same report is
written to the pod's termination-message path (under 4 KB), so the last state (the checkpoint saved
on SIGTERM, the final loss) reaches the status even after the pod is gone.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationError

from tensorone.api.timestamps import rfc3339
from tensorone.api.v1alpha1.base import ApiModel
from tensorone.api.v1alpha1.trainingjob import (
    MAX_EPOCHS,
    MAX_EVAL_METRICS,
    MAX_PATH_LENGTH,
    MAX_STATUS_CHECKPOINTS,
    SHA256_PATTERN,
    EvalMetricName,
    OutputKind,
)
from tensorone.errors import field_path

REPORT_SCHEMA_VERSION = 1
TERMINATION_MESSAGE_LIMIT = 4096
# One port on rank 0 serves /progress (JSON, the operator polls it) and /metrics (Prometheus); the
# operator gives the pods the job's port in REPORT_PORT_ENV.
DEFAULT_REPORT_PORT = 9400
REPORT_PORT_ENV = "TENSORONE_REPORT_PORT"
# The address it is served on: the operator gives the pods their pod IP (the only address the
# operator and Prometheus reach them on); without it, loopback, so that a run on a laptop is not
# open to the laptop's network.
REPORT_HOST_ENV = "TENSORONE_REPORT_HOST"
DEFAULT_REPORT_HOST = "127.0.0.1"
TERMINATION_LOG_ENV = "TENSORONE_TERMINATION_LOG"
# How long a trainer that ended (completed, failed or diverged; not stopped, whose grace period is
# the checkpoint's) keeps serving until its last metric records were read: the operator gives the
# pods twice its poll interval and a little more; without it, no wait (a local run has no reader).
REPORT_DRAIN_ENV = "TENSORONE_REPORT_DRAIN_SECONDS"
MAX_DRAIN_SECONDS = 120.0
DEFAULT_TERMINATION_LOG = "/dev/termination-log"

# A report is untrusted input for the operator (a custom image writes whatever it likes): every
# field is bounded, so a report that parses fits the TrainingJob status schema, and a body larger
# than MAX_REPORT_BYTES is refused before it is parsed. A full report of our trainer (200-point
# curves, the checkpoints it keeps) is under 40 KB.
MAX_REPORT_BYTES = 256 * 1024
MAX_REPORT_CHECKPOINTS = 256
MAX_REPORT_HISTORY_POINTS = 1024
MAX_MESSAGE_LENGTH = 4096
MAX_REASON_LENGTH = 128
# A condition reason as Kubernetes accepts it (metav1.Condition): CamelCase words.
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
# A checkpoint id a TrainingJob can name in spec.resumeFrom.
CHECKPOINT_ID_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"
MAX_CHECKPOINT_ID_LENGTH = 128
MAX_STEPS = 10**12
MAX_RATE = 1e12  # tokens or samples per second, all ranks
MAX_SECONDS = 1e9  # about 31 years
MAX_BYTES = 2**60
MAX_LEARNING_RATE = 10.0
MAX_METRIC_VALUE = 1e12  # a task metric's magnitude (mAP and accuracy are fractions)
# How far a pod's clock may run ahead of the operator's. Nodes keep time with NTP to well under a
# second; minutes allow for one that lost its time source for a while. A report is refused when it
# claims a later time: the operator keeps the report of the latest process start (then step, then
# update time), so a start in the future would outrank every genuine report that follows.
CLOCK_SKEW = timedelta(minutes=5)


def _in_utc(value: datetime) -> datetime:
    """A report's time in UTC (a time without an offset is taken as UTC). A time that is valid where
    it is written but has no UTC form (year 1 at +14:00) is refused: the status holds UTC."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return aware.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a time that exists in UTC (years 1 to 9999)") from None


ReportTime = Annotated[datetime, AfterValidator(_in_utc)]


class TrainerState(StrEnum):
    """What the trainer process is doing."""

    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"  # ended on SIGTERM after saving a checkpoint
    completed = "completed"
    failed = "failed"
    diverged = "diverged"  # NaN or infinite loss; the last good checkpoint is kept


class CheckpointReport(ApiModel):
    """One checkpoint as the trainer reports it."""

    id: str = Field(
        min_length=1,
        max_length=MAX_CHECKPOINT_ID_LENGTH,
        pattern=CHECKPOINT_ID_PATTERN,
        description="Checkpoint id (ckpt-epoch-1, ckpt-step-500): lowercase letters, digits, '-', '_', '.'.",
    )
    epoch: int = Field(ge=0, le=MAX_EPOCHS, description="Epochs completed.")
    step: int = Field(ge=0, le=MAX_STEPS, description="Optimizer steps completed.")
    loss: float | None = Field(default=None, description="Training loss when saved.")
    created_at: ReportTime = Field(description="When saved.")
    size_bytes: int = Field(ge=0, le=MAX_BYTES, description="Size on disk in bytes.")
    reason: str = Field(
        default="step",
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="epoch, step, stop, final or best.",
    )


class ArtifactReport(ApiModel):
    """A model folder the trainer wrote, as it reports it."""

    path: str = Field(
        min_length=1,
        max_length=MAX_PATH_LENGTH,
        pattern=r"^[^\x00-\x1f]+$",
        description="Folder, relative to the checkpoint directory (output), or absolute when outside it.",
    )
    kind: OutputKind = Field(description="adapter, merged or full.")
    size_bytes: int = Field(ge=0, le=MAX_BYTES, description="Bytes of every file in it.")
    sha256: str = Field(pattern=SHA256_PATTERN, description="Content digest (see ModelArtifact.sha256).")


class OutputReport(ArtifactReport):
    """The final model."""

    base_model: str | None = Field(default=None, max_length=512, description="The model it was trained from.")
    checkpoint: str | None = Field(
        default=None,
        max_length=MAX_CHECKPOINT_ID_LENGTH,
        pattern=CHECKPOINT_ID_PATTERN,
        description="The checkpoint whose weights it holds.",
    )
    created_at: ReportTime = Field(description="When it was written.")
    merged: ArtifactReport | None = Field(default=None, description="The adapter merged into the base weights.")


class ExportState(StrEnum):
    """Where spec.output's upload is."""

    uploading = "uploading"
    exported = "exported"  # every file uploaded and verified, the manifest last
    failed = "failed"


MAX_EXPORT_MESSAGE_LENGTH = 1024


class ExportReport(ApiModel):
    """The upload of the job's files to spec.output's store, as rank 0 reports it."""

    uri: str = Field(
        min_length=8, max_length=2048, pattern=r"^s3://[^\x00-\x1f]+$", description="The job's folder in the store."
    )
    state: ExportState = Field(description="uploading, exported or failed.")
    message: str | None = Field(
        default=None, max_length=MAX_EXPORT_MESSAGE_LENGTH, description="What was done, or why it failed."
    )
    checkpoints: list[Annotated[str, Field(max_length=MAX_CHECKPOINT_ID_LENGTH, pattern=CHECKPOINT_ID_PATTERN)]] = (
        Field(default_factory=list, max_length=MAX_STATUS_CHECKPOINTS, description="Checkpoints uploaded.")
    )
    files: int = Field(default=0, ge=0, le=10**9, description="Files uploaded or already there with the same digest.")
    size_bytes: int = Field(default=0, ge=0, le=MAX_BYTES, description="Bytes of those files.")


class LossPoint(ApiModel):
    """A point of the loss curve."""

    step: int = Field(ge=0, le=MAX_STEPS, description="Optimizer step.")
    loss: float = Field(description="Loss at that step.")


class ProgressReport(ApiModel):
    """The snapshot served at /progress."""

    schema_version: int = Field(default=REPORT_SCHEMA_VERSION, ge=1, le=1000, description="Version of this format.")
    state: TrainerState = Field(description="What the trainer is doing.")
    reason: str | None = Field(
        default=None,
        max_length=MAX_REASON_LENGTH,
        pattern=REASON_PATTERN,
        description="Why it ended (CamelCase): for failed and diverged, and EarlyStopped for a completed run "
        "that stopped on a plateau.",
    )
    message: str | None = Field(default=None, max_length=MAX_MESSAGE_LENGTH, description="Human-readable detail.")
    epoch: int = Field(default=0, ge=0, le=MAX_EPOCHS, description="Epoch in progress, 1-based (0 before the first).")
    total_epochs: int = Field(default=0, ge=0, le=MAX_EPOCHS, description="Epochs planned.")
    step: int = Field(default=0, ge=0, le=MAX_STEPS, description="Optimizer steps done.")
    total_steps: int = Field(default=0, ge=0, le=MAX_STEPS, description="Optimizer steps planned.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    best_loss: float | None = Field(default=None, description="Lowest training loss.")
    eval_loss: float | None = Field(default=None, description="Latest evaluation loss.")
    best_eval_loss: float | None = Field(default=None, description="Lowest evaluation loss.")
    eval_perplexity: float | None = Field(
        default=None,
        ge=0.0,
        le=MAX_METRIC_VALUE,
        description="Perplexity at the latest evaluation (LLM jobs); absent when it exceeds the bound.",
    )
    eval_metrics: dict[EvalMetricName, Annotated[float, Field(ge=-MAX_METRIC_VALUE, le=MAX_METRIC_VALUE)]] = Field(
        default_factory=dict,
        max_length=MAX_EVAL_METRICS,
        description="The task's metrics on the evaluation split at the latest evaluation (mAP, mAP50), by name.",
    )
    learning_rate: float | None = Field(
        default=None, ge=0.0, le=MAX_LEARNING_RATE, description="Current learning rate."
    )
    tokens_per_second: float | None = Field(
        default=None, ge=0.0, le=MAX_RATE, description="Training tokens per second (all ranks)."
    )
    samples_per_second: float | None = Field(
        default=None, ge=0.0, le=MAX_RATE, description="Training samples per second (all ranks)."
    )
    memory_bytes: int | None = Field(
        default=None, ge=0, le=MAX_BYTES, description="Peak accelerator memory (host RSS on CPU)."
    )
    started_at: ReportTime | None = Field(default=None, description="When this process started training.")
    updated_at: ReportTime | None = Field(default=None, description="When this report was produced.")
    elapsed_seconds: float = Field(
        default=0.0, ge=0.0, le=MAX_SECONDS, description="Wall-clock seconds since the run started."
    )
    step_seconds: float = Field(
        default=0.0, ge=0.0, le=MAX_SECONDS, description="Seconds spent inside training steps (for efficiency)."
    )
    resumed_from: str | None = Field(
        default=None,
        max_length=MAX_CHECKPOINT_ID_LENGTH,
        pattern=CHECKPOINT_ID_PATTERN,
        description="Checkpoint this run resumed from.",
    )
    start_step: int | None = Field(
        default=None,
        ge=0,
        le=MAX_STEPS,
        description="The step this process started from (0, or its resume checkpoint's): the step rate counts from it.",
    )
    checkpoints: list[CheckpointReport] = Field(
        default_factory=list, max_length=MAX_REPORT_CHECKPOINTS, description="Checkpoints kept, oldest first."
    )
    best_checkpoint: str | None = Field(
        default=None,
        max_length=MAX_CHECKPOINT_ID_LENGTH,
        pattern=CHECKPOINT_ID_PATTERN,
        description="The checkpoint of the best evaluation, when the run tracks one (early stopping, output from best).",
    )
    output: OutputReport | None = Field(default=None, description="The final model, once written.")
    export: ExportReport | None = Field(default=None, description="The upload of spec.output, once started.")
    loss_history: list[LossPoint] = Field(
        default_factory=list,
        max_length=MAX_REPORT_HISTORY_POINTS,
        description="Downsampled training-loss curve (bounded).",
    )
    eval_history: list[LossPoint] = Field(
        default_factory=list, max_length=MAX_REPORT_HISTORY_POINTS, description="Evaluation-loss curve (bounded)."
    )

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"))

    def termination_message(self) -> str:
        """The report shrunk to fit the termination-message limit: curves dropped, then older
        checkpoints, keeping the newest (the one saved on stop). The output and the best checkpoint's
        id stay (a few hundred bytes at most)."""
        slim = self.model_copy(update={"loss_history": [], "eval_history": []})
        text = slim.to_json()
        keep = len(slim.checkpoints)
        while len(text.encode()) > TERMINATION_MESSAGE_LIMIT - 96 and keep > 0:
            keep -= 1
            text = slim.model_copy(update={"checkpoints": slim.checkpoints[len(slim.checkpoints) - keep :]}).to_json()
        if len(text.encode()) > TERMINATION_MESSAGE_LIMIT - 96 and slim.export is not None:
            # The list of exported checkpoints is in the store's manifest too.
            export = slim.export.model_copy(update={"checkpoints": [], "message": None})
            text = slim.model_copy(update={"checkpoints": [], "export": export}).to_json()
        return text


def _start_step(report: ProgressReport) -> int:
    """The step this trainer process started from: as it says, else its resume checkpoint's, or 0."""
    if report.start_step is not None:
        return report.start_step
    if report.resumed_from:
        for checkpoint in report.checkpoints:
            if checkpoint.id == report.resumed_from:
                return checkpoint.step
    return 0


def remaining_seconds(report: ProgressReport) -> float | None:
    """Seconds of training left at the current process's step rate; None before a rate exists."""
    done = report.step - _start_step(report)
    if report.total_steps <= 0 or done <= 0 or report.elapsed_seconds <= 0:
        return None
    if report.state == TrainerState.completed or report.step >= report.total_steps:
        return 0.0
    rate = done / report.elapsed_seconds
    # A bounded report can still imply centuries (one step of 10**12 in 10**9 s): the estimate is
    # capped where the status and datetime arithmetic stay valid.
    return min((report.total_steps - report.step) / rate, MAX_SECONDS)


class InvalidReport(ValueError):
    """A progress report the operator refuses: too large, not JSON, or a field out of bounds."""


def parse_report(body: str | bytes, *, now: datetime) -> ProgressReport:
    """A report from a /progress body or a termination message, checked against every bound, its
    times included: ``startedAt`` and ``updatedAt`` no later than ``now`` (the reader's clock, aware)
    by more than CLOCK_SKEW.

    Raises ``InvalidReport`` naming the field and what it allows."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > MAX_REPORT_BYTES:
        raise InvalidReport(f"report of {size} bytes is over the limit of {MAX_REPORT_BYTES} bytes")
    try:
        report = ProgressReport.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = f"report field {field_path(list(first['loc']))}" if first["loc"] else "report"
        raise InvalidReport(f"{where}: {first['msg']}" + _more(exc.error_count())) from None
    check_times(report, now=now)
    return report


def check_times(report: ProgressReport, *, now: datetime) -> None:
    """Raise ``InvalidReport`` naming the field when ``startedAt`` or ``updatedAt`` lies in the future."""
    latest = now + CLOCK_SKEW
    times = {"startedAt": report.started_at, "updatedAt": report.updated_at}
    late = [(name, value) for name, value in times.items() if value is not None and value > latest]
    if late:
        name, value = late[0]
        raise InvalidReport(
            f"report field {name}: {rfc3339(value)} is in the future: the operator's clock reads {rfc3339(now)}, "
            f"and a pod's clock may be ahead by at most {CLOCK_SKEW.total_seconds() / 60:g} minutes" + _more(len(late))
        )


def _more(count: int) -> str:
    return f" (and {count - 1} more problems)" if count > 1 else ""


_REASON_CHARACTERS = re.compile(r"[^A-Za-z0-9_,:]")


def condition_reason(text: str | None) -> str | None:
    """``text`` made a valid condition reason (CamelCase, at most MAX_REASON_LENGTH characters):
    characters Kubernetes refuses are dropped; None when nothing is left."""
    if not text:
        return None
    kept = _REASON_CHARACTERS.sub("", text).lstrip("0123456789_,:")[:MAX_REASON_LENGTH].rstrip(",:")
    return kept or None


def bounded_message(text: str | None) -> str | None:
    """``text`` cut to MAX_MESSAGE_LENGTH characters, marking the cut."""
    if text is None or len(text) <= MAX_MESSAGE_LENGTH:
        return text
    return text[: MAX_MESSAGE_LENGTH - 3] + "..."
