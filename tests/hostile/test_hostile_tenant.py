"""A hostile tenant's custom image against the operator as deployed, beside a normal tenant's job.

Each hostile job (namespace team-a) first serves a well-formed report, then one hostile answer on
/progress: a body of hundreds of MB, numbers far out of bounds, a redirect to the normal tenant's
trainer (team-b), a slow drip, malformed JSON, values outside the schema (a start in the future
among them), 10,000 checkpoints, an answer that is not HTTP, a gzip bomb. Every one must be refused
with condition ReportValid False naming why and a warning Event, while the job's phase, running
time and cost go on, and nothing of the hostile answer reaches the status. Another job's report
sits at every bound at once and must be accepted whole. Termination messages with hostile content
are refused the same way. Meanwhile the normal job's status lag, the operator's peak memory and its
liveness endpoint are measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from tensorone_operator.status_writer import VOLATILE_WRITE_SECONDS

from tensorone.api.report import MAX_REPORT_BYTES, MAX_REPORT_CHECKPOINTS
from tensorone.api.v1alpha1.trainingjob import MAX_HISTORY_POINTS, MAX_STATUS_CHECKPOINTS
from tests.factories import timestamp
from tests.hostile.conftest import (
    HOSTILE_NAMESPACE,
    NORMAL_NAMESPACE,
    POLL_SECONDS,
    STEP_SECONDS,
    LagSampler,
    Tenants,
    chart_memory_limit_mb,
    p99,
    summary,
)
from tests.kube.polling import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

NORMAL = "normal"
STARTED = "2026-11-01T12:00:00+00:00"
# The refusal as shown in a condition or an Event: it says why in a sentence, never the payload.
MAX_REFUSAL_CHARS = 512


def report(**fields: Any) -> dict[str, Any]:
    """A running custom trainer's report (wire form), ``fields`` replaced."""
    return {
        "state": "running",
        "epoch": 1,
        "totalEpochs": 2,
        "step": 5,
        "totalSteps": 100,
        "loss": 1.5,
        "tokensPerSecond": 1000.0,
        "startedAt": STARTED,
        "updatedAt": STARTED,
        "elapsedSeconds": 10.0,
        "stepSeconds": 9.0,
        "checkpoints": [checkpoint(3)],
        "lossHistory": [{"step": 1, "loss": 2.0}, {"step": 5, "loss": 1.5}],
        **fields,
    }


def checkpoint(step: int, id: str | None = None) -> dict[str, Any]:
    return {"id": id or f"ckpt-step-{step}", "epoch": 0, "step": step, "createdAt": STARTED, "sizeBytes": 1000}


def body(value: Any) -> dict[str, Any]:
    """Control: serve ``value`` (JSON, or text as it is)."""
    return {"serve": "body", "body": value if isinstance(value, str) else json.dumps(value)}


@dataclass
class Hostile:
    """A hostile job's answers, served one after the other, and what each refusal must say."""

    answers: list[tuple[dict[str, Any], str]]
    forbidden: list[str] = field(default_factory=list)


