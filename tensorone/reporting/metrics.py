"""The Prometheus view of the progress: read from the tracker when scraped, never set per step.

A custom collector builds the metric families from the same numbers /progress serves, so the two
endpoints cannot disagree and the training loop pays nothing for Prometheus.

Every metric's name, type and labels are in docs/trainer.md ("Metric names"), for dashboards and
for custom images that export them without ``Reporter``; tests/reporting/test_metric_names.py
keeps that table equal to what this collector exposes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tensorone.api.report import TrainerState
from tensorone.reporting.progress import ProgressTracker

PREFIX = "tensorone_trainer"


class ProgressCollector(Collector):
    """Prometheus metric families built from a tracker at scrape time."""

    def __init__(self, tracker: ProgressTracker) -> None:
        self.tracker = tracker

    def collect(self) -> Iterator[Metric]:
        report = self.tracker.report()
        gauges: list[tuple[str, str, float | None]] = [
            ("step", "Optimizer steps done.", report.step),
            ("total_steps", "Optimizer steps planned.", report.total_steps),
            ("epoch", "Epoch in progress (1-based).", report.epoch),
            ("total_epochs", "Epochs planned.", report.total_epochs),
            ("loss", "Latest training loss.", report.loss),
            ("best_loss", "Lowest training loss.", report.best_loss),
            ("eval_loss", "Latest evaluation loss.", report.eval_loss),
            ("best_eval_loss", "Lowest evaluation loss.", report.best_eval_loss),
            ("learning_rate", "Current learning rate.", report.learning_rate),
            ("tokens_per_second", "Training tokens per second, all processes.", report.tokens_per_second),
            ("samples_per_second", "Training examples per second, all processes.", report.samples_per_second),
            ("memory_bytes", "Peak accelerator memory (host RSS on CPU).", report.memory_bytes),
            ("checkpoints", "Checkpoints kept.", len(report.checkpoints)),
        ]
        for name, documentation, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=float(value))
        counters: list[tuple[str, str, float]] = [
            ("tokens", "Training tokens processed.", self.tracker.tokens_total),
            ("samples", "Training examples processed.", self.tracker.samples_total),
            ("step_seconds", "Seconds spent in training steps.", report.step_seconds),
        ]
        for name, documentation, total in counters:
            yield CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=total)
        if report.checkpoints:
            newest = report.checkpoints[-1]
            yield GaugeMetricFamily(
                f"{PREFIX}_last_checkpoint_step", "Step of the newest checkpoint.", value=newest.step
            )
            info = GaugeMetricFamily(
                f"{PREFIX}_last_checkpoint_info", "The newest checkpoint.", labels=["id", "reason"]
            )
            info.add_metric([newest.id, newest.reason], 1.0)
            yield info
        if report.eval_metrics:
            evaluation = GaugeMetricFamily(
                f"{PREFIX}_eval_metric", "The task's metrics at the latest evaluation.", labels=["name"]
            )
            for name, value in report.eval_metrics.items():
                evaluation.add_metric([name], value)
            yield evaluation
        state = GaugeMetricFamily(f"{PREFIX}_state", "1 for the trainer's current state.", labels=["state"])
        for candidate in TrainerState:
            state.add_metric([candidate.value], 1.0 if candidate == report.state else 0.0)
        yield state


def build_registry(tracker: ProgressTracker) -> CollectorRegistry:
    """A registry holding only the trainer's metrics (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProgressCollector(tracker))
    return registry
