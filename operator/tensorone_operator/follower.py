"""The follow loop: one loop for every TrainingJob that is not finished, not one task per job.

Every ``progressPollSeconds`` the loop gives each followed job one tick (``Reconciler.follow``):
a job with its child polls the rank-0 trainer and mirrors the status, a job without one is checked
again (what holds it may have changed without an event the operator sees).

What the loop knows of a job is a compact copy kept from the TrainingJob watch (``job_seen``): the
metadata the reconciler reads, the spec and the status, as one JSON document, compressed (a
running job's status, its curves above all, compresses about fourfold). kopf would otherwise
keep the whole body of every job for as long as a per-job daemon lives (managedFields, kubectl's
and kopf's annotations: copies of the spec), which made the operator's memory grow with the
number of jobs.

A job held by a failed check is checked again with a growing interval, up to
``HELD_RECHECK_MAX_SECONDS`` (a job refused by the API server would otherwise send the same
refused request every tick); a change of the job starts the interval over, and the Dataset and
Node watches wake a waiting job at once whatever its interval. Ticks run concurrently, at most
``CONCURRENT_TICKS`` at a time, spread over the period, and a job whose last tick has not ended (a trainer slow to answer)
is skipped, so one slow job never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tensorone.api.v1alpha1 import TERMINAL_PHASES
from tensorone_operator.indexes import indexes_of, packed, slim_metadata, unpacked
from tensorone_operator.metrics import FOLLOW_ROUND_SECONDS, FOLLOWED_JOBS
from tensorone_operator.reconcile import Reconciler

logger = logging.getLogger("tensorone_operator")

JobKey = tuple[str, str]
HELD_RECHECK_MAX_SECONDS = 60.0
CONCURRENT_TICKS = 64
# The ticks of a round are started in slices at least this far apart.
PACE_SECONDS = 0.02
# Freed memory is handed back to the system this often (see ``release_free_memory``).
RELEASE_MEMORY_SECONDS = 10.0


def compact_job(body: Mapping[str, Any]) -> bytes:
    """What the loop keeps of a job: its metadata as read, spec and status, ``packed``."""
    # The metadata the indexes keep (no annotations: kopf's and kubectl's are copies of the spec;
    # the force-delete annotation has its own watch handler), and the creation time.
    return packed(
        {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": slim_metadata(body, "creationTimestamp"),
            "spec": body.get("spec") or {},
            "status": body.get("status") or {},
        }
    )


def followed(body: Mapping[str, Any]) -> bool:
    """Whether a job needs ticks: not being deleted and not in a terminal phase."""
    return (
        not (body.get("metadata") or {}).get("deletionTimestamp")
        and (body.get("status") or {}).get("phase") not in TERMINAL_PHASES
    )


@dataclass
class Held:
    """When a held job is next checked, the interval after that, and the job's generation then
    (a changed job is checked again at once)."""

    due: float
    interval: float
    generation: int | None


class Follower:
    """Ticks every followed job each ``progressPollSeconds``."""

    def __init__(self, reconciler: Reconciler, *, indexes: Mapping[str, Any]) -> None:
        self.reconciler = reconciler
        # kopf's live indexes (the objects its handlers get as keyword arguments).
        self.indexes = indexes
        self.poll_seconds = reconciler.config.progress_poll_seconds
        self._jobs: dict[JobKey, bytes] = {}
        self._held: dict[JobKey, Held] = {}
        self._ticking: set[JobKey] = set()
        self._slots = asyncio.Semaphore(CONCURRENT_TICKS)
        self._loop: asyncio.Task[None] | None = None

    def job_seen(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        """A watch event of a TrainingJob: keep its compact copy, or stop following it."""
        metadata = body.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name")))
        if deleted or not followed(body):
            self._jobs.pop(key, None)
            self._held.pop(key, None)
        else:
            self._jobs[key] = compact_job(body)
            held = self._held.get(key)
            if held is not None and held.generation != metadata.get("generation"):
                self._held.pop(key, None)
        FOLLOWED_JOBS.set(len(self._jobs))

    def __len__(self) -> int:
        return len(self._jobs)

    def start(self) -> None:
        """Start the loop (once; the later calls do nothing)."""
        if self._loop is None:
            self._loop = asyncio.create_task(self.run(), name="follow-loop")

    async def stop(self) -> None:
        """Stop the loop and the ticks under way."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def run(self) -> None:
        """Tick every followed job each ``progressPollSeconds``, until cancelled. The ticks of a
        round are spread over the period: all at once, every job's report, status write and the
        watch events they cause would come in one burst, and the memory at the top of each burst
        stays with the process."""
        released = time.monotonic()
        ticks: set[asyncio.Task[None]] = set()
        try:
            while True:
                started = time.monotonic()
                keys = list(self._jobs)
                for index, key in enumerate(keys):
                    delay = started + self.poll_seconds * index / len(keys) - time.monotonic()
                    if delay >= PACE_SECONDS:
                        await asyncio.sleep(delay)
                    if key in self._ticking or not self._due(key, time.monotonic()):
                        continue
                    await self._slots.acquire()
                    self._ticking.add(key)
                    task = asyncio.create_task(self._tick(key))
                    ticks.add(task)
                    task.add_done_callback(ticks.discard)
                rest = started + self.poll_seconds - time.monotonic()
                if rest > 0:
                    await asyncio.sleep(rest)
                FOLLOW_ROUND_SECONDS.observe(time.monotonic() - started)
                if time.monotonic() - released >= RELEASE_MEMORY_SECONDS:
                    release_free_memory()
                    released = time.monotonic()
        finally:
            for task in ticks:
                task.cancel()

    def _due(self, key: JobKey, now: float) -> bool:
        held = self._held.get(key)
        return held is None or held.due <= now

    async def _tick(self, key: JobKey) -> None:
        try:
            compact = self._jobs.get(key)
            if compact is None:
                return  # deleted or finished since the round began
            job = unpacked(compact)
            generation = job["metadata"].get("generation")
            try:
                outcome = await self.reconciler.follow(job, **indexes_of(self.indexes))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one job's failure must not end the loop
                logger.warning("following %s/%s failed: %s: %s", *key, type(exc).__name__, exc)
                self._hold(key, generation)
                return
            if outcome is not None and outcome.problem is not None:
                self._hold(key, generation)
            else:
                self._held.pop(key, None)
        finally:
            self._ticking.discard(key)
            self._slots.release()

    def _hold(self, key: JobKey, generation: int | None) -> None:
        """Check ``key`` again after a longer interval than last time (up to the maximum)."""
        if key not in self._jobs:
            return
        previous = self._held.get(key)
        interval = min(HELD_RECHECK_MAX_SECONDS, 2 * previous.interval if previous else self.poll_seconds)
        self._held[key] = Held(due=time.monotonic() + interval, interval=interval, generation=generation)


def release_free_memory() -> None:
    """Hand memory the process freed back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    The operator parses large bodies now and then (a Dataset of 1000 inline records is about
    1 MB); the allocator keeps what they freed, so without this the resident size stays at its
    highest point, and creeps up as the heap fragments."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()
