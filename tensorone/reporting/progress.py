"""The trainer's progress, kept cheaply while training and turned into a ``ProgressReport`` on demand.

Recording a step stores a few numbers under a lock; nothing is serialised on the training path.
The report (JSON at /progress, Prometheus at /metrics, the termination message) is built from
these numbers only when someone asks for it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tensorone.api.report import (
    MAX_METRIC_VALUE,
    MAX_RATE,
    MAX_REPORT_CHECKPOINTS,
    MAX_SECONDS,
    CheckpointReport,
    ExportReport,
    LossPoint,
    OutputReport,
    ProgressReport,
    TrainerState,
    bounded_message,
    condition_reason,
)

HISTORY_POINTS = 200  # points of a loss curve in the report; the curve is downsampled beyond
THROUGHPUT_WINDOW = 20  # steps over which tokens/s and samples/s are measured


class Curve:
    """A loss curve of bounded size: every point while few, then every 2nd, 4th, ... step; the
    first point is always kept (where the loss started)."""

    def __init__(self, limit: int = HISTORY_POINTS) -> None:
        self.limit = limit
        self.stride = 1
        # Plain (step, loss) pairs: a step only appends a tuple; LossPoints are made when asked.
        self.points: list[tuple[int, float]] = []
        self.latest: tuple[int, float] | None = None

    def add(self, step: int, loss: float) -> None:
        self.latest = (step, loss)
        if self.points and step % self.stride:
            return
        self.points.append(self.latest)
        if len(self.points) > self.limit:
            self.stride *= 2
            first, *rest = self.points
            self.points = [first, *(p for p in rest if p[0] % self.stride == 0)]

    def snapshot(self) -> list[LossPoint]:
        """The kept points, ending with the latest one."""
        points = self.points
        if self.latest is not None and (not points or points[-1][0] != self.latest[0]):
            points = [*points, self.latest]
        return [LossPoint(step=step, loss=loss) for step, loss in points]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One optimizer step as reported: its loss, and what it processed (over every process) in how
    many seconds."""

    step: int
    loss: float
    epoch: int | None = None
    learning_rate: float | None = None
    tokens: int = 0
    samples: int = 0
    seconds: float = 0.0
    grad_norm: float | None = None

    def log_fields(self) -> dict[str, Any]:
        """The step's line of the metrics log (without its time)."""
        return {
            "event": "step",
            "step": self.step,
            "epoch": self.epoch,
            "loss": self.loss,
            "learningRate": self.learning_rate,
            "tokens": self.tokens,
            "samples": self.samples,
            "seconds": round(self.seconds, 6),
            "gradNorm": self.grad_norm,
        }


