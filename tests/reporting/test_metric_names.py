"""The metric names documented for Prometheus-only code (docs/trainer.md, "Metric names") are the
ones the trainer's registry really exposes, with the same types and labels; and a Reporter's plan
tells a resumed run's step before its first new step."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tensorone.api.report import CheckpointReport
from tensorone.reporting.client import Reporter
from tensorone.reporting.metrics import build_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "trainer.md"
ROW = re.compile(r"^\| `(?P<name>tensorone_trainer_\w+)` \| (?P<type>\w+) \|(?P<labels>[^|]*)\|")

Exposed = set[tuple[str, str, tuple[str, ...]]]


def documented() -> Exposed:
    """(name, type, labels) of every row of the "Metric names" table."""
    text = DOC.read_text()
    section = text[text.index("#### Metric names") :]
    section = section[: section.find("\n#", 1)]
    rows = set()
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            labels = tuple(sorted(re.findall(r"`(\w+)`", match["labels"])))
            rows.add((match["name"], match["type"], labels))
    return rows


def exposed(reporter: Reporter) -> Exposed:
    """(sample name, type, labels) of what a scrape of the reporter's registry returns."""
    text = generate_latest(build_registry(reporter.tracker)).decode()
    return {
        (sample.name, family.type, tuple(sorted(sample.labels)))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_documented_metric_names_are_the_exposed_ones() -> None:
    reporter = Reporter(serve=False, termination_log=None)
    reporter.plan(total_epochs=2, total_steps=10)
    reporter.running()
    reporter.step(1, 2.5, epoch=1, learning_rate=1e-3, tokens=128, samples=8, seconds=0.1)
    reporter.eval(1, 2.7, {"accuracy": 0.5})
    reporter.checkpoint(
        CheckpointReport(id="ckpt-step-1", epoch=0, step=1, loss=2.5, created_at=datetime.now(UTC), size_bytes=1)
    )
    table = documented()
    assert len(table) >= 20, "the table was not found or not parsed"
    assert table == exposed(reporter)


def test_gauges_without_a_value_are_absent_not_zero() -> None:
    names = {name for name, _, _ in exposed(Reporter(serve=False, termination_log=None))}
    assert "tensorone_trainer_step" in names
    assert not names & {
        "tensorone_trainer_loss",
        "tensorone_trainer_eval_loss",
        "tensorone_trainer_last_checkpoint_step",
    }


def test_a_resumed_runs_plan_reports_its_step_before_the_first_new_one() -> None:
    reporter = Reporter(serve=False, termination_log=None)
    reporter.plan(total_epochs=4, total_steps=40, step=20)
    reporter.running(resumed_from="ckpt-epoch-2")
    assert reporter.tracker.report().step == 20
    reporter.step(21, 1.0)
    assert reporter.tracker.report().step == 21
