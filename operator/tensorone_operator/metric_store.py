"""Each job's metric store: the trainer's per-step records, read from the rank-0 pod and kept in a
ConfigMap beside the TrainingJob (tensorone.api.events says why and within which bounds).

After each ``/progress`` poll that shows progress, the new records are read from the pod's
``GET /metric-events?after=SEQ`` (one bounded page a tick, checked against every bound) and kept
here, thinned to the store's bounds, until they are written: at most once every
``STORE_WRITE_SECONDS`` per job, and once when the job ends. Writing reads the ConfigMap, merges,
and writes it whole; the ConfigMap is owned by the job (garbage-collected with it, deleted on
clean-up) and an object of that name the job does not own is never touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tensorone.api.events import (
    MAX_PAGE_BYTES,
    MAX_PAGE_RECORDS,
    STORE_KEY,
    STORE_LABEL,
    STORE_PROCESS_ANNOTATION,
    STORE_WRITE_SECONDS,
    MetricRecord,
    merged,
    metric_store_name,
    parse_page,
    read_store,
    store_text,
)
from tensorone.api.report import InvalidReport, ProgressReport
from tensorone.api.timestamps import now
from tensorone_operator.builders import child_labels, owner_reference
from tensorone_operator.children import owned_by
from tensorone_operator.kube import ApiError, KubeApi
from tensorone_operator.observed import ObservedJob

logger = logging.getLogger("tensorone_operator")

JobKey = tuple[str, str]
PAGE_TIMEOUT_SECONDS = 2.0


@dataclass
class _Followed:
    """What is kept of one job: the trainer process read from and the last record read from it,
    the progress that was last read for, the records not yet written, and when it was last written."""

    process: str | None = None
    seq: int = 0
    progress: tuple[Any, ...] = ()
    full_page: bool = False
    pending: list[MetricRecord] = field(default_factory=list)
    written: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MetricStore:
    """Reads every job's new metric records from its trainer and writes them to its store."""

    def __init__(self, api: KubeApi, *, write_seconds: float = STORE_WRITE_SECONDS) -> None:
        self.api = api
        self.write_seconds = write_seconds
        self._jobs: dict[JobKey, _Followed] = {}
        self._refused: dict[JobKey, str] = {}
        self._http: aiohttp.ClientSession | None = None

    def forget(self, key: JobKey) -> None:
        self._jobs.pop(key, None)
        self._refused.pop(key, None)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def refusal(self, key: JobKey) -> str | None:
        """Why the job's last page of records was refused (None when it was accepted)."""
        return self._refused.get(key)

    def pending(self, key: JobKey) -> list[MetricRecord]:
        """The records read and not yet written."""
        followed = self._jobs.get(key)
        return list(followed.pending) if followed else []

    async def read(self, key: JobKey, pod: Mapping[str, Any] | None, report: ProgressReport | None) -> None:
        """Read the new records of the job's rank-0 trainer, when its report shows progress since
        the last read (or the last page was full). Quiet while the pod cannot be reached."""
        if report is None or not pod or not pod.get("running") or not pod.get("podIP") or not pod.get("reportPort"):
            return
        followed = self._jobs.setdefault(key, _Followed())
        process = report.started_at.isoformat() if report.started_at else None
        progress = (process, report.step, report.eval_loss, report.state)
        if progress == followed.progress and not followed.full_page:
            return
        async with followed.lock:
            rerun = followed.process is not None and process != followed.process
            if process != followed.process:
                followed.process, followed.seq = process, 0  # a new process numbers its records from 1
            url = f"http://{pod['podIP']}:{pod['reportPort']}/metric-events"
            try:
                records = await self._page(url, followed.seq)
            except InvalidReport as exc:
                if self._refused.get(key) != str(exc):
                    logger.info("metric events of %s/%s refused: %s", *key, exc)
                self._refused[key] = str(exc)
                return
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                logger.debug("metric events of %s/%s not read from %s: %s", *key, url, exc)
                return
            self._refused.pop(key, None)
            followed.progress = progress
            followed.full_page = len(records) >= MAX_PAGE_RECORDS
            if records:
                followed.seq = records[-1].seq
                followed.pending = merged(followed.pending, records, rerun=rerun)

    async def _page(self, url: str, after: int) -> list[MetricRecord]:
        """One page of records after ``after``; InvalidReport for an answer that breaks a bound."""
        if self._http is None or self._http.closed:
            # No decompression: a small gzip body could otherwise unpack into gigabytes.
            timeout = aiohttp.ClientTimeout(total=PAGE_TIMEOUT_SECONDS)
            self._http = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        params = {"after": str(after), "limit": str(MAX_PAGE_RECORDS)}
        async with self._http.get(url, params=params, allow_redirects=False) as response:
            if response.status == 404:
                return []  # a custom image's own server, without metric events: asked again on progress only
            if response.status != 200:
                raise InvalidReport(f"/metric-events answered HTTP {response.status}")
            if response.content_length is not None and response.content_length > MAX_PAGE_BYTES:
                raise InvalidReport(f"/metric-events page of {response.content_length} bytes is over {MAX_PAGE_BYTES}")
            body = await response.content.read(MAX_PAGE_BYTES + 1)
            if len(body) > MAX_PAGE_BYTES or await response.content.read(1):
                raise InvalidReport(f"/metric-events page of more than {MAX_PAGE_BYTES} bytes")
        return parse_page(body, after=after, now=now())

    async def write(self, job: ObservedJob, *, final: bool = False) -> bool:
        """Write the records read since the last write into the job's ConfigMap, when they are due
        (``final``: the job ended, write now). Whether it was written."""
        followed = self._jobs.get(job.key)
        if followed is None or not followed.pending:
            return False
        if not final and time.monotonic() - followed.written < self.write_seconds:
            return False
        async with followed.lock:
            try:
                return await self._write(job, followed)
            except ApiError as exc:  # kept for the next write; the job's status never waits on this
                logger.warning("metric events of %s/%s not written: %s", *job.key, exc)
                return False

    async def _write(self, job: ObservedJob, followed: _Followed) -> bool:
        """Read the store, merge the pending records in, write it (created owned by the job)."""
        name = metric_store_name(job.name)
        existing = await self.api.get("v1", "configmaps", job.namespace, name)
        if existing is not None and not owned_by(existing, job.uid):
            logger.warning("metric events of %s/%s not kept: ConfigMap %s is not the job's", *job.key, name)
            followed.pending = []
            return False
        stored_meta = (existing or {}).get("metadata") or {}
        stored_process = (stored_meta.get("annotations") or {}).get(STORE_PROCESS_ANNOTATION)
        stored = read_store(((existing or {}).get("data") or {}).get(STORE_KEY))
        rerun = stored_process is not None and stored_process != followed.process
        data = {STORE_KEY: store_text(merged(stored, followed.pending, rerun=rerun))}
        annotations = {STORE_PROCESS_ANNOTATION: followed.process} if followed.process else {}
        if existing is None:
            metadata = {
                "name": name,
                "namespace": job.namespace,
                "labels": {**child_labels(job.resource), STORE_LABEL: job.name},
                "annotations": annotations,
                "ownerReferences": [owner_reference(job.resource)],
            }
            await self.api.create("v1", "configmaps", job.namespace, {"metadata": metadata, "data": data})
        else:
            patch = {"metadata": {"annotations": annotations}, "data": data}
            await self.api.merge_patch("v1", "configmaps", job.namespace, name, patch)
        followed.pending = []
        followed.written = time.monotonic()
        return True
