"""The pure status logic: child conditions -> phase and conditions."""

from __future__ import annotations

from typing import Any

from tensorone_operator.observed import ObservedJob
from tensorone_operator.status import Problem, dataset_status, set_condition, status_from, transitions
from tensorone_operator.trainjob import child_view

from tensorone.api.v1alpha1 import ConditionType, Reason

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T01:00:00Z"


def job(status: dict[str, Any] | None = None, **spec: Any) -> ObservedJob:
    return ObservedJob.parse(
        {
            "apiVersion": "training.tensorone.ai/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "j", "namespace": "n", "generation": 3},
            "spec": {"modelType": "llm", "datasetId": "d", "config": {"baseModel": "m"}, **spec},
            "status": status or {},
        }
    )


def child(*conditions: tuple[str, str], active: int = 0, **status: Any) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {"type": kind, "status": value, "reason": f"PyTorchJob{kind}"} for kind, value in conditions
            ],
            "replicaStatuses": {"Master": {"active": active}},
            **status,
        }
    }


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_phases_follow_the_child() -> None:
    assert status_from(job(), None, now=NOW)["phase"] == "Pending"
    assert status_from(job(), child(("Created", "True")), now=NOW)["phase"] == "Pending"
    running = status_from(job(), child(("Running", "True"), startTime=NOW), now=LATER)
    assert running["phase"] == "Running" and running["startedAt"] == NOW
    assert conditions(running)["Ready"] == ("True", "Running")
    assert running["observedGeneration"] == 3
    done = status_from(job(), child(("Succeeded", "True"), completionTime=LATER), now=LATER)
    assert done["phase"] == "Completed" and done["completedAt"] == LATER
    failed = status_from(job(), child(("Failed", "True")), now=LATER)
    assert failed["phase"] == "Failed" and failed["message"]
    assert conditions(failed)["Ready"] == ("False", "PyTorchJobFailed")


def test_restarting_is_a_condition_not_a_phase() -> None:
    # The Training Operator drops Running while it recreates a failed pod, and Restarting after.
    restarting = status_from(job(), child(("Restarting", "True")), now=NOW)
    assert restarting["phase"] == "Running" and restarting["message"].startswith("restarting")
    assert conditions(restarting)["Restarting"] == ("True", "PyTorchJobRestarting")
    assert conditions(restarting)["Running"] == ("True", "Restarting")
    running_again = status_from(job(status=restarting), child(("Running", "True")), now=LATER)
    assert running_again["phase"] == "Running"
    assert conditions(running_again)["Running"] == ("True", "PyTorchJobRunning")
    assert conditions(running_again)["Restarting"] == ("False", "Running")


def test_queued_stopping_stopped() -> None:
    held = {**child(("Suspended", "True")), "kind": "PyTorchJob", "spec": {"runPolicy": {"suspend": True}}}
    queued = status_from(job(suspend=False), held, now=NOW)
    assert queued["phase"] == "Queued" and queued["message"].startswith("queued: the PyTorchJob is suspended")
    # A TrainJob (seen through its view) names itself.
    suspended = {"type": "Suspended", "status": "True", "reason": "Suspended", "message": ""}
    held_train_job = child_view({"kind": "TrainJob", "spec": {"suspend": True}, "status": {"conditions": [suspended]}})
    queued = status_from(job(suspend=False), held_train_job, now=NOW)
    assert queued["phase"] == "Queued" and queued["message"].startswith("queued: the TrainJob is suspended")
    # Unsuspended by the operator on resume, still reporting Suspended: starting again, not queued.
    resuming = status_from(job(suspend=False), child(("Suspended", "True")), now=NOW)
    assert resuming["phase"] == "Pending" and resuming["message"].startswith("resuming")
    stopping = status_from(job(suspend=True), child(("Running", "True"), active=1), now=NOW)
    assert stopping["phase"] == "Stopping"
    assert status_from(job(suspend=True), child(("Suspended", "True"), active=1), now=NOW)["phase"] == "Stopping"
    assert status_from(job(suspend=True), child(("Suspended", "True")), now=NOW)["phase"] == "Stopped"


