"""A Kubeflow Trainer v2 TrainJob seen as the status logic sees every child (pure; no I/O).

status.py reads a child the way Training Operator v1.9 writes a PyTorchJob: its own suspend
(``spec.runPolicy.suspend``), conditions Running, Succeeded, Failed and Suspended, and the pods
still active per replica (``status.replicaStatuses``). ``child_view`` gives a TrainJob that shape
where it enters the operator (the index, a read, a write's answer, a watch event), so the phases
follow the same rules on either backend. Trainer v2.2 writes on a TrainJob:

============================  ==========================================================
TrainJob (Trainer v2.2)        the view (PyTorchJob's terms)
============================  ==========================================================
spec.suspend                   spec.runPolicy.suspend
Suspended True / False         Suspended True / False (reason Suspended, Resumed)
Complete True                  Succeeded True (the JobSet's Completed condition, renamed)
Failed True                    Failed True, its reason (FailedJobs, DeadlineExceeded, ...)
jobsStatus[].ready > 0         Running True: every pod of a replicated job is ready
jobsStatus[].active            replicaStatuses.Node.active: pods still running or pending
trainerStatus                  trainerStatus, as written (untrusted: the trainer posted it)
============================  ==========================================================

A TrainJob has no Restarting condition (JobSet restarts all its Jobs at once; the job stays
Running while its pods come back) and no start or completion time (the conditions' transition
times stand in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorone.api.trainer_status import is_ours
from tensorone.api.v1alpha1 import ConditionType
from tensorone_operator.config import TrainJobProgress


def _condition(status: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((dict(c) for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _true(condition: Mapping[str, Any] | None) -> bool:
    return bool(condition and condition.get("status") == "True")


def child_view(child: Mapping[str, Any]) -> dict[str, Any]:
    """A TrainJob in the shape status.py reads (a PyTorchJob's); any other child as it is."""
    if child.get("kind") != "TrainJob":
        return dict(child)
    spec = child.get("spec") or {}
    status = child.get("status") or {}
    conditions: list[dict[str, Any]] = []
    suspended = _condition(status, "Suspended")
    if suspended is not None:
        conditions.append({**suspended, "type": ConditionType.Suspended})
    complete, failed = _condition(status, "Complete"), _condition(status, "Failed")
    if complete is not None:
        conditions.append({**complete, "type": ConditionType.Succeeded})
    if failed is not None:
        conditions.append({**failed, "type": ConditionType.Failed})
    jobs = status.get("jobsStatus") or []
    ready = sum(int(job.get("ready") or 0) for job in jobs)
    active = sum(int(job.get("active") or 0) for job in jobs)
    ended = _true(complete) or _true(failed)
    if not ended and not _true(suspended) and ready > 0:
        conditions.append(
            {"type": ConditionType.Running, "status": "True", "reason": "JobsReady", "message": "TrainJob is running."}
        )
    view_status: dict[str, Any] = {"conditions": conditions, "replicaStatuses": {"Node": {"active": active}}}
    if "trainerStatus" in status:
        # Read by trainer_reports.TrainerReports.trainer_status, which checks every value.
        view_status["trainerStatus"] = status["trainerStatus"]
    end = complete if _true(complete) else failed if _true(failed) else None
    if end is not None and end.get("lastTransitionTime"):
        view_status["completionTime"] = end["lastTransitionTime"]
    view_spec: dict[str, Any] = {"runPolicy": {"suspend": bool(spec.get("suspend"))}}
    for key in ("runtimeRef", "suspend"):
        if key in spec:
            view_spec[key] = spec[key]
    return {
        "apiVersion": child.get("apiVersion"),
        "kind": "TrainJob",
        "metadata": dict(child.get("metadata") or {}),
        "spec": view_spec,
        "status": view_status,
    }


def posted_status(child: Mapping[str, Any], progress: TrainJobProgress) -> Mapping[str, Any] | None:
    """The trainerStatus to read instead of polling the job's rank-0 pod (``trainJobProgress``):
    a TrainJob's when the operator reads only those ({} while its trainer has posted nothing), or
    with ``auto`` once its trainer posted a TensorOne report there; None to poll the pod."""
    if child.get("kind") != "TrainJob" or progress == TrainJobProgress.poll:
        return None
    posted = (child.get("status") or {}).get("trainerStatus")
    if progress == TrainJobProgress.trainer_status:
        return posted if isinstance(posted, Mapping) else {}
    return posted if is_ours(posted) else None
