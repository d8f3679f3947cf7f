"""Kueue's Workloads of the jobs that name a queue: read, and deactivated on a stop (I/O at the edge of
the pure rules in kueue.py).

Read only while Kueue holds a child (it is suspended by its own spec): one list of the namespace's
Workloads by the child's uid label and, for a Workload not admitted, one read of the LocalQueue's
pending workloads from Kueue's visibility API for the position. An API that answers 403, 404 or 503
(Kueue not installed, its visibility API off, or the operator not allowed to read it) leaves out
what it would have told: the position, or the whole Workload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorone.api.v1alpha1 import TrainingJob
from tensorone_operator import kueue
from tensorone_operator.builders import KUEUE_QUEUE_LABEL
from tensorone_operator.kube import ApiError, KubeApi, resource_path
from tensorone_operator.kueue import QueueState

# What an API that is absent, forbidden or down answers.
UNAVAILABLE = (403, 404, 503)


class Queues:
    """Reads the Workload of a job's child and keeps its activation in line with the job's stop."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def workload(self, child: Mapping[str, Any]) -> dict[str, Any] | None:
        """The Workload Kueue made for the child, None when there is none (yet) or Kueue is absent."""
        metadata = child.get("metadata") or {}
        uid, namespace = metadata.get("uid"), metadata.get("namespace")
        if not uid or not namespace:
            return None
        try:
            found = await self.api.list(
                kueue.WORKLOAD_API_VERSION, kueue.WORKLOADS, namespace, label_selector=f"{kueue.JOB_UID_LABEL}={uid}"
            )
        except ApiError as exc:
            if exc.status in UNAVAILABLE:
                return None
            raise
        owned = [w for w in found if not (w.get("metadata") or {}).get("deletionTimestamp")]
        return owned[0] if owned else None

    async def position(self, namespace: str, queue: str, workload: Mapping[str, Any]) -> int | None:
        """The Workload's position in its LocalQueue (1 is next), when the visibility API says it."""
        path = resource_path(kueue.VISIBILITY_API_VERSION, "localqueues", namespace, queue) + "/pendingworkloads"
        try:
            summary = await self.api.request("GET", path, params={"limit": str(kueue.POSITION_PAGE)})
        except ApiError as exc:
            if exc.status in UNAVAILABLE:
                return None
            raise
        return kueue.position_in(summary or {}, str(workload["metadata"]["name"]))

    async def state(self, job: TrainingJob, child: Mapping[str, Any], *, stopped: bool) -> QueueState:
        """Kueue's word on the job's child; on the way, the Workload of a ``stopped`` job is
        deactivated and that of a resumed one reactivated (Kueue would otherwise admit and
        unsuspend a child the operator stopped)."""
        queue = (job.metadata.labels or {})[KUEUE_QUEUE_LABEL]
        workload = await self.workload(child)
        if workload is None:
            return kueue.queue_state(queue, None)
        patch = kueue.activation_patch(workload, stopped=stopped)
        if patch is not None:
            metadata = workload["metadata"]
            workload = await self.api.merge_patch(
                kueue.WORKLOAD_API_VERSION, kueue.WORKLOADS, metadata["namespace"], metadata["name"], patch
            )
        state = kueue.queue_state(queue, workload)
        if state.admitted or stopped:
            return state
        position = await self.position(str(job.metadata.namespace), state.queue, workload)
        return kueue.queue_state(queue, workload, position=position)
