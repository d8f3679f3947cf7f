"""Reporting: /progress and /metrics over real HTTP, the metrics log, the termination message, the
bounded loss curve, the cost of recording a step, and a custom image's client without torch."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tensorone.api.report import TERMINATION_MESSAGE_LIMIT, CheckpointReport, ProgressReport, TrainerState
from tensorone.reporting.client import Reporter
from tensorone.reporting.progress import HISTORY_POINTS, Curve
from tests.unimportable import run_without

# What a custom image may lack: the client needs pydantic and prometheus-client, nothing else of the
# project's dependencies, and neither torch nor the trainer.
NOT_IN_A_CUSTOM_IMAGE = [
    "torch",
    "trainer",
    "transformers",
    "peft",
    "yaml",
    "jsonschema",
    "celpy",
    "kubernetes",
    "kopf",
]


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def checkpoint(step: int) -> CheckpointReport:
    return CheckpointReport(
        id=f"ckpt-step-{step}",
        epoch=0,
        step=step,
        loss=1.0,
        created_at=datetime.now(UTC),
        size_bytes=123,
        reason="step",
    )


def test_progress_and_metrics_are_served_on_one_port(tmp_path: Path) -> None:
    with Reporter(port=0, metrics_log=tmp_path / "metrics.jsonl", termination_log=tmp_path / "end") as reporter:
        assert reporter.port
        status, _, body = get(reporter.port, "/progress")
        assert status == 200 and json.loads(body)["state"] == "starting"

        reporter.plan(total_epochs=2, total_steps=20)
        reporter.running()
        reporter.step(1, 2.5, epoch=1, learning_rate=1e-3, tokens=1000, samples=8, seconds=0.5)
        reporter.step(2, 2.0, epoch=1, learning_rate=2e-3, tokens=1000, samples=8, seconds=0.5)
        reporter.eval(2, 2.2)
        reporter.checkpoint(checkpoint(2))

        status, content_type, body = get(reporter.port, "/progress")
        assert status == 200 and content_type == "application/json"
        report = ProgressReport.model_validate_json(body)
        assert (report.state, report.step, report.total_steps, report.epoch) == ("running", 2, 20, 1)
        assert (report.loss, report.best_loss, report.eval_loss, report.learning_rate) == (2.0, 2.0, 2.2, 2e-3)
        assert report.tokens_per_second == pytest.approx(2000 / 1.0)
        assert report.samples_per_second == pytest.approx(16 / 1.0)
        assert report.memory_bytes and report.memory_bytes > 0
        assert [c.id for c in report.checkpoints] == ["ckpt-step-2"]
        assert [(p.step, p.loss) for p in report.loss_history] == [(1, 2.5), (2, 2.0)]

        status, content_type, body = get(reporter.port, "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }
        for name, value in [
            ("tensorone_trainer_step", 2),
            ("tensorone_trainer_total_steps", 20),
            ("tensorone_trainer_epoch", 1),
            ("tensorone_trainer_loss", 2.0),
            ("tensorone_trainer_best_loss", 2.0),
            ("tensorone_trainer_eval_loss", 2.2),
            ("tensorone_trainer_learning_rate", 2e-3),
            ("tensorone_trainer_tokens_per_second", 2000),
            ("tensorone_trainer_samples_per_second", 16),
            ("tensorone_trainer_tokens_total", 2000),
            ("tensorone_trainer_last_checkpoint_step", 2),
        ]:
            assert samples[(name, ())] == pytest.approx(value), name
        assert samples[("tensorone_trainer_memory_bytes", ())] > 0
        assert samples[("tensorone_trainer_last_checkpoint_info", (("id", "ckpt-step-2"), ("reason", "step")))] == 1
        assert samples[("tensorone_trainer_state", (("state", "running"),))] == 1
        assert samples[("tensorone_trainer_state", (("state", "completed"),))] == 0

        assert get(reporter.port, "/healthz")[0] == 200
        assert get(reporter.port, "/other")[0] == 404

    events = [json.loads(line)["event"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events == ["start", "step", "step", "eval", "checkpoint", "end"]
    final = json.loads((tmp_path / "end").read_text())
    assert final["state"] == "completed" and final["lossHistory"] == []


def test_an_exception_inside_the_reporter_block_reports_failed(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), Reporter(serve=False, termination_log=tmp_path / "end"):
        raise RuntimeError("out of memory")
    final = json.loads((tmp_path / "end").read_text())
    assert (final["state"], final["reason"], final["message"]) == ("failed", "RuntimeError", "out of memory")


def test_the_termination_message_keeps_the_newest_checkpoints_under_the_limit(tmp_path: Path) -> None:
    reporter = Reporter(serve=False, termination_log=tmp_path / "end")
    for step in range(1, 2001):
        reporter.step(step, 1.0 / step)
    reporter.checkpoints([checkpoint(step) for step in range(1, 101)])
    reporter.finish(TrainerState.stopped, message="x" * 500)
    text = (tmp_path / "end").read_text()
    assert len(text.encode()) < TERMINATION_MESSAGE_LIMIT
    assert json.loads(text)["checkpoints"][-1]["id"] == "ckpt-step-100"


def test_the_loss_curve_stays_bounded_and_keeps_first_and_latest() -> None:
    curve = Curve()
    for step in range(1, 100_001):
        curve.add(step, float(step))
    points = curve.snapshot()
    assert len(points) <= HISTORY_POINTS + 2
    assert points[0].step == 1 and points[-1].step == 100_000
    steps = [p.step for p in points]
    assert steps == sorted(steps)


def test_recording_a_step_costs_microseconds(tmp_path: Path) -> None:
    # Under 1% of the step time of even this tiny model (milliseconds per step) with room to spare.
    with Reporter(port=0, metrics_log=tmp_path / "metrics.jsonl", termination_log=None) as reporter:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for step in range(1, 2001):
                reporter.step(step, 1.0, epoch=1, learning_rate=1e-4, tokens=100, samples=1, seconds=0.01)
            best = min(best, (time.perf_counter() - started) / 2000)
    assert best < 50e-6, f"{best * 1e6:.1f} µs per step"


def test_a_custom_image_reports_without_torch_or_the_trainer(tmp_path: Path) -> None:
    ran = run_without(
        NOT_IN_A_CUSTOM_IMAGE,
        """
        import json
        import urllib.request
        from datetime import UTC, datetime

        from tensorone.reporting.client import CheckpointReport, Reporter

        def get(port, path):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                return response.read().decode()

        with Reporter(port=0, metrics_log="metrics.jsonl", termination_log="end") as reporter:
            reporter.plan(total_epochs=1, total_steps=4)
            reporter.running()
            reporter.step(1, 2.5, epoch=1, learning_rate=1e-3, tokens=64, samples=2, seconds=0.1)
            saved = CheckpointReport(id="ckpt-step-1", epoch=0, step=1, created_at=datetime.now(UTC), size_bytes=1)
            reporter.checkpoint(saved)
            print(json.dumps({"progress": get(reporter.port, "/progress"), "metrics": get(reporter.port, "/metrics")}))
        """,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    served = json.loads(ran.stdout)
    report = ProgressReport.model_validate_json(served["progress"])
    assert (report.state, report.step, report.loss) == ("running", 1, 2.5)
    assert [c.id for c in report.checkpoints] == ["ckpt-step-1"]
    assert "tensorone_trainer_step 1.0" in served["metrics"].splitlines()
    assert json.loads((tmp_path / "end").read_text())["state"] == "completed"
    events = [json.loads(line)["event"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events == ["start", "step", "checkpoint", "end"]


def test_evaluation_metrics_are_reported_logged_and_kept_in_bounds(tmp_path: Path) -> None:
    reporter = Reporter(serve=False, termination_log=None, metrics_log=tmp_path / "metrics.jsonl").start()
    reporter.eval(4, 0.7, {"accuracy": 0.75, "top5Accuracy": 1.0})
    reporter.close()
    assert reporter.tracker.report().eval_metrics == {"accuracy": 0.75, "top5Accuracy": 1.0}
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["metrics"] == {"accuracy": 0.75, "top5Accuracy": 1.0} and line["evalLoss"] == 0.7
    with pytest.raises(ValueError, match="name 'Top 1' must match"):
        reporter.eval(5, 0.7, {"Top 1": 0.5})
    with pytest.raises(ValueError, match="accuracy"):
        reporter.eval(5, 0.7, {"accuracy": float("nan")})
