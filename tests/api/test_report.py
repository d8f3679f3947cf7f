"""The progress report as untrusted input: every field bounded, oversized or malformed bodies refused
with a message naming the field, and our own trainer's fullest report well inside every bound."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tensorone.api.report import (
    CLOCK_SKEW,
    MAX_MESSAGE_LENGTH,
    MAX_REPORT_BYTES,
    MAX_REPORT_CHECKPOINTS,
    CheckpointReport,
    InvalidReport,
    ProgressReport,
    TrainerState,
    bounded_message,
    condition_reason,
    parse_report,
)
from tensorone.reporting.progress import HISTORY_POINTS, ProgressTracker, StepRecord

# The operator's clock when it reads the reports below.
NOW = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)


def report(**fields: Any) -> dict[str, Any]:
    """A valid report in wire form, with ``fields`` replacing or adding top-level fields."""
    return {"schemaVersion": 1, "state": "running", "epoch": 1, "totalEpochs": 2, "step": 5, "totalSteps": 10, **fields}


def checkpoint(**fields: Any) -> dict[str, Any]:
    return {
        "id": "ckpt-step-5",
        "epoch": 1,
        "step": 5,
        "createdAt": "2026-11-30T10:00:00Z",
        "sizeBytes": 100,
        "reason": "step",
        **fields,
    }


def test_a_plain_report_parses() -> None:
    parsed = parse_report(json.dumps(report(checkpoints=[checkpoint()])), now=NOW)
    assert parsed.step == 5 and parsed.checkpoints[0].id == "ckpt-step-5"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"tokensPerSecond": 1e70}, "tokensPerSecond"),
        ({"samplesPerSecond": -1.0}, "samplesPerSecond"),
        ({"learningRate": -0.001}, "learningRate"),
        ({"epoch": 6_000_000}, "epoch"),
        ({"totalEpochs": 6_000_000}, "totalEpochs"),
        ({"step": -1}, "step"),
        ({"totalSteps": 10**13}, "totalSteps"),
        ({"memoryBytes": 2**70}, "memoryBytes"),
        ({"elapsedSeconds": 1e20}, "elapsedSeconds"),
        ({"reason": "not a reason!"}, "reason"),
        ({"reason": "A" * 129}, "reason"),
        ({"message": "x" * (MAX_MESSAGE_LENGTH + 1)}, "message"),
        ({"resumedFrom": "../other-namespace"}, "resumedFrom"),
        ({"checkpoints": [checkpoint(id="Ckpt With Spaces")]}, "checkpoints\\[0\\].id"),
        ({"checkpoints": [checkpoint(step=-5)]}, "checkpoints\\[0\\].step"),
        ({"checkpoints": [checkpoint(reason="x" * 40)]}, "checkpoints\\[0\\].reason"),
        ({"checkpoints": [checkpoint(id=f"c-{i}") for i in range(MAX_REPORT_CHECKPOINTS + 1)]}, "checkpoints"),
        ({"lossHistory": [{"step": i, "loss": 1.0} for i in range(5000)]}, "lossHistory"),
        ({"state": "hacking"}, "state"),
        ({"startedAt": "9999-12-31T23:59:59-14:00"}, "startedAt"),
        ({"checkpoints": [checkpoint(createdAt="0001-01-01T00:00:00+14:00")]}, "checkpoints\\[0\\].createdAt"),
        ({"surprise": 1}, "surprise"),
        ({"evalMetrics": {f"metric{i}": 0.5 for i in range(17)}}, "evalMetrics"),
        ({"evalMetrics": {"Not camelCase": 0.5}}, "evalMetrics"),
        ({"evalMetrics": {"accuracy": 1e13}}, "evalMetrics.accuracy"),
        ({"evalMetrics": {"accuracy": "high"}}, "evalMetrics.accuracy"),
    ],
)
def test_a_field_out_of_bounds_is_refused_by_name(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidReport, match=rf"report field {named}\b"):
        parse_report(json.dumps(report(**fields)), now=NOW)


def test_an_oversized_body_is_refused_before_it_is_parsed() -> None:
    body = b" " * (MAX_REPORT_BYTES + 1)
    with pytest.raises(InvalidReport, match=f"over the limit of {MAX_REPORT_BYTES} bytes"):
        parse_report(body, now=NOW)


@pytest.mark.parametrize("body", ["", "not json", "[]", '{"state": "running"'])
def test_a_body_that_is_not_a_report_is_refused(body: str) -> None:
    with pytest.raises(InvalidReport, match="report"):
        parse_report(body, now=NOW)


def test_report_times_are_held_in_utc() -> None:
    times = {"startedAt": "2026-11-30T12:00:00+02:00", "updatedAt": "2026-11-30T10:00:01"}
    parsed = parse_report(json.dumps(report(**times)), now=NOW)
    assert parsed.started_at == datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
    assert parsed.updated_at == datetime(2026, 11, 30, 10, 0, 1, tzinfo=UTC)  # no offset: taken as UTC


@pytest.mark.parametrize("field", ["startedAt", "updatedAt"])
def test_a_time_in_the_future_is_refused_by_name(field: str) -> None:
    """A start in the future would outrank every later report: beyond the clock skew a pod may have,
    it is refused, saying what the operator's clock read."""
    with pytest.raises(InvalidReport, match=rf"report field {field}: 9999-01-01T00:00:00Z is in the future") as refused:
        parse_report(json.dumps(report(**{field: "9999-01-01T00:00:00Z"})), now=NOW)
    assert "the operator's clock reads 2026-12-01T08:00:00Z" in str(refused.value)
    assert "at most 5 minutes" in str(refused.value)
    just_beyond = (NOW + CLOCK_SKEW + timedelta(seconds=1)).isoformat()
    with pytest.raises(InvalidReport, match=rf"report field {field}\b"):
        parse_report(json.dumps(report(**{field: just_beyond})), now=NOW)
    within = (NOW + CLOCK_SKEW).isoformat()  # a pod's clock a little ahead of the operator's
    assert parse_report(json.dumps(report(**{field: within})), now=NOW).step == 5


