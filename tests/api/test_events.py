"""Metric events: a trainer's page is checked against every bound before the operator keeps it,
and the store stays within its bounds whatever the pod sends."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from tensorone.api.events import (
    MAX_PAGE_BYTES,
    MAX_PAGE_RECORDS,
    MAX_RECORD_BYTES,
    STORE_EVALS,
    STORE_STEPS,
    JobEvent,
    MetricRecord,
    in_time_order,
    merged,
    metric_event,
    parse_page,
    read_store,
    store_text,
)
from tensorone.api.report import InvalidReport

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def record(seq: int, step: int | None = None, kind: str = "step", **fields: Any) -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "step": seq if step is None else step, "time": "2026-12-01T11:59:00Z", **fields}


def page(*records: dict[str, Any]) -> str:
    return json.dumps({"records": list(records)})


def test_a_page_of_our_trainer_parses() -> None:
    body = page(
        record(3, loss=1.5, learningRate=1e-4, gradNorm=0.7, tokensPerSecond=900.0), record(4, 3, "eval", evalLoss=2.0)
    )
    first, second = parse_page(body, after=2, now=NOW)
    assert (first.step, first.grad_norm, second.kind, second.eval_loss) == (3, 0.7, "eval", 2.0)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (page(record(1, loss=float("nan"))), "records[0].loss"),
        (page(record(1, gradNorm=-1.0)), "records[0].gradNorm"),
        (page(record(1, gradNorm=1e300)), "records[0].gradNorm"),
        (page(record(1, learningRate=50.0)), "records[0].learningRate"),
        (page(record(1, tokensPerSecond=1e20)), "records[0].tokensPerSecond"),
        (page(record(1, kind="rm -rf")), "records[0].kind"),
        (page(record(1, extra="x" * 100)), "records[0].extra"),
        (page(record(1, epoch=10**9)), "records[0].epoch"),
        (page(*[record(i) for i in range(1, MAX_PAGE_RECORDS + 2)]), "records"),
        ("not json", "metric events page"),
    ],
)
def test_a_value_out_of_bounds_refuses_the_page_naming_the_field(body: str, named: str) -> None:
    with pytest.raises(InvalidReport, match=re.escape(named)):
        parse_page(body, after=0, now=NOW)


def test_records_out_of_order_before_the_cursor_or_in_the_future_are_refused() -> None:
    with pytest.raises(InvalidReport, match=r"records\[1\]\.seq: 2 does not follow 5"):
        parse_page(page(record(5), record(2)), after=0, now=NOW)
    with pytest.raises(InvalidReport, match=r"records\[0\]\.seq: 3 does not follow 7"):
        parse_page(page(record(3)), after=7, now=NOW)
    future = (NOW + timedelta(hours=1)).isoformat()
    with pytest.raises(InvalidReport, match=r"records\[0\]\.time: .* is in the future"):
        parse_page(page({**record(1), "time": future}), after=0, now=NOW)


def test_a_page_over_the_byte_limit_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(InvalidReport, match=f"over the limit of {MAX_PAGE_BYTES} bytes"):
        parse_page(b" " * (MAX_PAGE_BYTES + 1), after=0, now=NOW)


def widest(seq: int, kind: Literal["step", "eval"] = "step") -> MetricRecord:
    """A record with every field at its longest."""
    number = -1.2345678901234567e-11
    return MetricRecord(
        seq=10**12 - 10**6 + seq,
        kind=kind,
        step=10**12 - 10**6 + seq,
        time=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        epoch=10000,
        loss=number,
        learning_rate=1.2345678901234567e-05,
        grad_norm=-number,
        tokens_per_second=-number,
        samples_per_second=-number,
        eval_loss=number,
    )


def test_the_store_stays_within_its_bounds_and_keeps_the_whole_run() -> None:
    assert len(widest(1).to_line()) <= MAX_RECORD_BYTES
    store: list[MetricRecord] = []
    for first in range(1, 20_001, 100):  # a long run read in pages, with an evaluation after each
        page = [MetricRecord(seq=s, kind="step", step=s, time=NOW, loss=1.0 / s) for s in range(first, first + 100)]
        evals = [MetricRecord(seq=first + 100, kind="eval", step=first + 99, time=NOW, eval_loss=0.5)]
        store = merged(store, [*page, *evals])
    steps = [r.step for r in store if r.kind == "step"]
    assert len(steps) <= STORE_STEPS and len([r for r in store if r.kind == "eval"]) == STORE_EVALS
    assert steps[0] == 1 and steps[-STORE_STEPS // 2 :] == list(range(20_001 - STORE_STEPS // 2, 20_001))
    assert steps == sorted(set(steps))
    # The older steps spread over the whole run, every 2nd, 4th ... step, the oldest the sparsest.
    gaps = [b - a for a, b in itertools.pairwise(steps[1:])]
    assert gaps == sorted(gaps, reverse=True) and all(g & (g - 1) == 0 for g in gaps) and max(gaps) <= 128, gaps
    # The worst a hostile pod can do: every record at its longest.
    text = store_text(merged([], [widest(i, "step" if i % 9 else "eval") for i in range(1, 5000)]))
    assert len(text.encode()) < 1024 * 1024 // 2


def test_a_rerun_replaces_the_steps_it_trains_again_and_a_reread_changes_nothing() -> None:
    first = [MetricRecord(seq=s, kind="step", step=s, time=NOW, loss=1.0) for s in range(1, 11)]
    again = [MetricRecord(seq=s, kind="step", step=s + 5, time=NOW, loss=2.0) for s in range(1, 4)]
    resumed = merged(first, again, rerun=True)
    assert [(r.step, r.loss) for r in resumed] == [(s, 1.0) for s in range(1, 6)] + [(s, 2.0) for s in (6, 7, 8)]
    assert merged(first, first[4:]) == first


def test_lines_of_the_store_that_are_no_records_are_skipped() -> None:
    good = MetricRecord(seq=1, kind="step", step=1, time=NOW, loss=1.0)
    text = (
        "garbage\n"
        + '{"seq":2,"kind":"step","step":2,"time":"2026-12-01T00:00:00Z","loss":"NaN"}\n'
        + store_text([good])
    )
    assert read_store(text + "x" * 10_000) == [good]


def test_events_merge_in_time_order_kubernetes_first_at_the_same_moment() -> None:
    started = JobEvent(type="Normal", reason="TrainingStarted", message="go", last_seen=NOW)
    later = JobEvent(type="Normal", reason="Completed", message="done", last_seen=NOW + timedelta(seconds=9))
    steps = [
        metric_event(
            MetricRecord(seq=s + 1, kind="step", step=s, time=NOW + timedelta(seconds=s), loss=1.0, grad_norm=0.5)
        )
        for s in (0, 1, 2)
    ]
    merged_events = in_time_order([started, later], steps)
    assert [e.reason for e in merged_events] == [
        "TrainingStarted",
        "TrainingStep",
        "TrainingStep",
        "TrainingStep",
        "Completed",
    ]
    assert merged_events[1].message == "step 0: loss 1, grad norm 0.5"
    assert merged_events[1].to_wire()["gradNorm"] == 0.5
