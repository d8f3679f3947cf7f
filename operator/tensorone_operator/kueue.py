"""Kueue's word on a queued job, read from its Workload (pure; no I/O).

A TrainingJob labelled ``kueue.x-k8s.io/queue-name`` gets a child that Kueue manages. Kueue's job
framework (pinned: Kueue **v0.14.8**, ``kueue.x-k8s.io/v1beta1``, the last release where v1beta1
is the only version served) makes one Workload per child, in the child's namespace, labelled
``kueue.x-k8s.io/job-uid`` with the child's uid and owned by it. What the operator reads and writes
of it:

- ``spec.queueName``: the LocalQueue; ``spec.active`` (default true): false deactivates it;
- condition ``Admitted`` True (with ``status.admission.clusterQueue``): Kueue admitted it and
  unsuspends the child; ``QuotaReserved`` False carries why it still waits;
- condition ``Evicted`` True, reason ``Preempted`` (also ``Preempted`` True): Kueue took the
  quota back for a workload of higher priority. Kueue suspends the child (its pods get SIGTERM:
  the trainer saves a checkpoint), requeues the Workload, and unsuspends the child when it admits
  it again; both conditions go False then. Other reasons (``PodsReadyTimeout``,
  ``ClusterQueueStopped``, ``Deactivated``, ...) evict the same way.

Kueue unsuspends a suspended child whose Workload is admitted (its reconciler's rule), so a stop by
the child's suspend alone would be undone: the operator deactivates the Workload on a stop
(``activation_patch``) and reactivates it on resume, and never unsuspends a child Kueue manages.

The queue position is not on the Workload: Kueue publishes it only through its visibility API
(``visibility.kueue.x-k8s.io/v1beta1``, the LocalQueue's ``pendingworkloads``), which
``position_in`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KUEUE_GROUP = "kueue.x-k8s.io"
WORKLOAD_API_VERSION = f"{KUEUE_GROUP}/v1beta1"
WORKLOADS = "workloads"
JOB_UID_LABEL = f"{KUEUE_GROUP}/job-uid"
VISIBILITY_GROUP = f"visibility.{KUEUE_GROUP}"
VISIBILITY_API_VERSION = f"{VISIBILITY_GROUP}/v1beta1"
PENDING_WORKLOADS = "localqueues/pendingworkloads"
# How many pending workloads one read of the visibility API asks for (its default page is 1000).
POSITION_PAGE = 1000

ADMITTED = "Admitted"
QUOTA_RESERVED = "QuotaReserved"
EVICTED = "Evicted"
EVICTED_BY_PREEMPTION = "Preempted"


@dataclass(frozen=True)
class QueueState:
    """Where a queued job stands with Kueue: its LocalQueue, whether Kueue admitted it, a
    preemption (the eviction's message) while it waits to be admitted again, and its position in
    the LocalQueue when Kueue publishes it (1 is next)."""

    queue: str
    admitted: bool = False
    cluster_queue: str | None = None
    preemption: str | None = None
    waiting: str | None = None
    position: int | None = None

    def describe(self) -> str:
        """The queue, its position and why it waits, for a status message."""
        where = f"LocalQueue {self.queue!r}"
        if self.position is not None:
            where += f" at position {self.position}"
        return where + (f" ({self.waiting})" if self.waiting else "")


def _condition(workload: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in (workload.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def _true(workload: Mapping[str, Any], kind: str) -> bool:
    condition = _condition(workload, kind)
    return bool(condition and condition.get("status") == "True")


def kueue_preemption(workload: Mapping[str, Any]) -> str | None:
    """The message of Kueue's eviction of the workload by preemption, while it stands (None when
    the workload was not preempted, or has been admitted again since)."""
    evicted = _condition(workload, EVICTED)
    if evicted is None or evicted.get("status") != "True" or evicted.get("reason") != EVICTED_BY_PREEMPTION:
        return None
    return str(evicted.get("message") or "preempted")


def queue_state(queue: str, workload: Mapping[str, Any] | None, *, position: int | None = None) -> QueueState:
    """What the Workload says of a job in LocalQueue ``queue`` (Kueue has not made one yet: None)."""
    if workload is None:
        return QueueState(queue=queue, waiting="Kueue has not made its Workload yet", position=position)
    admission = (workload.get("status") or {}).get("admission") or {}
    reserved = _condition(workload, QUOTA_RESERVED)
    waiting = None
    if reserved is not None and reserved.get("status") == "False" and reserved.get("message"):
        waiting = str(reserved["message"])
    return QueueState(
        queue=str((workload.get("spec") or {}).get("queueName") or queue),
        admitted=_true(workload, ADMITTED),
        cluster_queue=admission.get("clusterQueue"),
        preemption=kueue_preemption(workload),
        waiting=waiting,
        position=position,
    )


def active(workload: Mapping[str, Any]) -> bool:
    """Whether the workload is active (``spec.active``, true when unset)."""
    return (workload.get("spec") or {}).get("active", True) is not False


def activation_patch(workload: Mapping[str, Any], *, stopped: bool) -> dict[str, Any] | None:
    """The merge patch that deactivates the Workload of a stopped job (Kueue evicts it, releases
    its quota and leaves its child suspended) or reactivates that of a resumed one (Kueue queues
    it again); None when it is as wanted."""
    if active(workload) != stopped:
        return None
    return {"spec": {"active": not stopped}}


def position_in(summary: Mapping[str, Any], workload_name: str) -> int | None:
    """The workload's position in its LocalQueue (1 is next) from a visibility API answer
    (PendingWorkloadsSummary, whose positions count from 0); None when it is not listed."""
    for item in summary.get("items") or []:
        if (item.get("metadata") or {}).get("name") == workload_name:
            position = item.get("positionInLocalQueue")
            return int(position) + 1 if isinstance(position, int) and position >= 0 else None
    return None
