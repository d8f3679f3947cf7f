"""A budget end to end: a job that spends its spec.maxCost is stopped with a checkpoint by the
operator (its spec untouched), says so in its status and Events, and resumes from that
checkpoint to the end once the cap is raised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from tensorone_operator.config import CpuJobResources, OperatorConfig

from tests.factories import stop_reason, tiny_dataset, tiny_training_job
from tests.kube.polling import wait_for
from tests.system.conftest import POLL_SECONDS, TRAINING_TIMEOUT, LocalCluster, local_cluster

pytestmark = pytest.mark.slow

# A CPU pod at 3600 an hour: a one-pod job spends 1 (USD) a second of running time.
PER_SECOND = CpuJobResources(hourly_price=3600.0)


@pytest.fixture
def priced(tmp_path: Path) -> Iterator[LocalCluster]:
    config = OperatorConfig(progress_poll_seconds=POLL_SECONDS, cpu_job=PER_SECOND)
    with local_cluster(tmp_path, config) as local:
        yield local


def spend(namespace: str) -> float:
    return (
        REGISTRY.get_sample_value("tensorone_operator_spend_total", {"namespace": namespace, "currency": "USD"}) or 0.0
    )


def checkpoint_at_current_step(status: dict[str, Any]) -> dict[str, Any] | None:
    step = (status.get("progress") or {}).get("currentStep")
    return next((c for c in status.get("checkpoints") or [] if c.get("step") == step), None)


def within_budget(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "WithinBudget"), {})


def test_a_job_over_its_budget_stops_with_a_checkpoint_and_resumes_when_the_cap_is_raised(
    priced: LocalCluster,
) -> None:
    spent_before = spend("default")
    priced.apply(tiny_dataset())
    job = tiny_training_job("capped", epochs=8)
    job["spec"]["maxCost"] = 10000
    priced.apply(job)
    wait_for(lambda: (priced.status("capped").get("progress") or {}).get("currentStep", 0) >= 2, "some steps")
    assert within_budget(priced.status("capped"))["status"] == "True"
    # Frozen mid-run (however fast the run would be), the cap is lowered under what was spent:
    # the operator suspends the PyTorchJob, and the trainer saves a checkpoint when it goes on.
    with priced.paused("capped"):
        priced.patch_spec("capped", {"maxCost": 1})
        wait_for(lambda: priced.child_suspended("capped"), "the budget stop reaching the PyTorchJob")
    stopped = wait_for(lambda: priced.phase_is("capped", "Stopped"), "Stopped", timeout=TRAINING_TIMEOUT)
    assert stopped["message"].startswith("stopped: spec.maxCost is spent"), stopped["message"]
    assert within_budget(stopped)["status"] == "False" and within_budget(stopped)["reason"] == "BudgetExceeded"
    assert stopped["resourceUsage"]["cost"] >= 1
    assert priced.job("capped")["spec"].get("suspend") is False  # the operator's hold, not the spec's
    # The trainer's checkpoint at the step it stopped on (named for the epoch when that is an epoch's last).
    checkpoint = wait_for(
        lambda: checkpoint_at_current_step(priced.status("capped")),
        "the stop checkpoint in the status",
        explain=lambda: priced.diagnose("capped"),
    )
    assert checkpoint["reason"] == stop_reason(priced.status("capped")["progress"])
    wait_for(
        lambda: "BudgetExceeded" in {e["reason"] for e in priced.events("capped")},
        "the budget Events",
        explain=lambda: str([e["reason"] for e in priced.events("capped")]),
    )
    assert spend("default") - spent_before >= 1

    priced.patch_spec("capped", {"maxCost": 10000})
    resumed = wait_for(lambda: priced.status("capped").get("resumedFrom"), "the resumed run's report")
    assert resumed == checkpoint["id"]
    done = wait_for(lambda: priced.phase_is("capped", "Completed"), "Completed", timeout=TRAINING_TIMEOUT)
    assert within_budget(done)["status"] == "True"
