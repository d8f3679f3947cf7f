"""Writes a TrainingJob's status: only when it changed, and with the Events that say what changed.

A running job's running time, cost and estimates move with the clock alone; a status in which only
those moved is written at most every ``VOLATILE_WRITE_SECONDS``. A status in which only the progress
moved (step, metrics, curves) is written within the operator's budget of progress writes
(``progressWritesPerSecond`` over all running jobs): with a few hundred jobs at every poll, with
thousands less often, so the API server and every watcher of TrainingJobs get a bounded stream of
writes. A change of phase, condition, message or checkpoints is written at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tensorone.api import API_VERSION, TRAININGJOBS
from tensorone.api.v1alpha1 import Phase
from tensorone_operator.budget import budget_events, spent
from tensorone_operator.events import Events
from tensorone_operator.kube import KubeApi
from tensorone_operator.metrics import SPEND, PhaseBook
from tensorone_operator.observed import ObservedJob
from tensorone_operator.restarts import preemption_events
from tensorone_operator.status import transitions
from tensorone_operator.trainer_reports import TrainerReports

JobKey = tuple[str, str]
VOLATILE_WRITE_SECONDS = 30.0
_VOLATILE = ("resourceUsage", "estimatedCompletion", "estimatedCost", "lastReportTime")
_PROGRESS = ("progress", "metrics", "lossHistory", "evalLossHistory")


def material(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status without what moves with the clock alone (running time, cost, estimates)."""
    kept = {k: v for k, v in status.items() if k not in _VOLATILE}
    progress = dict(kept.get("progress") or {})
    progress.pop("elapsedTime", None)
    progress.pop("remainingTime", None)
    if progress:
        kept["progress"] = progress
    return kept


def essential(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status without the progress and what moves with the clock alone: phase, conditions,
    message, checkpoints and the rest, written at once when they change."""
    return {k: v for k, v in status.items() if k not in _VOLATILE and k not in _PROGRESS}


class StatusWriter:
    """Patches the status subresource when the desired status differs from the stored one."""

    def __init__(
        self,
        api: KubeApi,
        reports: TrainerReports,
        events: Events,
        phases: PhaseBook,
        *,
        progress_writes_per_second: float = 100.0,
        currency: str = "USD",
    ) -> None:
        self.api = api
        self.progress_writes_per_second = progress_writes_per_second
        self.currency = currency
        self.reports = reports
        self.events = events
        self.phases = phases
        # When each job's status was last written.
        self._written: dict[JobKey, float] = {}

    def forget(self, key: JobKey) -> None:
        """Drop what is kept about a deleted job."""
        self._written.pop(key, None)

    def progress_interval(self) -> float:
        """Seconds between two writes of a running job's progress alone, within the budget."""
        return self.phases.count(Phase.Running) / self.progress_writes_per_second

    def due(self, job: ObservedJob, desired: Mapping[str, Any]) -> bool:
        """Whether ``desired`` is worth writing now: its phase, conditions, message or checkpoints
        changed; or only its progress did and the job's share of the progress budget allows it; or
        only the clock-driven fields did, last written ``VOLATILE_WRITE_SECONDS`` ago."""
        if desired == job.status:
            return False
        if essential(desired) != essential(job.status):
            return True
        since = time.monotonic() - self._written.get(job.key, 0.0)
        if material(desired) != material(job.status):
            return since >= self.progress_interval()
        return since >= VOLATILE_WRITE_SECONDS

    async def write(self, job: ObservedJob, desired: dict[str, Any]) -> dict[str, Any]:
        """Patch the status when it changed, post Events for what changed; the status now stored."""
        key = job.key
        current = dict(job.status)
        self.phases.record(*key, desired.get("phase"))
        if desired == current:
            return current
        patch = {"status": {name: desired.get(name) for name in set(desired) | set(current)}}
        await self.api.merge_patch(API_VERSION, TRAININGJOBS, *key, patch, subresource="status")
        self._written[key] = time.monotonic()
        self.events.post_limited(job.body, self.reports.news(key, current))
        self.events.post(job.body, transitions(current, desired))
        self.events.post(job.body, budget_events(job.spec, current, desired, self.currency))
        self.events.post(job.body, preemption_events(current, desired))
        cost = spent(desired) - spent(current)
        if cost > 0:
            SPEND.labels(namespace=key[0], currency=self.currency).inc(cost)
        return desired
