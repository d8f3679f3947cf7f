"""spec.maxCost: the pure rules (budget.py), and the real operator holding a job that spends it."""

from __future__ import annotations

from typing import Any

from tensorone_operator.budget import budget_condition, budget_events, over_budget
from tensorone_operator.config import CpuJobResources, OperatorConfig

from tensorone.api.v1alpha1 import TrainingJobSpec
from tests.kube import kueue
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import (
    PYTORCHJOB,
    TJ,
    child_job,
    condition,
    configured_job,
    dataset,
    event_with,
    job_status,
    phase_is,
    play_training_operator,
    training_job,
)
from tests.operator.runner import OperatorThread


def spec(max_cost: float | None) -> TrainingJobSpec:
    fields: dict[str, Any] = {"maxCost": max_cost} if max_cost else {}
    return TrainingJobSpec.model_validate(training_job(**fields)["spec"])


def costing(cost: float, within: bool | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"resourceUsage": {"cost": cost}}
    if within is not None:
        status["conditions"] = [{"type": "WithinBudget", "status": str(within)}]
    return status


def test_over_budget_and_the_condition_name_the_cap_not_the_spending() -> None:
    assert not over_budget(spec(None), costing(1e9)) and budget_condition(spec(None), costing(1e9), "USD") is None
    assert not over_budget(spec(10), costing(9.99))
    assert budget_condition(spec(10), costing(9.99), "USD") == (
        True,
        "BudgetAvailable",
        "spending is under spec.maxCost (10 USD)",
    )
    assert over_budget(spec(10), costing(10))
    within, reason, message = budget_condition(spec(10), costing(12.5), "EUR") or (None, "", "")
    assert (within, reason) == (False, "BudgetExceeded")
    assert message.startswith("spec.maxCost (10 EUR) is spent") and "12.5" not in message


def test_events_at_half_four_fifths_and_all_of_the_cap() -> None:
    cap = spec(100)
    assert budget_events(cap, costing(10), costing(49.99), "USD") == []
    assert budget_events(cap, costing(10), costing(50), "USD") == [
        ("Warning", "BudgetWarning", "spent 50.00 USD, 50% of spec.maxCost (100 USD)")
    ]
    # Past both shares between two writes: one Event, for the higher.
    assert budget_events(cap, costing(40), costing(85), "USD") == [
        ("Warning", "BudgetWarning", "spent 85.00 USD, 80% of spec.maxCost (100 USD)")
    ]
    [(kind, reason, message)] = budget_events(cap, costing(90, True), costing(101, False), "USD")
    assert (kind, reason) == ("Warning", "BudgetExceeded") and message.startswith("spent 101.00 USD, all of")
    assert budget_events(cap, costing(101, False), costing(102, False), "USD") == []
    # A cap lowered under the spending is exceeded too; one raised crosses nothing.
    assert budget_events(spec(5), costing(8, True), costing(8, False), "USD")[0][1] == "BudgetExceeded"
    assert budget_events(spec(1000), costing(101, False), costing(101, True), "USD") == []
    assert budget_events(spec(None), costing(0), costing(1e6), "USD") == []