class ProgressTracker:
    """Thread-safe progress of one trainer process."""

    def __init__(self, memory: Callable[[], int | None] | None = None) -> None:
        self._lock = threading.Lock()
        self._memory = memory
        self._monotonic_start = time.monotonic()
        self.state = TrainerState.starting
        self.reason: str | None = None
        self.message: str | None = None
        self.epoch = 0
        self.total_epochs = 0
        self.step = 0
        self.total_steps = 0
        self.start_step: int | None = None
        self.loss: float | None = None
        self.best_loss: float | None = None
        self.eval_loss: float | None = None
        self.best_eval_loss: float | None = None
        self.eval_perplexity: float | None = None
        self.eval_metrics: dict[str, float] = {}
        self.learning_rate: float | None = None
        self.started_at: datetime | None = None
        self.step_seconds = 0.0
        self.resumed_from: str | None = None
        self.checkpoints: list[CheckpointReport] = []
        self.best_checkpoint: str | None = None
        self.output: OutputReport | None = None
        self.export: ExportReport | None = None
        self.loss_curve = Curve()
        self.eval_curve = Curve()
        self._window: deque[StepRecord] = deque(maxlen=THROUGHPUT_WINDOW)
        self._tokens_total = 0
        self._samples_total = 0

    def set_state(self, state: TrainerState, *, reason: str | None = None, message: str | None = None) -> None:
        with self._lock:
            self.state = state
            # Bounded as the report allows (an exception's text can be any length).
            self.reason = condition_reason(reason)
            self.message = bounded_message(message)
            if state == TrainerState.running and self.started_at is None:
                self.started_at = datetime.now(UTC)

    def set_plan(self, *, total_epochs: int, total_steps: int, step: int = 0) -> None:
        """The run's length, and the step it starts from (a resumed run's checkpoint)."""
        with self._lock:
            self.total_epochs = total_epochs
            self.total_steps = total_steps
            self.step = max(self.step, step)
            self.start_step = step

    def record_step(self, record: StepRecord) -> None:
        """One optimizer step done."""
        with self._lock:
            self.step = record.step
            if record.epoch is not None:
                self.epoch = record.epoch
            self.loss = record.loss
            if self.best_loss is None or record.loss < self.best_loss:
                self.best_loss = record.loss
            self.learning_rate = record.learning_rate
            self.step_seconds += record.seconds
            self._tokens_total += record.tokens
            self._samples_total += record.samples
            self._window.append(record)
            self.loss_curve.add(record.step, record.loss)

    def record_eval(
        self, step: int, loss: float, metrics: dict[str, float] | None = None, *, perplexity: float | None = None
    ) -> None:
        with self._lock:
            if metrics is not None:
                self.eval_metrics = dict(metrics)
            self.eval_perplexity = perplexity if perplexity is not None and perplexity <= MAX_METRIC_VALUE else None
            self.eval_loss = loss
            if self.best_eval_loss is None or loss < self.best_eval_loss:
                self.best_eval_loss = loss
            self.eval_curve.add(step, loss)

    def set_checkpoints(self, checkpoints: list[CheckpointReport]) -> None:
        with self._lock:
            self.checkpoints = list(checkpoints[-MAX_REPORT_CHECKPOINTS:])

    def set_best_checkpoint(self, checkpoint_id: str | None) -> None:
        with self._lock:
            self.best_checkpoint = checkpoint_id

    def set_output(self, output: OutputReport) -> None:
        with self._lock:
            self.output = output

    def set_export(self, export: ExportReport) -> None:
        with self._lock:
            self.export = export

    def throughput(self) -> tuple[float | None, float | None]:
        """Tokens and samples per second over the last steps."""
        seconds = sum(w.seconds for w in self._window)
        if seconds <= 0:
            return None, None
        tokens = sum(w.tokens for w in self._window) / seconds
        samples = sum(w.samples for w in self._window) / seconds
        return min(tokens, MAX_RATE), min(samples, MAX_RATE)

    @property
    def tokens_total(self) -> int:
        return self._tokens_total

    @property
    def samples_total(self) -> int:
        return self._samples_total

    def memory_bytes(self) -> int | None:
        return self._memory() if self._memory is not None else None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the progress, so a resumed run's report continues it."""
        with self._lock:
            return {
                "loss": self.loss,
                "bestLoss": self.best_loss,
                "evalLoss": self.eval_loss,
                "bestEvalLoss": self.best_eval_loss,
                "evalPerplexity": self.eval_perplexity,
                "evalMetrics": dict(self.eval_metrics),
                "stepSeconds": self.step_seconds,
                "tokensTotal": self._tokens_total,
                "samplesTotal": self._samples_total,
                "lossHistory": [[p.step, p.loss] for p in self.loss_curve.snapshot()],
                "evalHistory": [[p.step, p.loss] for p in self.eval_curve.snapshot()],
            }

    def load_state_dict(self, state: dict[str, Any], *, step: int, epoch: int) -> None:
        with self._lock:
            self.step = step
            self.epoch = epoch
            self.loss = state.get("loss")
            self.best_loss = state.get("bestLoss")
            self.eval_loss = state.get("evalLoss")
            self.best_eval_loss = state.get("bestEvalLoss")
            self.eval_perplexity = state.get("evalPerplexity")
            self.eval_metrics = dict(state.get("evalMetrics", {}))
            self.step_seconds = float(state.get("stepSeconds", 0.0))
            self._tokens_total = int(state.get("tokensTotal", 0))
            self._samples_total = int(state.get("samplesTotal", 0))
            for point_step, loss in state.get("lossHistory", []):
                self.loss_curve.add(point_step, loss)
            for point_step, loss in state.get("evalHistory", []):
                self.eval_curve.add(point_step, loss)

    def report(self) -> ProgressReport:
        """The full snapshot, as served at /progress."""
        with self._lock:
            tokens_per_second, samples_per_second = self.throughput()
            return ProgressReport(
                state=self.state,
                reason=self.reason,
                message=self.message,
                epoch=self.epoch,
                total_epochs=self.total_epochs,
                step=self.step,
                total_steps=self.total_steps,
                loss=self.loss,
                best_loss=self.best_loss,
                eval_loss=self.eval_loss,
                best_eval_loss=self.best_eval_loss,
                eval_perplexity=self.eval_perplexity,
                eval_metrics=dict(self.eval_metrics),
                learning_rate=self.learning_rate,
                tokens_per_second=tokens_per_second,
                samples_per_second=samples_per_second,
                memory_bytes=self.memory_bytes(),
                started_at=self.started_at,
                updated_at=datetime.now(UTC),
                elapsed_seconds=min(time.monotonic() - self._monotonic_start, MAX_SECONDS),
                step_seconds=min(self.step_seconds, MAX_SECONDS),
                resumed_from=self.resumed_from,
                start_step=self.start_step,
                checkpoints=list(self.checkpoints),
                best_checkpoint=self.best_checkpoint,
                output=self.output,
                export=self.export,
                loss_history=self.loss_curve.snapshot(),
                eval_history=self.eval_curve.snapshot(),
            )
