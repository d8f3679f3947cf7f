"""Report training progress the TensorOne way, from the TensorOne trainer or from any custom image.

The operator reads a running job's progress from its rank-0 process at ``GET /progress`` (JSON,
``tensorone.api.report.ProgressReport``) on the report port, Prometheus scrapes ``GET /metrics`` on
the same port, and when the pod ends the operator reads the final state from the pod's
termination message. ``Reporter`` does all three, plus a JSONL metrics log; it needs only
prometheus-client and pydantic (``pip install 'tensorone-training[report]'``; no torch, no
trainer). A custom training script reports like this::

    from tensorone.reporting.client import Reporter, CheckpointReport

    with Reporter(metrics_log="/checkpoints/metrics.jsonl") as reporter:   # serves on port 9400
        reporter.plan(total_epochs=3, total_steps=3000)
        reporter.running()
        for step in range(1, 3001):
            loss = train_one_step()
            reporter.step(step, loss, epoch=1 + (step - 1) // 1000, learning_rate=lr, tokens=4096)
            if step % 1000 == 0:
                save_my_checkpoint(step)
                reporter.checkpoint(CheckpointReport(id=f"ckpt-step-{step}", epoch=step // 1000,
                                                     step=step, loss=loss, created_at=now(), size_bytes=size))
    # leaving the block marks the run completed (or failed, on an exception) and writes the
    # termination message; call reporter.finish(TrainerState.stopped) yourself after a SIGTERM.

The port comes from ``TENSORONE_REPORT_PORT`` when set (the operator sets it to the job's
``config.custom.progressPort``), else 9400. Recording a step costs microseconds: its metrics-log
line is written in a batch at least once a second, and the report is built only when asked for.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

from tensorone.api.report import (
    DEFAULT_REPORT_HOST,
    DEFAULT_REPORT_PORT,
    DEFAULT_TERMINATION_LOG,
    MAX_DRAIN_SECONDS,
    MAX_METRIC_VALUE,
    REPORT_DRAIN_ENV,
    REPORT_HOST_ENV,
    REPORT_PORT_ENV,
    TERMINATION_LOG_ENV,
    CheckpointReport,
    ExportReport,
    OutputReport,
    ProgressReport,
    TrainerState,
)
from tensorone.api.v1alpha1.trainingjob import EVAL_METRIC_NAME_PATTERN, MAX_EVAL_METRICS
from tensorone.reporting.metric_ring import MetricRing
from tensorone.reporting.metrics import build_registry
from tensorone.reporting.progress import ProgressTracker, StepRecord
from tensorone.reporting.server import ReportServer
from tensorone.reporting.trainer_status import TrainerStatusPoster

__all__ = ["CheckpointReport", "ProgressReport", "Reporter", "TrainerState", "termination_log_path"]

LOG_FLUSH_SECONDS = 1.0  # the metrics log's step lines reach the file at least this often


class ReportSink(Protocol):
    """What else hears of the run as the reporter records it (the trainer's experiment trackers): each
    step, evaluation and saved checkpoint, then the end. Called on the training thread."""

    def step(self, record: StepRecord) -> None: ...

    def eval(self, step: int, loss: float, metrics: dict[str, float]) -> None: ...

    def checkpoint(self, saved: CheckpointReport) -> None: ...

    def finish(self, state: TrainerState) -> None: ...


def termination_log_path() -> Path | None:
    """Where the final summary goes: ``$TENSORONE_TERMINATION_LOG``, else the pod's
    ``/dev/termination-log`` when it exists and is writable, else nowhere."""
    configured = os.environ.get(TERMINATION_LOG_ENV)
    if configured:
        return Path(configured)
    default = Path(DEFAULT_TERMINATION_LOG)
    if default.exists() and os.access(default, os.W_OK):
        return default
    return None


def drain_seconds() -> float:
    """``$TENSORONE_REPORT_DRAIN_SECONDS`` (0 when unset or not a number; at most MAX_DRAIN_SECONDS)."""
    try:
        seconds = float(os.environ.get(REPORT_DRAIN_ENV) or 0)
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), MAX_DRAIN_SECONDS) if math.isfinite(seconds) else 0.0


def host_peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Reporter:
    """Progress reporting of one process: endpoints, metrics log, termination message.

    ``serve`` False serves nothing (the other ranks do not); the process that serves also posts its
    report to Kubeflow Trainer's status endpoint when the pod has one (``KUBEFLOW_TRAINER_SERVER_URL``,
    see ``tensorone.reporting.trainer_status``); ``port`` None means
    ``$TENSORONE_REPORT_PORT`` or 9400, and 0 picks a free port; the address served is
    ``$TENSORONE_REPORT_HOST`` (the pod IP in a pod) or loopback. ``metrics_log`` None writes no
    log. ``termination_log`` "auto" means ``termination_log_path()``; None writes none.
    """

    def __init__(
        self,
        *,
        serve: bool = True,
        port: int | None = None,
        metrics_log: Path | str | None = None,
        termination_log: Path | str | Literal["auto"] | None = "auto",
        memory: Callable[[], int | None] | None = host_peak_rss_bytes,
        progress_bar: bool = False,
    ) -> None:
        if port is None:
            port = int(os.environ.get(REPORT_PORT_ENV) or DEFAULT_REPORT_PORT)
        self.tracker = ProgressTracker(memory=memory)
        self.ring = MetricRing()
        self._serve = serve
        self._requested_port = port
        self._host = os.environ.get(REPORT_HOST_ENV) or DEFAULT_REPORT_HOST
        self._server: ReportServer | None = None
        self._log: IO[str] | None = None
        self._log_path = Path(metrics_log) if metrics_log is not None else None
        self._pending: list[tuple[float, dict[str, Any] | StepRecord]] = []
        self._flushed = 0.0
        self._termination_log = termination_log_path() if termination_log == "auto" else termination_log
        self._progress_bar = progress_bar
        self._bar: Any = None
        self._sinks: list[ReportSink] = []
        self._status_poster: TrainerStatusPoster | None = None
        self.finished: ProgressReport | None = None

    # Lifecycle -----------------------------------------------------------------------------

    def start(self) -> Reporter:
        """Open the metrics log and start serving (idempotent)."""
        if self._log_path is not None and self._log is None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_path.open("a", encoding="utf-8")
        if self._server is None and self._serve:
            self._server = ReportServer(
                self.tracker,
                build_registry(self.tracker),
                ring=self.ring,
                host=self._host,
                port=self._requested_port,
            )
            self._server.start()
        if self._status_poster is None and self._serve:
            self._status_poster = TrainerStatusPoster.from_env(self.tracker.report)
            if self._status_poster is not None:
                self._status_poster.start()
        return self

    @property
    def address(self) -> tuple[str, int] | None:
        """The address actually served (host, port), or None."""
        return self._server.address if self._server is not None else None

    @property
    def port(self) -> int | None:
        """The port actually served (useful with port 0), or None."""
        return self._server.port if self._server is not None else None

    def close(self) -> None:
        """Stop serving and close the log. A run that ended (not stopped) first serves until its
        last metric records were read, for up to ``$TENSORONE_REPORT_DRAIN_SECONDS``."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        ended = self.finished is not None and self.finished.state != TrainerState.stopped
        if self._server is not None and ended:
            self.ring.wait_read(drain_seconds())
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._status_poster is not None:
            self._status_poster.close()
            self._status_poster = None
        if self._log is not None:
            self._flush(time.time())
            self._log.close()
            self._log = None

    def add_sink(self, sink: ReportSink) -> None:
        """Tell ``sink`` of every step, evaluation and checkpoint recorded from now on, and of the end."""
        self._sinks.append(sink)

    def __enter__(self) -> Reporter:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.finished is None:
            if error is None:
                self.finish(TrainerState.completed)
            else:
                self.finish(TrainerState.failed, reason=type(error).__name__, message=str(error)[:1000])
        self.close()

    # What happened ---------------------------------------------------------------------------

    def plan(self, *, total_epochs: int, total_steps: int, step: int = 0) -> None:
        """How long the run will be, and the step it starts from when resumed (reported until the
        first step is recorded, so a resumed run never shows step 0)."""
        self.tracker.set_plan(total_epochs=total_epochs, total_steps=total_steps, step=step)
        if self._progress_bar and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, file=sys.stderr)

    def running(self, *, resumed_from: str | None = None) -> None:
        self.tracker.resumed_from = resumed_from
        self.tracker.set_state(TrainerState.running)
        self._write({"event": "start", "resumedFrom": resumed_from, "step": self.tracker.step})

    def step(
        self,
        step: int,
        loss: float,
        *,
        epoch: int | None = None,
        learning_rate: float | None = None,
        tokens: int = 0,
        samples: int = 0,
        seconds: float = 0.0,
        grad_norm: float | None = None,
    ) -> None:
        """One optimizer step done (``tokens`` and ``samples`` over every process; ``grad_norm``
        the total gradient norm before clipping)."""
        record = StepRecord(step, loss, epoch, learning_rate, tokens, samples, seconds, grad_norm)
        self.tracker.record_step(record)
        self.ring.step(
            step,
            time=time.time(),
            epoch=epoch,
            loss=loss,
            learning_rate=learning_rate,
            grad_norm=grad_norm,
            tokens=tokens,
            samples=samples,
            seconds=seconds,
        )
        self._write(record, flush=False)
        for sink in self._sinks:
            sink.step(record)
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            self._bar.update(step - self._bar.n)

    def eval(
        self, step: int, loss: float, metrics: dict[str, float] | None = None, *, perplexity: float | None = None
    ) -> None:
        """An evaluation loss measured after ``step``, with the task's metrics (mAP, ...) when it has any,
        and the perplexity of a language model (left out of the report beyond ``MAX_METRIC_VALUE``).

        A metric name must match ``EVAL_METRIC_NAME_PATTERN`` and a value be finite, at most
        ``MAX_METRIC_VALUE`` in magnitude, and there may be at most ``MAX_EVAL_METRICS``: the report
        carries nothing the operator would refuse."""
        if metrics is not None:
            _check_metrics(metrics)
        self.tracker.record_eval(step, loss, metrics, perplexity=perplexity)
        self.ring.eval(step, loss, time=time.time(), epoch=self.tracker.epoch or None)
        line: dict[str, Any] = {"event": "eval", "step": step, "evalLoss": loss}
        if perplexity is not None:
            line["perplexity"] = perplexity
        if metrics:
            line["metrics"] = dict(metrics)
        self._write(line)
        for sink in self._sinks:
            sink.eval(step, loss, metrics or {})

    def checkpoint(self, saved: CheckpointReport) -> None:
        """A checkpoint was saved (appended to the list)."""
        self.checkpoints([*self.tracker.checkpoints, saved], saved=saved)

    def checkpoints(self, kept: list[CheckpointReport], *, saved: CheckpointReport | None = None) -> None:
        """The checkpoints kept now, oldest first (after retention); ``saved`` is a new one, logged."""
        self.tracker.set_checkpoints(kept)
        if saved is not None:
            self._write({"event": "checkpoint", **saved.to_wire()})
            for sink in self._sinks:
                sink.checkpoint(saved)

    def best_checkpoint(self, checkpoint_id: str | None) -> None:
        """The checkpoint of the best evaluation so far (kept whatever the retention)."""
        self.tracker.set_best_checkpoint(checkpoint_id)

    def output(self, output: OutputReport) -> None:
        """The final model was written."""
        self.tracker.set_output(output)
        self._write({"event": "output", **output.to_wire()})

    def export(self, export: ExportReport) -> None:
        """The upload of spec.output started, ended, or failed."""
        self.tracker.set_export(export)
        self._write({"event": "export", **export.to_wire()})

    def event(self, name: str, **fields: Any) -> None:
        """Any other event worth a line in the metrics log (the data summary, for instance)."""
        self._write({"event": name, **fields})

    def set_state(self, state: TrainerState, *, reason: str | None = None, message: str | None = None) -> None:
        """A state that is not final (stopping, for instance)."""
        self.tracker.set_state(state, reason=reason, message=message)

    def finish(self, state: TrainerState, *, reason: str | None = None, message: str | None = None) -> ProgressReport:
        """The run ended: record the final state, log it and write the termination message."""
        self.tracker.set_state(state, reason=reason, message=message)
        report = self.tracker.report()
        self.finished = report
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._write({"event": "end", "state": str(state), "reason": reason, "message": message, "step": report.step})
        if self._termination_log is not None:
            try:
                Path(self._termination_log).write_text(report.termination_message())
            except OSError as error:
                print(
                    f"trainer: cannot write the termination message to {self._termination_log}: {error}",
                    file=sys.stderr,
                )
        if self._status_poster is not None:
            self._status_poster.finish(report)
        sinks, self._sinks = self._sinks, []  # told of the end once
        for sink in sinks:
            sink.finish(state)
        return report

    def _write(self, record: dict[str, Any] | StepRecord, *, flush: bool = True) -> None:
        """A line for the metrics log, stamped with the time now. Steps are written in batches, at
        least every LOG_FLUSH_SECONDS (formatting and writing a line costs more than the rest of
        recording a step, and far less when done for many at once); any other event at once."""
        if self._log is None:
            return
        now = time.time()
        self._pending.append((now, record))
        if flush or now - self._flushed >= LOG_FLUSH_SECONDS:
            self._flush(now)

    def flush(self) -> None:
        """Write the metrics log's pending lines now. The trainer calls it before it saves a
        checkpoint, so that a process killed once the checkpoint exists has logged every step the
        checkpoint holds (the run resumed from it logs the later ones)."""
        self._flush(time.time())

    def _flush(self, now: float) -> None:
        if self._log is None or not self._pending:
            return
        lines = []
        for stamped, record in self._pending:
            fields = record.log_fields() if isinstance(record, StepRecord) else record
            lines.append(json.dumps({**fields, "time": round(stamped, 3)}, separators=(",", ":")) + "\n")
        self._pending.clear()
        self._log.writelines(lines)
        self._log.flush()
        self._flushed = now


def _check_metrics(metrics: dict[str, float]) -> None:
    """Raise ValueError naming the first metric the report could not carry."""
    if len(metrics) > MAX_EVAL_METRICS:
        raise ValueError(f"{len(metrics)} evaluation metrics; at most {MAX_EVAL_METRICS}")
    for name, value in metrics.items():
        if not re.match(EVAL_METRIC_NAME_PATTERN, name):
            raise ValueError(f"evaluation metric name {name!r} must match {EVAL_METRIC_NAME_PATTERN}")
        if not math.isfinite(value) or abs(value) > MAX_METRIC_VALUE:
            raise ValueError(f"evaluation metric {name} is {value}; allowed: finite, at most {MAX_METRIC_VALUE:g}")
