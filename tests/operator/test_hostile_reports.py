"""A tenant's custom image answering /progress with each hostile answer, against the real operator
beside a normal job: the hostile job gets condition ReportValid False with the reason and a
warning Event, and keeps its phase and usage; the normal job is untouched."""

from __future__ import annotations

from typing import Any

from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import (
    condition,
    dataset,
    event_with,
    job_status,
    phase_is,
    play_training_operator,
    run_master_pod,
    training_job,
)
from tests.operator.report_server import HOSTILE, ReportServer, report_json
from tests.operator.runner import OperatorThread


def step_of(api: Any, name: str) -> int:
    return int((job_status(api, name).get("progress") or {}).get("currentStep") or 0)


def report_validity(api: Any, name: str) -> dict[str, Any]:
    found = condition(job_status(api, name), "ReportValid")
    assert found, f"no ReportValid condition on {name}"
    return found


def test_hostile_reports_are_refused_with_a_condition_and_the_job_goes_on(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    cluster.api.create(dataset())
    with ReportServer() as hostile, ReportServer() as normal:
        cluster.api.create(training_job("normal"))
        cluster.api.create(training_job("hostile"))
        run_master_pod(cluster.api, "normal", normal.port)
        run_master_pod(cluster.api, "hostile", hostile.port)
        wait_for(lambda: step_of(cluster.api, "hostile") == 5, "the hostile job's first, well-formed report")
        for answer in HOSTILE:
            hostile.answer = answer
            refused = wait_for(
                lambda: (c := report_validity(cluster.api, "hostile"))["status"] == "False" and c,
                f"ReportValid False after {answer}",
            )
            assert refused["reason"] == "ReportRefused", refused
            wait_for(lambda: event_with(cluster.api, "ReportRefused", "Warning", name="hostile"))
            hostile.answer = "valid"  # the next answer's refusal is seen as a change
            wait_for(lambda: report_validity(cluster.api, "hostile")["status"] == "True", f"accepted after {answer}")
        assert step_of(cluster.api, "hostile") == 5  # nothing of a refused report reached the status
        # The phase and usage still follow the child.
        hostile.answer = "out_of_schema"
        wait_for(lambda: report_validity(cluster.api, "hostile")["status"] == "False")
        play_training_operator(cluster.api, "hostile", "Succeeded", succeeded=1)
        done = wait_for(lambda: phase_is(cluster.api, "Completed", "hostile"))
        assert "learningRate" in condition(done, "ReportValid")["message"]
        assert done["resourceUsage"]["runningSeconds"] >= 0
        # The normal job beside it converged and never saw a refusal.
        assert step_of(cluster.api, "normal") == 5
        assert not condition(job_status(cluster.api, "normal"), "ReportValid")


def test_a_report_from_the_future_is_refused_and_the_genuine_ones_after_it_are_followed(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    cluster.api.create(dataset())
    with ReportServer() as server:
        server.answer = "far_future"
        cluster.api.create(training_job("clock"))
        run_master_pod(cluster.api, "clock", server.port)
        refused = wait_for(lambda: (c := report_validity(cluster.api, "clock"))["status"] == "False" and c)
        assert "report field startedAt: 9999-01-01T00:00:00Z is in the future" in refused["message"], refused
        for step in (6, 7):
            server.serve(report_json(step=step))
            wait_for(lambda step=step: step_of(cluster.api, "clock") == step, f"the genuine step {step}")  # type: ignore[misc]
        assert report_validity(cluster.api, "clock")["status"] == "True"
        warning = event_with(cluster.api, "ReportRefused", "Warning", name="clock")
        assert "report field startedAt" in warning["message"], warning