HOSTILE: dict[str, Hostile] = {
    "huge-body": Hostile(
        # 512 MB of a message, streamed without a Content-Length.
        [({"serve": "stream", "body": '{"state": "running", "message": "x', "streamMegabytes": 512}, "over the limit")],
        ["xxxxxxxx"],
    ),
    "huge-numbers": Hostile(
        [
            (body(report(tokensPerSecond=1e70)), "tokensPerSecond"),
            (body(report(epoch=6_000_000)), "epoch"),
            (body(report(learningRate=-0.001)), "learningRate"),
            (body(report(step=10**30, totalSteps=10**31)), "step"),
        ],
        ["1e+70", "6000000", "-0.001", "1000000000000000000000000000000"],
    ),
    "redirect": Hostile([({"serve": "redirect", "location": "(the normal job's trainer)"}, "redirect")]),
    "slow-drip": Hostile(
        [({"serve": "drip", "body": json.dumps(report(step=7)), "dripSeconds": 1.0}, "no complete answer")]
    ),
    "malformed": Hostile(
        [
            (body('{"state": "running", "step": '), "Invalid JSON"),
            (body("<html>not a report</html>"), "Invalid JSON"),
            (body("[1, 2, 3]"), "report"),
        ],
        ["html"],
    ),
    "out-of-schema": Hostile(
        [
            (body(report(state="exploding")), "state"),
            (body(report(step="many")), "step"),
            (body(report(checkpoints=[checkpoint(4, "../team-b/ckpt-epoch-1")])), "checkpoints[0].id"),
            (body(report(reason="Evil reason\n\x1b[31mred")), "reason"),
            (body(report(message="m" * 5000)), "message"),
            (body(report(lossHistory=[{"step": 1, "loss": 1.0}] * 1025)), "lossHistory"),
            (body(report(startedAt="the day after tomorrow")), "startedAt"),
            # A start in the future would outrank every genuine report after it.
            (
                body(report(startedAt="9999-01-01T00:00:00Z", step=50)),
                "startedAt: 9999-01-01T00:00:00Z is in the future",
            ),
            # A time that is valid where it is written, but not in UTC.
            (body(report(checkpoints=[{**checkpoint(4), "createdAt": "0001-01-01T00:00:00+14:00"}])), "createdAt"),
        ],
        ["exploding", "many", "../", "Evil", "mmmmmmmm", "tomorrow"],
    ),
    "many-checkpoints": Hostile(
        [
            (body(report(checkpoints=[checkpoint(i) for i in range(10_000)])), "over the limit"),
            (body(report(checkpoints=[checkpoint(i) for i in range(MAX_REPORT_CHECKPOINTS + 1)])), "checkpoints"),
        ],
        ["ckpt-step-9999", f"ckpt-step-{MAX_REPORT_CHECKPOINTS}"],
    ),
    "not-http": Hostile(
        [
            # A status line, then header lines without end.
            ({"serve": "raw", "body": "HTTP/1.1 200 OK\r\n", "tail": "X-Flood: " + "f" * 90 + "\r\n"}, "HTTP"),
            # A chunk size no reader can hold.
            (
                {"serve": "raw", "body": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "tail": "f" * 1024},
                "HTTP",
            ),
        ],
        ["X-Flood", "ffffffffffffffffffffffffffffffffffffffffffff"],
    ),
    "gzip-bomb": Hostile([({"serve": "gzip", "body": "0" * (4 * MAX_REPORT_BYTES)}, "Invalid JSON")]),
}

# A report at every bound at once: accepted, and mirrored within the status schema.
EXTREMES = report(
    epoch=10_000,
    totalEpochs=10_000,
    step=10**12 - 1,
    totalSteps=10**12,
    loss=1e308,
    bestLoss=-1e308,
    tokensPerSecond=1e12,
    samplesPerSecond=1e12,
    learningRate=10.0,
    memoryBytes=2**60,
    elapsedSeconds=1e9,
    stepSeconds=1e9,
    message="\u00e9" * 4096,
    checkpoints=[checkpoint(i, f"c{i:0127d}") for i in range(MAX_REPORT_CHECKPOINTS)],
    lossHistory=[{"step": i, "loss": 1.0 / (i + 1)} for i in range(1024)],
    evalHistory=[{"step": i, "loss": 1.0} for i in range(1024)],
)
BASELINE = report()
# The status fields a report owns and that must not move while the hostile answers are refused.
MIRRORED = ("checkpoints", "lossHistory", "resumedFrom")


@dataclass
class Scene:
    """What the module's fixture set up: the normal job's start, when the hostile answers began,
    and each hostile job's status before."""

    normal_started_at: float
    hostile_since: float
    baselines: dict[str, dict[str, Any]]


def mirrored(status: dict[str, Any]) -> dict[str, Any]:
    """What of a status came from the report (running time and estimates aside)."""
    progress = {k: v for k, v in (status.get("progress") or {}).items() if k not in ("elapsedTime", "remainingTime")}
    return {"progress": progress, "metrics": status.get("metrics"), **{k: status.get(k) for k in MIRRORED}}


@pytest.fixture(scope="module")
def scene(tenants: Tenants) -> Scene:
    """The normal job stepping in team-b, its status sampled from its start; each hostile job
    (team-a) accepted once with BASELINE and then switched, all at once, to its first hostile
    answer."""
    tenants.start_job(NORMAL_NAMESPACE, NORMAL, serve="live", stepSeconds=STEP_SECONDS)
    normal_started_at = tenants.started_at(NORMAL_NAMESPACE, NORMAL)
    tenants.sampler = LagSampler(tenants, NORMAL_NAMESPACE, NORMAL)
    tenants.sampler.start()
    for name in (*HOSTILE, "extremes"):
        tenants.start_job(HOSTILE_NAMESPACE, name, **body(BASELINE))
    baselines = {name: at_step(tenants, name, 5) for name in HOSTILE}
    hostile_since = time.time()
    for name, hostile in HOSTILE.items():
        control = hostile.answers[0][0]
        if name == "redirect":
            control = {**control, "location": tenants.report_url(NORMAL_NAMESPACE, NORMAL)}
        tenants.control(HOSTILE_NAMESPACE, name, **control)
    tenants.control(HOSTILE_NAMESPACE, "extremes", **body(EXTREMES))
    return Scene(normal_started_at, hostile_since, baselines)