def test_terminal_phases_stay_and_cancel_wins() -> None:
    done = job({"phase": "Completed", "completedAt": NOW, "conditions": []})
    assert status_from(done, child(("Running", "True")), now=LATER)["phase"] == "Completed"
    cancelled = status_from(job(cancel=True), child(("Running", "True")), now=LATER)
    assert cancelled["phase"] == "Cancelled" and cancelled["completedAt"] == LATER


def test_problems_set_their_condition_and_stalled_only_when_not_waiting() -> None:
    waiting = status_from(
        job(), None, now=NOW, problem=Problem(ConditionType.DatasetReady, Reason.DATASET_NOT_FOUND, "no ds", True)
    )
    assert waiting["phase"] == "Pending"
    assert conditions(waiting)["DatasetReady"] == ("False", "DATASET_NOT_FOUND")
    assert conditions(waiting)["Reconciling"][0] == "True" and conditions(waiting)["Stalled"][0] == "False"
    stuck = status_from(
        job(), None, now=NOW, problem=Problem(ConditionType.ConfigurationValid, Reason.CONFIGURATION_ERROR, "x", False)
    )
    assert conditions(stuck)["Stalled"] == ("True", "CONFIGURATION_ERROR")


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = status_from(job(), child(("Running", "True")), now=NOW)
    again = status_from(job(first), child(("Running", "True")), now=LATER)
    assert again == first  # nothing to write
    stopped = status_from(job(again, suspend=True), child(("Suspended", "True")), now=LATER)
    ready = next(c for c in stopped["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == LATER


def test_transitions_become_events() -> None:
    pending = status_from(
        job(), None, now=NOW, problem=Problem(ConditionType.DatasetReady, Reason.DATASET_NOT_FOUND, "no ds", True)
    )
    events = transitions({}, pending)
    assert ("Warning", "DATASET_NOT_FOUND", "no ds") in events
    assert transitions(pending, pending) == []
    failed = status_from(job(), child(("Failed", "True")), now=NOW)
    assert ("Warning", "Failed", failed["message"]) in transitions(pending, failed)
    assert transitions(failed, failed) == []
    # The trainer's explanation, read after the PyTorchJob failed: an Event of its own.
    explained = {**failed, "message": "DATA_ERROR: 3 of 10 rows unreadable"}
    explained["conditions"] = set_condition(
        failed["conditions"], "Failed", "True", "DATA_ERROR", explained["message"], generation=1, now=LATER
    )
    assert transitions(failed, explained) == [("Warning", "DATA_ERROR", "DATA_ERROR: 3 of 10 rows unreadable")]
    assert transitions(explained, explained) == []


def test_dataset_status_by_source() -> None:
    inline = {"metadata": {"generation": 1}, "spec": {"source": {"inline": {"records": [{"a": 1}, {"a": 2}]}}}}
    status = dataset_status(inline, claim_exists=None, now=NOW)
    assert status["records"] == 2 and conditions(status)["Ready"] == ("True", "Inline")
    pvc = {"metadata": {"generation": 2}, "spec": {"source": {"pvc": {"claimName": "data"}}}}
    missing = dataset_status(pvc, claim_exists=False, now=NOW)
    assert conditions(missing)["Ready"] == ("False", "CLAIM_NOT_FOUND")
    assert "spec.source.pvc.claimName" in missing["conditions"][0]["message"]
    assert conditions(dataset_status(pvc, claim_exists=True, now=NOW))["Ready"] == ("True", "ClaimBound")
    hub = {"metadata": {}, "spec": {"source": {"huggingFace": {"name": "x"}}}}
    assert conditions(dataset_status(hub, claim_exists=None, now=NOW))["Ready"] == ("True", "Declared")
