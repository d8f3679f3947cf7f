"""Experiment tracking: the job's hyperparameters, every step's metrics, the evaluations and the
checkpoints, reported to the trackers of ``config.tracking`` (MLflow, TensorBoard, Weights & Biases).

Only rank 0 tracks. ``open_tracking`` opens (or reopens) one run per tracker and returns a
``Tracking``, which the reporter tells of each step, evaluation and checkpoint as it records them
(``Reporter.add_sink``): the loop knows nothing of trackers.

One run per job, across stops and restarts: each tracker's run id is written to
``tracking.json`` in the checkpoint directory as soon as the run exists, before anything is
logged, so a resumed process (after a stop, a crash or a SIGKILL) reopens the same runs. A start
from scratch (``resumeFrom: none``), or another job on the same claim, opens new ones.

A step is logged once. After a resume from a checkpoint older than what a tracker already holds
(a crash after the last checkpoint, or ``resumeFrom`` an older checkpoint), the steps the run has
are not logged again: MLflow and W&B keep the values they have (MLflow would store a second value
for the same step, W&B would drop it). The resume is exact, so the steps done again give the same
values. TensorBoard uses its own mechanism: the new event file purges the steps after the
checkpoint, and they are written again.

A tracker that cannot be opened fails the start (with the tracker's error); one that fails later
is logged, reported once in the metrics log, and left out for the rest of the run: a tracking
server's outage does not stop a training.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from tensorone.api.report import CheckpointReport, TrainerState
from tensorone.api.resolved import ResolvedJob
from tensorone.api.v1alpha1.trainingjob import Tracking as TrackingSettings
from tensorone.reporting.client import Reporter
from tensorone.reporting.progress import StepRecord

log = logging.getLogger("trainer")

# In the checkpoint directory: the job the runs belong to, and each tracker's run.
TRACKING_STATE = "tracking.json"
# Per-step fields of the metrics log that are not metrics of their own (the rates are derived).
_NOT_METRICS = frozenset({"event", "step", "tokens", "samples", "seconds"})


class TrackerUnavailable(RuntimeError):
    """A tracker's run cannot be opened (server unreachable, credentials refused, ...). Not a
    ConfigurationError: the cause may pass, so the process exits as for any unexpected error and
    is retried, within spec.maxRestarts."""


@dataclass(frozen=True)
class Logged:
    """The last step a run already holds of the step metrics and of the evaluations (0: none)."""

    step: int = 0
    eval: int = 0


class Tracker(Protocol):
    """One tracker's run, open."""

    name: str
    logged: Logged

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def log_checkpoint(self, checkpoint: CheckpointReport, folder: Path) -> None: ...

    def finish(self, state: TrainerState) -> None: ...


@dataclass
class RunContext:
    """What a tracker opens its run with."""

    job: ResolvedJob
    run_name: str
    hyperparameters: dict[str, str | int | float | bool]
    # Optimizer steps done by the checkpoint this process resumed from; 0 when it starts.
    resumed_step: int
    # This tracker's entry of tracking.json when the run is reopened (its run id), else None.
    saved: dict[str, Any] | None
    # Writes this tracker's entry of tracking.json (at once, atomically).
    save: Callable[[dict[str, Any]], None]


def new_run_id() -> str:
    """A run id for the trackers that let the client choose it (W&B, TensorBoard's folder)."""
    return secrets.token_hex(4)


class TrackingState:
    """``tracking.json``: the job the runs belong to and each tracker's entry, rewritten atomically
    whenever an entry changes."""

    def __init__(self, path: Path, job: ResolvedJob, *, start_over: bool) -> None:
        self.path = path
        self.owner = {"namespace": job.namespace, "name": job.name, "uid": job.uid}
        self.runs: dict[str, dict[str, Any]] = {}
        if not start_over and path.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                log.warning("%s is unreadable (%s): the trackers start new runs", path, error)
                return
            if isinstance(saved, dict) and saved.get("job") == self.owner and isinstance(saved.get("runs"), dict):
                self.runs = saved["runs"]

    def entry(self, tracker: str) -> dict[str, Any] | None:
        return self.runs.get(tracker)

    def saver(self, tracker: str) -> Callable[[dict[str, Any]], None]:
        def save(entry: dict[str, Any]) -> None:
            self.runs[tracker] = entry
            self._write()

        return save

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_name(f".{self.path.name}.tmp")
        with scratch.open("w") as file:
            json.dump({"job": self.owner, "runs": self.runs}, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        scratch.replace(self.path)


def step_metrics(record: StepRecord) -> dict[str, float]:
    """A step's metrics as trackers show them: ``train/loss``, ``train/learningRate``, ... (every
    numeric field of the step's line in the metrics log), and its throughput."""
    metrics = {
        f"train/{key}": float(value)
        for key, value in record.log_fields().items()
        if key not in _NOT_METRICS and isinstance(value, int | float) and not isinstance(value, bool)
    }
    if record.seconds > 0:
        metrics["train/tokensPerSecond"] = record.tokens / record.seconds
        metrics["train/samplesPerSecond"] = record.samples / record.seconds
    return metrics


def hyperparameters(job: ResolvedJob, *, total_steps: int, world_size: int) -> dict[str, str | int | float | bool]:
    """The job's configuration as flat ``section.field`` parameters (lists as text), without the
    tracking settings, plus what the run was planned as."""
    config = job.config.to_wire()
    config.pop("tracking", None)
    flat: dict[str, str | int | float | bool] = {
        "modelType": str(job.model_type),
        "dataset": job.dataset_name,
        "datasetFormat": str(job.dataset.format),
        "totalSteps": total_steps,
        "worldSize": world_size,
    }

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list):
            flat[prefix] = ",".join(map(str, value))
        else:
            flat[prefix] = value

    add("", config)
    return flat