def at_step(tenants: Tenants, name: str, step: int) -> dict[str, Any]:
    """A hostile job's status once it shows ``step``."""
    return wait_for(
        lambda: (s := tenants.status(HOSTILE_NAMESPACE, name)).get("progress", {}).get("currentStep") == step and s,
        f"{name} at step {step}",
        explain=lambda: tenants.explain(HOSTILE_NAMESPACE, name),
    )


def warned(tenants: Tenants, name: str, fragment: str) -> dict[str, Any]:
    """The job's warning Event ReportRefused naming ``fragment``, once there is one."""
    return wait_for(
        lambda: next(
            (
                e
                for e in tenants.events(HOSTILE_NAMESPACE, name)
                if e["type"] == "Warning" and e["reason"] == "ReportRefused" and fragment in e["message"]
            ),
            None,
        ),
        f"a warning Event naming {fragment!r}",
    )


def ended(tenants: Tenants, name: str, phase: str) -> dict[str, Any]:
    """A hostile job's status once its phase is ``phase``."""
    return wait_for(
        lambda: (s := tenants.status(HOSTILE_NAMESPACE, name)).get("phase") == phase and s,
        f"{name} {phase}",
        explain=lambda: tenants.explain(HOSTILE_NAMESPACE, name),
    )


def usage_written_since(tenants: Tenants, name: str, moment: float) -> dict[str, Any]:
    """A hostile job's status once its running time and cost were measured at ``moment`` or later."""
    since = timestamp(datetime.fromtimestamp(moment, UTC))
    return wait_for(
        lambda: (s := tenants.status(HOSTILE_NAMESPACE, name))["resourceUsage"]["measuredAt"] >= since and s,
        f"{name}'s running time and cost measured since {since}",
        explain=lambda: tenants.explain(HOSTILE_NAMESPACE, name),
    )


def refused_with(tenants: Tenants, name: str, fragment: str) -> dict[str, Any]:
    """The job's ReportValid condition once it is False naming ``fragment``."""

    def probe() -> dict[str, Any]:
        found = tenants.condition(HOSTILE_NAMESPACE, name, "ReportValid")
        assert found.get("status") == "False" and fragment in found.get("message", ""), found
        return found

    return wait_for(
        probe, f"ReportValid False naming {fragment!r}", explain=lambda: tenants.explain(HOSTILE_NAMESPACE, name)
    )


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_answer_is_refused_and_the_job_goes_on(tenants: Tenants, scene: Scene, name: str) -> None:
    hostile = HOSTILE[name]
    for index, (control, fragment) in enumerate(hostile.answers):
        if index > 0:
            tenants.control(HOSTILE_NAMESPACE, name, **control)
        found = refused_with(tenants, name, fragment)
        assert found["reason"] == "ReportRefused" and len(found["message"]) <= MAX_REFUSAL_CHARS, found
    # One warning Event: the limiter posts no repeat of a reason within seconds, so an image that
    # changes its answer on every poll cannot flood the namespace's Events.
    warning = warned(tenants, name, hostile.answers[0][1])
    assert len(warning["message"]) <= MAX_REFUSAL_CHARS, warning

    # Phase, running time and cost still follow the PyTorchJob: the write that set the condition
    # carried them, up to date.
    status = tenants.status(HOSTILE_NAMESPACE, name)
    usage = status["resourceUsage"]
    assert status["phase"] == "Running", status.get("message")
    assert usage["measuredAt"] >= found["lastTransitionTime"], (usage, found)
    assert usage["runningSeconds"] > scene.baselines[name]["resourceUsage"]["runningSeconds"], usage
    assert usage["cost"] > 0 and usage["gpuHours"] > 0, usage
    # Nothing of a refused answer reached the status.
    assert mirrored(status) == mirrored(scene.baselines[name])
    text = json.dumps(status)
    assert not [word for word in hostile.forbidden if word in text], text[:2000]
    assert len(text) < 16_000


def test_the_redirect_showed_nothing_of_the_other_tenants_job(tenants: Tenants, scene: Scene) -> None:
    refused_with(tenants, "redirect", "redirect")
    normal_step = tenants.status(NORMAL_NAMESPACE, NORMAL)["progress"]["currentStep"]
    assert normal_step > 5
    assert tenants.status(HOSTILE_NAMESPACE, "redirect")["progress"]["currentStep"] == 5