def test_both_times_in_the_future_are_counted() -> None:
    both = report(startedAt="9999-01-01T00:00:00Z", updatedAt="9999-01-01T00:00:01Z")
    with pytest.raises(InvalidReport, match=r"report field startedAt: .* \(and 1 more problems\)$"):
        parse_report(json.dumps(both), now=NOW)


def test_a_diverged_loss_still_parses() -> None:
    parsed = parse_report('{"state": "diverged", "reason": "Diverged", "loss": NaN}', now=NOW)
    assert parsed.state == TrainerState.diverged and parsed.loss != parsed.loss


def test_our_fullest_report_fits_every_bound() -> None:
    """The tracker after a long run: full curves, the most checkpoints the spec allows kept, a long
    exception as the message: what it serves parses, with room to spare."""
    tracker = ProgressTracker(memory=lambda: 80 * 2**30)
    tracker.set_plan(total_epochs=10000, total_steps=10**9)
    for step in range(1, 20 * HISTORY_POINTS):
        tracker.record_step(StepRecord(step=step, loss=1.0 / step, epoch=1, tokens=10**9, samples=10**6, seconds=1e-9))
        tracker.record_eval(step, 2.0 / step, {f"metric{i}": 1.0 / step for i in range(16)})
    tracker.set_checkpoints(
        [
            CheckpointReport(
                id=f"ckpt-step-{step}",
                epoch=1,
                step=step,
                loss=0.5,
                created_at=datetime.now(UTC),
                size_bytes=2**40,
                reason="step",
            )
            for step in range(1, 102)
        ]
    )
    tracker.set_state(TrainerState.failed, reason="torch.OutOfMemoryError", message="Traceback\n" * 2000)
    body = tracker.report().to_json()
    assert len(body) < MAX_REPORT_BYTES / 4
    parsed = parse_report(body, now=datetime.now(UTC))
    assert parsed.reason == "torchOutOfMemoryError"
    assert parsed.message is not None and len(parsed.message) == MAX_MESSAGE_LENGTH
    assert parsed.tokens_per_second is not None and parsed.tokens_per_second <= 1e12


def test_condition_reason_keeps_what_kubernetes_accepts() -> None:
    assert condition_reason("ValueError") == "ValueError"
    assert condition_reason("my.module.Error") == "mymoduleError"
    assert condition_reason("42 bad-reason ") == "badreason"
    assert condition_reason("!!!") is None
    assert condition_reason(None) is None
    assert condition_reason("B" * 500) == "B" * 128


def test_bounded_message_marks_the_cut() -> None:
    assert bounded_message("short") == "short"
    cut = bounded_message("y" * 10_000)
    assert cut is not None and len(cut) == MAX_MESSAGE_LENGTH and cut.endswith("...")


def test_the_report_model_refuses_out_of_bounds_values_at_construction() -> None:
    """A custom image's client makes the same mistake visible where it happens."""
    with pytest.raises(ValueError, match=r"learning_rate|learningRate"):
        ProgressReport(state=TrainerState.running, learning_rate=-1.0)
