"""Kueue's word on a queued job (tensorone_operator.kueue) and the phases it gives (status.py)."""

from __future__ import annotations

from typing import Any

from tensorone_operator import kueue
from tensorone_operator.status import status_from, transitions

from tests.operator.test_status import NOW, job

EVICTED = {
    "type": "Evicted",
    "status": "True",
    "reason": "Preempted",
    "message": "Preempted to accommodate a workload due to prioritization in the ClusterQueue",
}


def workload(*conditions: dict[str, Any], active: bool | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"queueName": "team", "podSets": []}
    if active is not None:
        spec["active"] = active
    return {"metadata": {"name": "pytorchjob-x-1a2b3"}, "spec": spec, "status": {"conditions": list(conditions)}}


def child(*, suspended: bool, active: int = 0) -> dict[str, Any]:
    conditions = [{"type": "Suspended", "status": "True" if suspended else "False"}]
    return {
        "spec": {"runPolicy": {"suspend": True}},
        "status": {"conditions": conditions, "replicaStatuses": {"Master": {"active": active}}},
    }


def test_a_pending_workload_says_why_it_waits_and_where() -> None:
    pending = workload(
        {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "insufficient quota"}
    )
    state = kueue.queue_state("team", pending, position=2)
    assert (state.admitted, state.preemption, state.queue) == (False, None, "team")
    assert state.describe() == "LocalQueue 'team' at position 2 (insufficient quota)"
    assert kueue.queue_state("team", None).waiting == "Kueue has not made its Workload yet"


def test_only_a_standing_eviction_by_preemption_is_a_preemption() -> None:
    assert kueue.kueue_preemption(workload(EVICTED)) == EVICTED["message"]
    assert kueue.kueue_preemption(workload({**EVICTED, "reason": "Deactivated"})) is None
    assert kueue.kueue_preemption(workload({**EVICTED, "status": "False"})) is None  # admitted again


def test_a_stop_deactivates_the_workload_and_a_resume_reactivates_it() -> None:
    assert kueue.activation_patch(workload(), stopped=True) == {"spec": {"active": False}}
    assert kueue.activation_patch(workload(active=False), stopped=True) is None
    assert kueue.activation_patch(workload(active=False), stopped=False) == {"spec": {"active": True}}
    assert kueue.activation_patch(workload(), stopped=False) is None


def test_the_position_counts_from_one_and_is_absent_when_not_listed() -> None:
    summary = {
        "items": [
            {"metadata": {"name": "a"}, "positionInLocalQueue": 0},
            {"metadata": {"name": "b"}, "positionInLocalQueue": 1},
        ]
    }
    assert kueue.position_in(summary, "b") == 2
    assert kueue.position_in(summary, "c") is None


def test_a_preemption_stops_then_queues_the_job_and_is_told_once() -> None:
    state = kueue.queue_state("team", workload(EVICTED))
    running = status_from(
        job(suspend=False), {"status": {"conditions": [{"type": "Running", "status": "True"}]}}, now=NOW
    )
    stopping = status_from(job(suspend=False), child(suspended=False, active=1), now=NOW, queue=state)
    assert stopping["phase"] == "Stopping" and stopping["message"].startswith("preempted by Kueue: Preempted to")
    queued = status_from(job(suspend=False), child(suspended=True), now=NOW, queue=state)
    assert queued["phase"] == "Queued" and "queued in LocalQueue 'team'" in queued["message"]
    assert [reason for _, reason, _ in transitions(running, stopping)] == ["Preempted"]
    assert [reason for _, reason, _ in transitions(stopping, queued)] == ["Queued"]


def test_a_job_waiting_for_admission_is_queued_with_its_queue() -> None:
    state = kueue.queue_state("team", workload(), position=1)
    queued = status_from(job(suspend=False), child(suspended=True), now=NOW, queue=state)
    assert queued["phase"] == "Queued"
    assert queued["message"] == "queued in LocalQueue 'team' at position 1: suspended until Kueue admits it"