def test_a_report_at_every_bound_is_accepted_within_the_status_schema(tenants: Tenants, scene: Scene) -> None:
    status = wait_for(
        lambda: (s := tenants.status(HOSTILE_NAMESPACE, "extremes"))["progress"]["currentStep"] == 10**12 - 1 and s,
        "the extreme report mirrored",
        explain=lambda: tenants.explain(HOSTILE_NAMESPACE, "extremes"),
    )
    assert tenants.condition(HOSTILE_NAMESPACE, "extremes", "ReportValid").get("status") != "False"
    assert status["phase"] == "Running"
    assert status["progress"]["currentEpoch"] == 10_000 and status["progress"]["percentage"] == 100.0
    assert len(status["checkpoints"]) == MAX_STATUS_CHECKPOINTS
    assert status["checkpoints"][-1]["id"] == EXTREMES["checkpoints"][-1]["id"]
    assert len(status["lossHistory"]) <= MAX_HISTORY_POINTS and len(status["evalLossHistory"]) <= MAX_HISTORY_POINTS
    assert len(status["metrics"]["throughput"]) <= 64
    assert len(json.dumps(status)) < 32_000
    # The write that mirrored it carried the running time and cost, up to date.
    assert usage_written_since(tenants, "extremes", scene.hostile_since)["resourceUsage"]["cost"] > 0


TERMINATIONS: dict[str, tuple[int, str, str]] = {
    # name: (exit code, termination message, the phase the job ends in)
    "epoch-bomb": (0, json.dumps(report(state="completed", epoch=6_000_000, step=100)), "Completed"),
    "garbage-exit": (1, "\x1b[2J\x1b[31mowned\n" * 256, "Failed"),
}


def test_hostile_termination_messages_are_refused_and_the_job_ends(tenants: Tenants, scene: Scene) -> None:
    for name in TERMINATIONS:
        tenants.start_job(HOSTILE_NAMESPACE, name, **body(BASELINE))
    for name, (code, message, _) in TERMINATIONS.items():
        at_step(tenants, name, 5)
        tenants.control(HOSTILE_NAMESPACE, name, **body(BASELINE), exit={"code": code, "message": message})
    for name, (_, _, phase) in TERMINATIONS.items():
        final = ended(tenants, name, phase)
        found = refused_with(tenants, name, "termination message")
        assert len(found["message"]) <= MAX_REFUSAL_CHARS, found
        warned(tenants, name, "termination message")
        status = tenants.status(HOSTILE_NAMESPACE, name)
        assert status["progress"]["currentStep"] == 5
        # Its usage was written to the end (a run of a second or two may cost less than a cent).
        assert {"runningSeconds", "gpuHours", "cost"} <= set(final["resourceUsage"]), final["resourceUsage"]
        text = json.dumps(status)
        assert "6000000" not in text and "owned" not in text and "\x1b" not in text, text[:2000]


def test_the_normal_tenant_and_the_operator_are_unhurt(tenants: Tenants, scene: Scene) -> None:
    for name in HOSTILE:  # every hostile answer in flight
        refused_with(tenants, name, "")
    # Long enough under the hostile answers for every hostile job's clock-only status write.
    until = scene.hostile_since + VOLATILE_WRITE_SECONDS + 2 * POLL_SECONDS
    for name in HOSTILE:
        assert usage_written_since(tenants, name, until)["phase"] == "Running"
    sampler = tenants.sampler
    assert sampler is not None
    calm = sampler.lags(scene.normal_started_at, scene.normal_started_at + 2 * POLL_SECONDS, scene.hostile_since)
    hostile = sampler.lags(scene.normal_started_at, scene.hostile_since, until)
    peak = tenants.operator.peak_rss_mb()
    limit = chart_memory_limit_mb()
    liveness = max(sampler.liveness)
    print(
        f"\nnormal job status lag, hostile jobs well-behaved ({len(calm)} steps): {summary(calm)}"
        f"\nnormal job status lag under hostile answers ({len(hostile)} steps): {summary(hostile)}"
        f"\noperator peak RSS {peak:.0f} MiB (chart limit {limit:.0f} MiB); slowest liveness answer {liveness:.2f} s"
    )
    assert peak < limit
    assert liveness < 5.0, "the chart's liveness probe times out after 5 s"
    # Its usual bound: the documented one (a poll interval, and a second to write the status), or
    # what it showed beside well-behaved neighbours on this machine, if that is more; with one more
    # poll interval for the noise of two shared cores (p99s of 1.3 to 2.0 s were seen against a
    # bound of 2 s). What a hostile answer could do to the others costs more: a poll held for the
    # 2 s timeout, or an event loop held (once, 52 s).
    usual = max(POLL_SECONDS + 1.0, p99(calm))
    assert p99(hostile) <= usual + POLL_SECONDS, f"{summary(hostile)}; usual p99 {usual:.2f} s"
    tenants.control(NORMAL_NAMESPACE, NORMAL, exit={"code": 0, "message": ""})
    wait_for(lambda: tenants.status(NORMAL_NAMESPACE, NORMAL).get("phase") == "Completed", "the normal job Completed")
    assert not tenants.condition(NORMAL_NAMESPACE, NORMAL, "ReportValid")