def test_the_operator_holds_a_job_that_spends_its_budget_and_lets_it_go_when_the_cap_is_raised(
    cluster: EmulatorServer,
) -> None:
    # A CPU pod at 36000 an hour: 10 a second.
    config = OperatorConfig(progress_poll_seconds=0.2, cpu_job=CpuJobResources(hourly_price=36000.0))
    with OperatorThread(cluster, config):
        cluster.api.create(dataset())
        cluster.api.create(training_job(maxCost=5))
        wait_for(lambda: child_job(cluster.api))
        start = configured_job(cluster.api)["startId"]
        play_training_operator(cluster.api, "llama", "Running", active=1)
        wait_for(lambda: child_job(cluster.api)["spec"]["runPolicy"]["suspend"] is True, "the budget hold")
        stopping = wait_for(lambda: phase_is(cluster.api, "Stopping"))
        assert stopping["message"].startswith("stopping: spec.maxCost is spent")
        assert condition(stopping, "WithinBudget")["reason"] == "BudgetExceeded"
        assert cluster.api.get(TJ, "TrainingJob", "llama")["spec"]["suspend"] is False
        event = wait_for(lambda: event_with(cluster.api, "BudgetExceeded", "Warning"))
        assert "spec.maxCost (5 USD)" in event["message"]
        play_training_operator(cluster.api, "llama", "Suspended", active=0)
        stopped = wait_for(lambda: phase_is(cluster.api, "Stopped"))
        assert condition(stopped, "Ready")["reason"] == "BudgetExceeded"
        spent = stopped["resourceUsage"]["cost"]
        # Stopped, the job spends no more; a raised cap lets it go.
        cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"maxCost": 1e6}})
        wait_for(lambda: child_job(cluster.api)["spec"]["runPolicy"]["suspend"] is False, "the hold lifted")
        resuming = wait_for(lambda: phase_is(cluster.api, "Pending"))
        assert condition(resuming, "WithinBudget")["status"] == "True"
        assert job_status(cluster.api)["resourceUsage"]["cost"] == spent
        assert cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")["spec"]["runPolicy"]["suspend"] is False
        # The hold paused the start, it did not end it: the pods go on from its own checkpoints.
        assert configured_job(cluster.api)["startId"] == start


def test_a_queued_job_that_spends_its_budget_gives_its_quota_back_to_kueue(cluster: EmulatorServer) -> None:
    """The hold of a job Kueue admitted deactivates its Workload, as a stop does: Kueue would
    otherwise unsuspend the child it admitted, and the job would run on past its cap."""
    config = OperatorConfig(progress_poll_seconds=0.2, cpu_job=CpuJobResources(hourly_price=36000.0))
    with OperatorThread(cluster, config):
        cluster.api.create(dataset())
        cluster.api.create(training_job(maxCost=5, labels={kueue.QUEUE_LABEL: "team"}))
        child = wait_for(lambda: child_job(cluster.api))
        assert child["spec"]["runPolicy"]["suspend"] is True  # created suspended, for Kueue to admit
        workload = cluster.api.create(admitted_workload(child))
        # Kueue admits: it unsuspends the child, whose pods run.
        cluster.api.patch(PYTORCHJOB, "PyTorchJob", "llama", {"spec": {"runPolicy": {"suspend": False}}})
        play_training_operator(cluster.api, "llama", "Running", active=1)
        wait_for(lambda: child_job(cluster.api)["spec"]["runPolicy"]["suspend"] is True, "the budget hold")
        deactivated = wait_for(
            lambda: (
                w
                if (w := cluster.api.get(kueue.API, "Workload", workload["metadata"]["name"]))["spec"].get("active")
                is False
                else None
            ),
            "the Workload deactivated",
        )
        assert deactivated["spec"]["queueName"] == "team"
        play_training_operator(cluster.api, "llama", "Suspended", active=0)
        stopped = wait_for(lambda: phase_is(cluster.api, "Stopped"))
        assert condition(stopped, "Ready")["reason"] == "BudgetExceeded"
        # A raised cap gives the Workload back to Kueue, which admits the job again; the operator
        # leaves the child suspended for Kueue to start.
        cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"maxCost": 1e6}})
        wait_for(
            lambda: cluster.api.get(kueue.API, "Workload", workload["metadata"]["name"])["spec"].get("active") is True,
            "the Workload active again",
        )
        assert child_job(cluster.api)["spec"]["runPolicy"]["suspend"] is True


def admitted_workload(child: dict[str, Any]) -> dict[str, Any]:
    """The Workload Kueue makes for ``child`` and admits (found by its job-uid label)."""
    meta = child["metadata"]
    template = child["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    return {
        "apiVersion": kueue.API,
        "kind": "Workload",
        "metadata": {
            "name": kueue.workload_name("PyTorchJob", "kubeflow.org", meta["name"], meta["uid"]),
            "namespace": meta["namespace"],
            "labels": {kueue.JOB_UID_LABEL: meta["uid"]},
        },
        "spec": {"queueName": "team", "podSets": [{"name": "master", "count": 1, "template": template}]},
        "status": {
            "conditions": [
                {
                    "type": "Admitted",
                    "status": "True",
                    "reason": "Admitted",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        },
    }
