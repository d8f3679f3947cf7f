"""Kubernetes Events about TrainingJobs: posted through kopf, and limited per job so that a fast
job (an epoch a second) cannot flood the API server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from tensorone.api.v1alpha1 import Reason

JobKey = tuple[str, str]
EventPoster = Callable[[Mapping[str, Any], str, str, str], None]


class EventType(StrEnum):
    """The type of a Kubernetes Event."""

    Normal = "Normal"
    Warning = "Warning"


Event = tuple[EventType, str, str]  # (type, reason, message)
# Reported once per trainer process (its start), so no flood: posted whatever the limiter says.
UNLIMITED_REASONS = frozenset({Reason.TrainingStarted, Reason.TrainingResumed})


class EventLimiter:
    """Per job and event type, at most ``burst`` events per ``window`` seconds, and no repeat of the
    same reason within ``repeat`` seconds. Every reason is limited (a trainer restarting in a loop
    would otherwise post TrainingStarted on every poll); warnings have a budget of their own, so a
    burst of normal news never hides one."""

    def __init__(self, *, burst: int = 10, window: float = 60.0, repeat: float = 10.0) -> None:
        self.burst = burst
        self.window = window
        self.repeat = repeat
        self._sent: dict[tuple[str, str], list[tuple[float, str, str]]] = {}

    def allow(self, job: tuple[str, str], reason: str, kind: str, now: float) -> bool:
        """Whether an event may be posted now; records it when it may."""
        sent = [(t, k, r) for t, k, r in self._sent.get(job, []) if now - t < self.window]
        self._sent[job] = sent
        if sum(1 for _, k, _ in sent if k == kind) >= self.burst:
            return False
        if any(r == reason and now - t < self.repeat for t, _, r in sent):
            return False
        sent.append((now, kind, reason))
        return True

    def forget(self, job: tuple[str, str]) -> None:
        """Drop what is kept about a deleted job."""
        self._sent.pop(job, None)


class Events:
    """Posts a job's Events: every status transition, and the trainer's news within the limits."""

    def __init__(self, post: EventPoster, limiter: EventLimiter | None = None) -> None:
        self._post = post
        self.limiter = limiter or EventLimiter()

    def forget(self, key: JobKey) -> None:
        """Drop what is kept about a deleted job."""
        self.limiter.forget(key)

    def post(self, job: Mapping[str, Any], events: Iterable[Event]) -> None:
        """Post each event (status transitions: rare, and each one matters)."""
        for kind, reason, message in events:
            self._post(job, kind, reason, message)

    def post_limited(self, job: Mapping[str, Any], events: Iterable[Event]) -> None:
        """Post the events the limiter lets through now."""
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        for kind, reason, message in events:
            # A run's start is posted once per trainer process: never crowded out by its news.
            if reason in UNLIMITED_REASONS or self.limiter.allow(key, reason, kind, time.monotonic()):
                self._post(job, kind, reason, message)
