"""The best evaluation and early stopping: which checkpoint is the best, and when a plateau ends the run.

One ``EvaluationWatch`` per run, when the job asks for early stopping or for the best weights as its
output. After each evaluation the loop gives it the watched value; the watch says whether that is an
improvement (the loop then saves a checkpoint at this step if none is due, so the best weights are
always on disk) and whether the run has gone ``patience`` evaluations without one (the loop then
ends it, phase Completed with reason EarlyStopped).

The rule, for ``mode: min`` (``max`` mirrors it): a value improves when it is below the best so far
by more than ``minDelta``; the first evaluation always improves. ``patience`` evaluations in a row
without improvement stop the run. A value that is not finite never improves.

The watch is part of a checkpoint's trainer state, so a resumed run continues counting where it
stopped, and a run resumed after it stopped early does no more steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tensorone.api.resolved import ResolvedConfig
from tensorone.api.v1alpha1.trainingjob import EVAL_LOSS_METRIC, MetricMode, OutputFrom
from tensorone.errors import ConfigurationError

# The key of the watch in a checkpoint's trainer_state.json.
WATCH_STATE_KEY = "evaluationWatch"
# The reason a run that stopped on a plateau gives (the operator shows it on the job).
EARLY_STOPPED = "EarlyStopped"


@dataclass
class EvaluationWatch:
    """The best value of the watched metric so far, where it was, and the evaluations since."""

    metric: str = EVAL_LOSS_METRIC
    mode: MetricMode = MetricMode.min
    patience: int | None = None  # None: the best is tracked, the run never stops early
    min_delta: float = 0.0
    best: float | None = None
    best_step: int | None = None
    best_checkpoint: str | None = None
    since_best: int = 0  # evaluations without improvement since the best
    stopped: bool = False  # the run ended early (set with the checkpoint of the stop)

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == MetricMode.min:
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def observe(self, value: float, *, step: int) -> bool:
        """Record an evaluation's value; whether it improved on the best."""
        if self.improves(value):
            self.best, self.best_step, self.since_best = value, step, 0
            return True
        self.since_best += 1
        return False

    @property
    def plateau(self) -> bool:
        """Whether ``patience`` evaluations in a row did not improve."""
        return self.patience is not None and self.since_best >= self.patience

    def describe(self) -> str:
        """Why the run stopped, for the report's message."""
        best = f"{self.best:.6g} at step {self.best_step}" if self.best is not None else "none"
        return (
            f"{self.metric} did not improve by more than {self.min_delta:g} for {self.since_best} evaluations "
            f"(patience {self.patience}); best {best}"
            + (f", checkpoint {self.best_checkpoint}" if self.best_checkpoint else "")
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "bestStep": self.best_step,
            "bestCheckpoint": self.best_checkpoint,
            "sinceBest": self.since_best,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Continue from a checkpoint's state (none: a checkpoint written without a watch)."""
        if not state:
            return
        self.best = state.get("best")
        self.best_step = state.get("bestStep")
        self.best_checkpoint = state.get("bestCheckpoint")
        self.since_best = int(state.get("sinceBest") or 0)
        self.stopped = bool(state.get("stopped"))


def watch_for(config: ResolvedConfig) -> EvaluationWatch | None:
    """The watch a job asks for: with ``training.earlyStopping``, or ``output.from: best`` (then by the
    evaluation loss); None otherwise."""
    early = config.training.early_stopping
    if early is not None:
        return EvaluationWatch(
            metric=early.metric, mode=MetricMode(early.mode), patience=early.patience, min_delta=early.min_delta
        )
    if config.output is not None and config.output.from_ == OutputFrom.best:
        return EvaluationWatch()
    return None


def watched_value(metric: str, eval_loss: float, metrics: Mapping[str, float]) -> float:
    """The value of ``metric`` at an evaluation: the evaluation loss, or one of the task's metrics.
    A name the task does not measure is a configuration error naming the ones it does."""
    if metric == EVAL_LOSS_METRIC:
        return eval_loss
    if metric in metrics:
        return metrics[metric]
    known = ", ".join([EVAL_LOSS_METRIC, *sorted(metrics)])
    raise ConfigurationError(
        f"early stopping watches {metric!r}, which this job's evaluation does not measure; it measures: {known}",
        field="config.training.earlyStopping.metric",
    )
