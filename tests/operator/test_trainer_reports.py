"""The /progress poll against a report server under the test's control: a well-formed report is
kept; every hostile answer is refused with a reason, read no further than the limit, and never
followed elsewhere."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import tensorone_operator.trainer_reports
from tensorone_operator.builders import CONTAINER_NAME, MASTER_REPLICA, REPORT_PORT_NAME
from tensorone_operator.live_status import REPLICA_TYPE_LABEL
from tensorone_operator.trainer_reports import TIMEOUTS_REFUSED, TrainerReports

from tensorone.api.report import MAX_REPORT_BYTES
from tests.operator.report_server import HOSTILE, STARTED, ReportServer, report_json

KEY = ("tenant-a", "job")


def master_pod(port: int) -> dict[str, Any]:
    """A running rank-0 pod whose report port is ``port`` on 127.0.0.1."""
    return {
        "metadata": {"name": "job-master-0", "uid": "pod-1", "labels": {REPLICA_TYPE_LABEL: MASTER_REPLICA.lower()}},
        "spec": {
            "containers": [{"name": CONTAINER_NAME, "ports": [{"name": REPORT_PORT_NAME, "containerPort": port}]}]
        },
        "status": {
            "podIP": "127.0.0.1",
            "containerStatuses": [{"name": CONTAINER_NAME, "state": {"running": {}}}],
        },
    }


@pytest.fixture
def server() -> Iterator[ReportServer]:
    with ReportServer() as running:
        yield running


@pytest.fixture
async def reports(server: ReportServer) -> AsyncIterator[TrainerReports]:
    kept = TrainerReports()
    kept.pod_changed(KEY, master_pod(server.port), deleted=False)
    yield kept
    await kept.close()


async def test_a_well_formed_report_is_kept(server: ReportServer, reports: TrainerReports) -> None:
    await reports.poll(KEY)
    kept = reports.latest(KEY)
    assert kept is not None and kept.report.step == 5
    assert reports.refusal(KEY) is None


@pytest.mark.parametrize("answer", [a for a in HOSTILE if a != "slow_drip"])
async def test_each_hostile_answer_is_refused_with_its_reason(
    answer: str, server: ReportServer, reports: TrainerReports
) -> None:
    server.answer = answer
    await reports.poll(KEY)
    assert reports.latest(KEY) is None
    refusal = reports.refusal(KEY)
    assert refusal, f"{answer} was not refused"
    expected = {
        "huge_body": f"over the limit of {MAX_REPORT_BYTES} bytes",
        "many_checkpoints": f"over the limit of {MAX_REPORT_BYTES} bytes",
        "huge_numbers": "report field epoch",
        "out_of_schema": "report field learningRate",
        "malformed": "report: Invalid JSON",
        "gzip_bomb": "report: Invalid JSON",
        "redirect": "redirects are not followed",
        "not_http": "no valid HTTP response (Too many headers received)",
        "far_future": "report field startedAt: 9999-01-01T00:00:00Z is in the future",
    }[answer]
    assert expected in refusal, refusal
    # A well-formed report afterwards is kept and clears the refusal.
    server.answer = "valid"
    await reports.poll(KEY)
    assert reports.refusal(KEY) is None and reports.latest(KEY) is not None


async def test_a_report_from_the_future_does_not_outrank_the_genuine_ones_after_it(
    server: ReportServer, reports: TrainerReports
) -> None:
    """Reports are kept by the latest process start: one claiming to start in year 9999 would stay
    the newest for good. It is refused, the report kept before stays, and the next ones are kept."""
    await reports.poll(KEY)
    server.answer = "far_future"
    await reports.poll(KEY)
    assert "report field startedAt" in (reports.refusal(KEY) or "")
    kept = reports.latest(KEY)
    assert kept is not None and kept.report.step == 5
    for step in (6, 7):
        server.serve(report_json(step=step))
        await reports.poll(KEY)
        kept = reports.latest(KEY)
        assert kept is not None and kept.report.step == step
    assert reports.refusal(KEY) is None


async def test_a_redirect_to_another_tenants_trainer_is_not_followed(reports: TrainerReports) -> None:
    with ReportServer() as attacker, ReportServer() as victim:
        attacker.answer, attacker.redirect_to = "redirect", f"http://127.0.0.1:{victim.port}/progress"
        reports.pod_changed(KEY, master_pod(attacker.port), deleted=False)
        await reports.poll(KEY)
        assert victim.requests == 0
    assert reports.latest(KEY) is None
    assert f"127.0.0.1:{victim.port}" in (reports.refusal(KEY) or "")


async def test_a_slow_drip_is_refused_once_it_keeps_timing_out(
    server: ReportServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tensorone_operator.trainer_reports, "PROGRESS_TIMEOUT_SECONDS", 0.3)
    server.answer = "slow_drip"
    reports = TrainerReports()
    reports.pod_changed(KEY, master_pod(server.port), deleted=False)
    try:
        for _ in range(TIMEOUTS_REFUSED - 1):
            await reports.poll(KEY)
        assert reports.refusal(KEY) is None  # one slow answer of a busy trainer is no fault
        await reports.poll(KEY)
        assert "no complete answer within" in (reports.refusal(KEY) or "")
    finally:
        await reports.close()


async def test_a_refusal_is_announced_once_as_a_warning(server: ReportServer, reports: TrainerReports) -> None:
    server.answer = "malformed"
    await reports.poll(KEY)
    events = reports.news(KEY, {})
    assert [(kind, reason) for kind, reason, _ in events] == [("Warning", "ReportRefused")]
    await reports.poll(KEY)
    assert reports.news(KEY, {}) == []


# The termination message and the order of pods ---------------------------------------------------


def ended_master_pod(uid: str, created: str, report: dict[str, Any] | str, *, exit_code: int = 0) -> dict[str, Any]:
    """A rank-0 pod created at ``created`` whose trainer ended with ``exit_code``, leaving ``report``."""
    pod = master_pod(0)
    pod["metadata"].update({"uid": uid, "creationTimestamp": created})
    message = report if isinstance(report, str) else json.dumps(report)
    terminated = {"exitCode": exit_code, "message": message}
    pod["status"]["containerStatuses"] = [{"name": CONTAINER_NAME, "state": {"terminated": terminated}}]
    return pod


def running_master_pod(uid: str, created: str, port: int) -> dict[str, Any]:
    pod = master_pod(port)
    pod["metadata"].update({"uid": uid, "creationTimestamp": created})
    return pod


async def test_a_later_pods_reports_win_even_when_the_pod_before_had_a_clock_ahead(server: ReportServer) -> None:
    """Pods are ordered by the API server's clock: a pod whose clock ran four minutes ahead (within
    the skew allowed) must not freeze the status of the resumed job's next pod."""
    ahead = (STARTED + timedelta(minutes=4)).isoformat()
    reports = TrainerReports()
    try:
        first = report_json(step=80, startedAt=ahead, updatedAt=ahead, state="stopped")
        reports.pod_changed(KEY, ended_master_pod("pod-1", "2026-01-15T11:59:00Z", first), deleted=False)
        assert (kept := reports.latest(KEY)) is not None and kept.report.step == 80
        # The resumed job's pod, created later, resumes from an earlier checkpoint with a true clock.
        reports.pod_changed(KEY, running_master_pod("pod-2", "2026-01-15T12:00:30Z", server.port), deleted=False)
        server.serve(report_json(step=61))
        await reports.poll(KEY)
        assert (kept := reports.latest(KEY)) is not None and kept.report.step == 61
        # The first pod's last state seen again (a late watch event) does not take it back.
        reports.pod_changed(KEY, ended_master_pod("pod-1", "2026-01-15T11:59:00Z", first), deleted=True)
        assert (kept := reports.latest(KEY)) is not None and kept.report.step == 61
    finally:
        await reports.close()


def test_an_accepted_termination_message_makes_the_report_valid_again() -> None:
    reports = TrainerReports()
    reports.pod_changed(KEY, ended_master_pod("pod-1", "2026-01-15T12:00:00Z", "{not json", exit_code=1), deleted=False)
    assert "termination message of pod job-master-0" in (reports.refusal(KEY) or "")
    final = report_json(step=9, state="completed")
    reports.pod_changed(KEY, ended_master_pod("pod-2", "2026-01-15T12:01:00Z", final), deleted=False)
    assert reports.refusal(KEY) is None
    assert (kept := reports.latest(KEY)) is not None and kept.report.step == 9


def test_the_exit_code_of_a_failed_master_is_forgotten_once_a_master_runs_again() -> None:
    reports = TrainerReports()
    reports.pod_changed(
        KEY, ended_master_pod("pod-1", "2026-01-15T12:00:00Z", report_json(), exit_code=3), deleted=False
    )
    assert reports.exit_code(KEY) == 3
    reports.pod_changed(KEY, running_master_pod("pod-2", "2026-01-15T12:01:00Z", 9400), deleted=False)
    assert reports.exit_code(KEY) is None
