"""Which pods count as restarts, and which as preemptions (pure: pods as the watch delivers them)."""

from __future__ import annotations

from typing import Any

from tensorone_operator.restarts import Restarts, job_runs, preemption_events

from tensorone.api.exit_codes import ExitCode

KEY = ("default", "llama")


def ended(uid: str, code: int | None, *, deleting: bool = False, disrupted: bool = False) -> dict[str, Any]:
    """A pod of the job: its container ended with ``code`` (None: still running), being deleted,
    with condition DisruptionTarget as an eviction sets it."""
    metadata: dict[str, Any] = {"name": "llama-master-0", "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    state = {"running": {}} if code is None else {"terminated": {"exitCode": code}}
    status: dict[str, Any] = {"containerStatuses": [{"name": "pytorch", "state": state}]}
    if disrupted:
        status["conditions"] = [
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "message": "evicting"}
        ]
    return {"metadata": metadata, "status": status}


def test_each_retryable_failure_counts_once_and_nothing_else_does() -> None:
    restarts = Restarts()
    assert restarts.pod_changed(KEY, ended("a", 138), running=True)
    assert not restarts.pod_changed(KEY, ended("a", 138), running=True)  # the same pod seen again
    assert not restarts.pod_changed(KEY, ended("b", 5), running=True)  # permanent: the job fails, no restart
    assert not restarts.pod_changed(KEY, ended("c", 0), running=True)
    assert not restarts.pod_changed(KEY, ended("d", 137, deleting=True), running=True)  # killed while being stopped
    assert restarts.pod_changed(KEY, ended("e", 137), running=True)
    assert not restarts.pod_changed(KEY, ended("g", 138), running=True, deleted=True)  # its last word
    assert restarts.count(KEY, {}) == 2
    assert restarts.preemptions(KEY, {}) == 0


def test_a_restarted_operator_goes_on_from_the_status() -> None:
    restarts = Restarts()
    assert restarts.count(KEY, {"restarts": 2}) == 2
    restarts.pod_changed(KEY, ended("f", 138), running=True)
    assert restarts.count(KEY, {"restarts": 2}) == 3
    stored = {"resourceUsage": {"preemptions": 4}}
    assert restarts.preemptions(KEY, stored) == 4
    restarts.pod_changed(KEY, ended("h", None, disrupted=True), running=True)
    assert restarts.preemptions(KEY, stored) == 5


def test_a_pod_the_cluster_takes_away_while_the_job_runs_is_a_preemption_never_a_failure() -> None:
    restarts = Restarts()
    terminated = int(ExitCode.TERMINATED)
    # Evicted (a drain): the condition comes first, then the SIGTERM exit, then the pod goes.
    assert restarts.pod_changed(KEY, ended("drained", None, disrupted=True), running=True)
    assert not restarts.pod_changed(KEY, ended("drained", terminated, deleting=True, disrupted=True), running=True)
    assert not restarts.pod_changed(
        KEY, ended("drained", terminated, deleting=True, disrupted=True), running=True, deleted=True
    )
    # Its peer stopped with it (the trainer agrees on a stop): neither a failure nor a preemption.
    assert not restarts.pod_changed(KEY, ended("peer", terminated), running=True)
    # Deleted without an eviction (kubectl delete pod) and stopped with a checkpoint: a preemption,
    # seen by the watch only when it has gone.
    assert restarts.pod_changed(KEY, ended("deleted", terminated, deleting=True), running=True, deleted=True)
    # A node shut down past the grace period: killed, but taken away all the same.
    assert restarts.pod_changed(KEY, ended("reclaimed", 137, disrupted=True), running=True)
    assert restarts.count(KEY, {}) == 0
    assert restarts.preemptions(KEY, {}) == 3


def test_pods_the_job_itself_stops_or_ends_are_no_preemption() -> None:
    restarts = Restarts()
    terminated = int(ExitCode.TERMINATED)
    # Deleted by the Training Operator for a stop (suspended child) or after the end of the job.
    assert not restarts.pod_changed(KEY, ended("stopped", terminated, deleting=True), running=False)
    assert not restarts.pod_changed(KEY, ended("evicted-late", None, disrupted=True), running=False)
    assert restarts.count(KEY, {}) == 0 and restarts.preemptions(KEY, {}) == 0


def child(*, suspend: bool = False, condition: str | None = None, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "llama"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return {"metadata": metadata, "spec": {"runPolicy": {"suspend": suspend}}, "status": {"conditions": conditions}}


def test_a_job_runs_while_its_child_is_neither_suspended_nor_over_nor_gone() -> None:
    assert job_runs(child()) and job_runs(child(condition="Running")) and job_runs(child(condition="Restarting"))
    assert not job_runs(None)
    assert not job_runs(child(suspend=True))
    assert not job_runs(child(condition="Succeeded")) and not job_runs(child(condition="Failed"))
    assert not job_runs(child(deleting=True))


def test_a_preemption_is_told_once_with_the_count() -> None:
    assert preemption_events({}, {"resourceUsage": {"preemptions": 0}}) == []
    [(kind, reason, message)] = preemption_events({}, {"resourceUsage": {"preemptions": 1}})
    assert (kind, reason) == ("Warning", "Preempted")
    assert message.startswith("a pod was preempted (1 in all)") and "maxRestarts" in message
    assert preemption_events({"resourceUsage": {"preemptions": 1}}, {"resourceUsage": {"preemptions": 1}}) == []
