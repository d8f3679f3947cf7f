"""A training run's curves: training loss, evaluation loss and learning rate by optimizer step.

Two sources. A TrainingJob's status keeps the loss and evaluation-loss curves downsampled to at
most ``MAX_HISTORY_POINTS`` points each, and only the current learning rate
(:func:`curves_of_status`). The trainer's metrics log (``metrics.jsonl``, docs/trainer.md) has
every step: its loss and learning rate, and every evaluation (:func:`read_metrics_log`); ``t1
train`` writes it under ``runs/<job>/checkpoints/``, the pods on the job's checkpoint claim.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorone.api.resolved import METRICS_LOG
from tensorone.api.v1alpha1.trainingjob import TrainingJobStatus
from tensorone.errors import ConfigurationError, DataError


@dataclass(frozen=True)
class Curve:
    """One series: a value per optimizer step, in step order."""

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]

    @classmethod
    def of(cls, name: str, points: Iterable[tuple[int, float]]) -> Curve:
        """The curve of (step, value) points: a step given twice keeps its last value (a step run
        again after a resume), and a value that is not finite (a diverged step) is left out."""
        by_step = {step: value for step, value in points if math.isfinite(value)}
        ordered = sorted(by_step.items())
        return cls(name, tuple(step for step, _ in ordered), tuple(value for _, value in ordered))

    def __bool__(self) -> bool:
        return bool(self.steps)


@dataclass(frozen=True)
class TrainingCurves:
    """The curves of one run: its name (the job's, or the local run folder's) and where they come
    from."""

    name: str
    source: str
    loss: Curve
    eval_loss: Curve
    learning_rate: Curve
    # The learning rate at the last report, when only that is known (a job's status).
    current_learning_rate: float | None = None


def curves_of_status(job_name: str, status: Mapping[str, Any]) -> TrainingCurves:
    """The curves a TrainingJob's status keeps (``lossHistory``, ``evalLossHistory``, and the
    current learning rate of ``metrics``)."""
    parsed = TrainingJobStatus.model_validate(status or {})
    return TrainingCurves(
        name=job_name,
        source=f"job {job_name} (its status)",
        loss=Curve.of("loss", ((p.step, p.loss) for p in parsed.loss_history or [])),
        eval_loss=Curve.of("eval loss", ((p.step, p.loss) for p in parsed.eval_loss_history or [])),
        learning_rate=Curve("learning rate", (), ()),
        current_learning_rate=parsed.metrics.learning_rate if parsed.metrics else None,
    )


def metrics_log_path(run: Path) -> Path:
    """The metrics log of a local run: ``run`` is the folder ``t1 train`` writes (``runs/<job>``,
    or its ``--output``), the checkpoint folder inside it, or the log file itself."""
    for candidate in (run / "checkpoints" / METRICS_LOG, run / METRICS_LOG, run):
        if candidate.is_file():
            return candidate
    raise ConfigurationError(
        f"no metrics log at {run}: give the folder t1 train writes (runs/<job>, with checkpoints/{METRICS_LOG} "
        f"in it), a checkpoint folder, or a {METRICS_LOG} file",
        field="--run",
    )


def read_metrics_log(path: Path) -> TrainingCurves:
    """Every step's loss and learning rate and every evaluation in a metrics log. A line that is
    not a JSON object (the last one of a process killed while writing it) is skipped."""
    losses: list[tuple[int, float]] = []
    rates: list[tuple[int, float]] = []
    evaluations: list[tuple[int, float]] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            record = _record(line)
            if record is None or not isinstance(record.get("step"), int):
                continue
            step = record["step"]
            if record.get("event") == "step" and _is_number(record.get("loss")):
                losses.append((step, float(record["loss"])))
                if _is_number(record.get("learningRate")):
                    rates.append((step, float(record["learningRate"])))
            elif record.get("event") == "eval" and _is_number(record.get("evalLoss")):
                evaluations.append((step, float(record["evalLoss"])))
    if not losses:
        raise DataError(f"{path} has no step lines: it is not a metrics log of a run that trained", field="--run")
    # runs/<job>/checkpoints/metrics.jsonl is the run <job>; a log elsewhere, its folder's.
    folder = path.resolve().parent
    return TrainingCurves(
        name=folder.parent.name if folder.name == "checkpoints" else folder.name,
        source=str(path),
        loss=Curve.of("loss", losses),
        eval_loss=Curve.of("eval loss", evaluations),
        learning_rate=Curve.of("learning rate", rates),
    )


def _record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
