"""The operator's own Prometheus metrics (prometheus-client), served at :8080/metrics.

Names are prefixed ``tensorone_operator_``. Jobs by phase is a gauge the reconciler keeps from the
phases it writes, so it is exact for the jobs this operator instance has seen since it started
(every job is seen at start-up: kopf's resume handlers run for all of them).
"""

from __future__ import annotations

from collections import Counter as Counter_

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "tensorone_operator_reconciles_total",
    "TrainingJob reconciles, by result (ok, waiting, error).",
    ["result"],
)
ERRORS = Counter(
    "tensorone_operator_errors_total",
    "Errors met while reconciling, by reason (an error code such as DATASET_NOT_FOUND, or ApiError).",
    ["reason"],
)
RECONCILE_SECONDS = Histogram(
    "tensorone_operator_reconcile_duration_seconds",
    "Time spent in one reconcile of a TrainingJob.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FOLLOWED_JOBS = Gauge("tensorone_operator_followed_jobs", "TrainingJobs the follow loop ticks (not finished).")
FOLLOW_ROUND_SECONDS = Histogram(
    "tensorone_operator_follow_round_seconds",
    "Time one round of the follow loop takes: progressPollSeconds while every tick finds a free slot.",
    buckets=(1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0),
)
JOBS = Gauge("tensorone_operator_jobs", "TrainingJobs by phase.", ["phase"])
SPEND = Counter(
    "tensorone_operator_spend",
    "Money spent by TrainingJobs (status.resourceUsage.cost, added up as it is written), by namespace, "
    "in the GPU catalog's currency: rate() and increase() give the spending of a namespace over time.",
    ["namespace", "currency"],
)
CHILDREN_CREATED = Counter(
    "tensorone_operator_children_created_total",
    "Objects the operator created for TrainingJobs, by kind.",
    ["kind"],
)


class PhaseBook:
    """The phase of every known job, kept in step with the JOBS gauge."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._counts: Counter_[str] = Counter_()

    def record(self, namespace: str, name: str, phase: str | None) -> None:
        """Note a job's phase (None when the job is gone)."""
        key = (namespace, name)
        previous = self._phases.pop(key, None)
        if previous is not None:
            JOBS.labels(phase=previous).dec()
            self._counts[previous] -= 1
        if phase is not None:
            self._phases[key] = phase
            JOBS.labels(phase=phase).inc()
            self._counts[phase] += 1

    def count(self, phase: str) -> int:
        """How many known jobs are in that phase."""
        return self._counts[phase]


def serve_metrics(port: int) -> None:
    """Serve /metrics on 0.0.0.0:port from a daemon thread (0 disables)."""
    if port:
        start_http_server(port)
