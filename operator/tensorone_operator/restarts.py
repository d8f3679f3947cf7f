"""The ends of each job's pods that the Training Operator restarts: failures, counted against
spec.maxRestarts, and preemptions, counted apart.

Our trainer's replicas, and those of a custom image that follows its exit-code table, run under
``restartPolicy: ExitCode`` (builders.restart_policy): the Training Operator restarts a pod whose
container exited 128-255 by deleting it and creating it again, as often as it fails, because it
counts toward ``backoffLimit`` only the container restarts of running pods
(kubeflow/training-operator#2045). So the operator counts the failed pods it sees on the pod
watch, each once (by uid), and the reconciler ends the job when there are more than
``spec.maxRestarts``. The count is kept in ``status.restarts``, so a restarted operator goes on
from it (a failed or preempted pod still present when the operator restarts may then be counted
twice).

A preemption is no failure. The rule, by what the pod shows:

- a pod is **preempted** when the cluster took it away while its job ran (its child neither
  suspended, by a stop, a budget hold or a queue, nor over, nor deleted): it has condition
  ``DisruptionTarget`` True (an eviction for a node drain, a preemption by a higher-priority pod,
  a NoExecute taint, the kubelet's graceful node shutdown: a spot reclaim), or it was deleted and
  its trainer stopped on that SIGTERM after saving a checkpoint (exit code 143, ``TERMINATED``). On
  spot and on-demand nodes alike: a drain is the same event on both. The Training Operator creates
  the pod again and the trainer resumes from the latest checkpoint; the count is kept in
  ``status.resourceUsage.preemptions``;
- exit code 143 is never a failure: the pods of the same run stop with the preempted one (the
  trainer agrees on a stop over every process), exit 143 and are neither failures nor preemptions;
- a **failure** is any other exit code from 128 of a pod that is not being deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorone.api.exit_codes import ExitCode, is_retryable
from tensorone.api.pods import DISRUPTION_TARGET
from tensorone.api.v1alpha1 import ConditionType, Reason
from tensorone_operator.events import Event, EventType
from tensorone_operator.live_status import failed_exit_code
from tensorone_operator.status import child_condition, suspend_asked

JobKey = tuple[str, str]


def job_runs(child: Mapping[str, Any] | None) -> bool:
    """Whether a job's child lets its pods run: it exists, is not being deleted, not suspended
    (runPolicy.suspend: a stop, a budget hold, a queue) and not over. A pod taken away otherwise
    was taken by the job's own end or stop."""
    if child is None or (child.get("metadata") or {}).get("deletionTimestamp") or suspend_asked(child):
        return False
    ended = (child_condition(child, kind) or {} for kind in (ConditionType.Succeeded, ConditionType.Failed))
    return not any(condition.get("status") == "True" for condition in ended)


def preempted(pod: Mapping[str, Any]) -> bool:
    """Whether the cluster is taking the pod away (condition DisruptionTarget True), or deleted it
    and its trainer stopped on the SIGTERM with a checkpoint (exit code 143)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    if any(c.get("type") == DISRUPTION_TARGET and c.get("status") == "True" for c in conditions):
        return True
    deleted = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    return deleted and failed_exit_code(pod) == ExitCode.TERMINATED


def failed(pod: Mapping[str, Any]) -> bool:
    """Whether the pod failed with an exit code the Training Operator retries and that counts
    against spec.maxRestarts: not 143 (a stop on SIGTERM), not while being deleted (a pod deleted
    on purpose and killed on its way is no failure: the Training Operator deletes a failed pod
    only after it has ended), not taken away by the cluster."""
    code = failed_exit_code(pod)
    if code is None or not is_retryable(code) or code == ExitCode.TERMINATED:
        return False
    return not (pod.get("metadata") or {}).get("deletionTimestamp") and not preempted(pod)


class Restarts:
    """The restarted pod failures and the preemptions of each job: those stored in its status,
    plus those seen since."""

    def __init__(self) -> None:
        self._failed: dict[JobKey, set[str]] = {}
        self._preempted: dict[JobKey, set[str]] = {}
        self._stored: dict[JobKey, int] = {}
        self._stored_preemptions: dict[JobKey, int] = {}

    def forget(self, key: JobKey) -> None:
        """Drop what is kept about a deleted job."""
        for kept in (self._failed, self._preempted, self._stored, self._stored_preemptions):
            kept.pop(key, None)

    def pod_changed(self, key: JobKey, pod: Mapping[str, Any], *, running: bool, deleted: bool = False) -> bool:
        """Count a pod of the job that failed (not ``deleted``: the last word of a pod the watch saw
        go) or that was preempted while the job was ``running`` (see :func:`job_runs`); whether it
        is a new one."""
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if not uid:
            return False
        if preempted(pod):
            counted = self._preempted.setdefault(key, set())
            if not running or uid in counted or uid in self._failed.get(key, ()):
                return False
            counted.add(uid)
            return True
        if deleted or not failed(pod):
            return False
        counted = self._failed.setdefault(key, set())
        if uid in counted:
            return False
        counted.add(uid)
        return True

    def count(self, key: JobKey, status: Mapping[str, Any]) -> int:
        """The job's restarts so far: what its status held when the operator first looked (after an
        operator restart), plus the failed pods counted since."""
        stored = self._stored.setdefault(key, int(status.get("restarts") or 0))
        return stored + len(self._failed.get(key, ()))

    def preemptions(self, key: JobKey, status: Mapping[str, Any]) -> int:
        """The job's preemptions so far: those its status held when the operator first looked,
        plus the preempted pods counted since."""
        stored = self._stored_preemptions.setdefault(key, preemptions_of(status))
        return stored + len(self._preempted.get(key, ()))


def preemptions_of(status: Mapping[str, Any]) -> int:
    """status.resourceUsage.preemptions of a status (0 when absent)."""
    return int((status.get("resourceUsage") or {}).get("preemptions") or 0)


def preemption_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """A Warning when a status counts more preemptions than the one before."""
    before, after = preemptions_of(old), preemptions_of(new)
    if after <= before:
        return []
    pods = "a pod was" if after - before == 1 else f"{after - before} pods were"
    message = (
        f"{pods} preempted ({after} in all): the job resumes from its latest checkpoint; preemptions do not "
        "count against spec.maxRestarts"
    )
    return [(EventType.Warning, Reason.Preempted, message)]