@dataclass
class Tracking:
    """The job's trackers, as one sink of the reporter: each step, evaluation and checkpoint goes
    to every tracker that has not logged it yet."""

    trackers: list[Tracker]
    checkpoint_dir: Path
    reporter: Reporter | None = None
    failed: dict[str, str] = field(default_factory=dict)

    def step(self, record: StepRecord) -> None:
        metrics = step_metrics(record)
        for tracker in self._working():
            if record.step > tracker.logged.step:
                self._call(tracker, "step", partial(tracker.log_step, record.step, metrics))

    def eval(self, step: int, loss: float, metrics: dict[str, float]) -> None:
        values = {"eval/loss": loss, **{f"eval/{name}": value for name, value in metrics.items()}}
        for tracker in self._working():
            if step > tracker.logged.eval:
                self._call(tracker, "eval", partial(tracker.log_eval, step, values))

    def checkpoint(self, saved: CheckpointReport) -> None:
        folder = self.checkpoint_dir / saved.id
        for tracker in self._working():
            self._call(tracker, "checkpoint", partial(tracker.log_checkpoint, saved, folder))

    def finish(self, state: TrainerState) -> None:
        for tracker in self._working():
            self._call(tracker, "finish", partial(tracker.finish, state))

    def _working(self) -> list[Tracker]:
        return [t for t in self.trackers if t.name not in self.failed]

    def _call(self, tracker: Tracker, what: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as error:
            # A tracker is an observer: its failure costs its own record, never the training.
            message = f"{type(error).__name__}: {str(error).strip()[:500]}"
            self.failed[tracker.name] = message
            log.warning(
                "tracking to %s failed (%s: %s); it is left out for the rest of the run", tracker.name, what, message
            )
            if self.reporter is not None:
                self.reporter.event("trackingFailed", tracker=tracker.name, action=what, error=message)


def open_tracking(
    job: ResolvedJob, settings: TrackingSettings, *, resumed_step: int, total_steps: int, world_size: int
) -> Tracking:
    """Open (or reopen) the run of every tracker in ``settings``; rank 0 only."""
    checkpoint_dir = Path(job.checkpoint_dir)
    state = TrackingState(checkpoint_dir / TRACKING_STATE, job, start_over=job.resume_from == "none")
    params = hyperparameters(job, total_steps=total_steps, world_size=world_size)
    run_name = settings.run_name or job.name

    def context(tracker: str) -> RunContext:
        return RunContext(
            job=job,
            run_name=run_name,
            hyperparameters=params,
            resumed_step=resumed_step,
            saved=state.entry(tracker),
            save=state.saver(tracker),
        )

    openers: list[tuple[str, Callable[[RunContext], Tracker]]] = []
    if settings.mlflow is not None:
        from trainer.tracking.mlflow_tracker import MlflowTracker

        openers.append(("mlflow", partial(MlflowTracker.open, settings.mlflow)))
    if settings.tensorboard is not None:
        from trainer.tracking.tensorboard_tracker import TensorBoardTracker

        openers.append(("tensorboard", partial(TensorBoardTracker.open, settings.tensorboard)))
    if settings.wandb is not None:
        from trainer.tracking.wandb_tracker import WandbTracker

        openers.append(("wandb", partial(WandbTracker.open, settings.wandb)))
    trackers: list[Tracker] = []
    for name, opener in openers:
        try:
            trackers.append(opener(context(name)))
        except Exception as error:
            for opened in trackers:
                opened.finish(TrainerState.failed)
            raise TrackerUnavailable(
                f"config.tracking.{name}: cannot open the run: {type(error).__name__}: {str(error).strip()[:1000]}"
            ) from error
        log.info(
            "tracking to %s%s",
            name,
            f" (continuing after step {trackers[-1].logged.step})" if trackers[-1].logged.step else "",
        )
    return Tracking(trackers, checkpoint_dir)


def start_tracking(
    job: ResolvedJob, reporter: Reporter, *, is_main: bool, resumed_step: int, total_steps: int, world_size: int
) -> None:
    """When the job has trackers and this is rank 0, open their runs and have the reporter tell them
    of everything it records from now on."""
    if job.config.tracking is None or not is_main:
        return
    tracking = open_tracking(
        job, job.config.tracking, resumed_step=resumed_step, total_steps=total_steps, world_size=world_size
    )
    tracking.reporter = reporter
    reporter.add_sink(tracking)
