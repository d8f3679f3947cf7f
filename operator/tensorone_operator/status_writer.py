"""Writes a TrainingJob's status: only when it changed, and with the Events that say what changed.

A running job's running time, cost and estimates move with the clock alone; a status in which only
those moved is written at most every ``VOLATILE_WRITE_SECONDS``, to spare the API server (a change
of step, phase or condition is written at once).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tensorone.api import API_VERSION
from tensorone_operator.events import Events
from tensorone_operator.kube import KubeApi
from tensorone_operator.metrics import PhaseBook
from tensorone_operator.observed import ObservedJob
from tensorone_operator.status import transitions
from tensorone_operator.trainer_reports import TrainerReports

JobKey = tuple[str, str]
VOLATILE_WRITE_SECONDS = 30.0
_VOLATILE = ("resourceUsage", "estimatedCompletion", "estimatedCost", "lastReportTime")


def material(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status without what moves with the clock alone (running time, cost, estimates)."""
    kept = {k: v for k, v in status.items() if k not in _VOLATILE}
    progress = dict(kept.get("progress") or {})
    progress.pop("elapsedTime", None)
    progress.pop("remainingTime", None)
    if progress:
        kept["progress"] = progress
    return kept


class StatusWriter:
    """Patches the status subresource when the desired status differs from the stored one."""

    def __init__(self, api: KubeApi, reports: TrainerReports, events: Events, phases: PhaseBook) -> None:
        self.api = api
        self.reports = reports
        self.events = events
        self.phases = phases
        # When each job's status was last written.
        self._written: dict[JobKey, float] = {}

    def forget(self, key: JobKey) -> None:
        """Drop what is kept about a deleted job."""
        self._written.pop(key, None)

    def due(self, job: ObservedJob, desired: Mapping[str, Any]) -> bool:
        """Whether ``desired`` is worth writing now: it differs from the stored status in more than
        the clock-driven fields, or those were last written ``VOLATILE_WRITE_SECONDS`` ago."""
        if desired == job.status:
            return False
        if material(desired) != material(job.status):
            return True
        return time.monotonic() - self._written.get(job.key, 0.0) >= VOLATILE_WRITE_SECONDS

    async def write(self, job: ObservedJob, desired: dict[str, Any]) -> dict[str, Any]:
        """Patch the status when it changed, post Events for what changed; the status now stored."""
        key = job.key
        current = dict(job.status)
        self.phases.record(*key, desired.get("phase"))
        if desired == current:
            return current
        patch = {"status": {name: desired.get(name) for name in set(desired) | set(current)}}
        await self.api.merge_patch(API_VERSION, "trainingjobs", *key, patch, subresource="status")
        self._written[key] = time.monotonic()
        self.events.post_limited(job.body, self.reports.news(key, current))
        self.events.post(job.body, transitions(current, desired))
        return desired
