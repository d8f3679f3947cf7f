"""Reading a run's curves from a metrics log: the lines a crash or a resume leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorone.curves import Curve, metrics_log_path, read_metrics_log
from tensorone.errors import ConfigurationError, DataError


def test_a_step_run_twice_keeps_its_last_value_and_a_value_that_is_not_finite_is_left_out() -> None:
    curve = Curve.of("loss", [(1, 3.0), (2, 2.0), (3, float("nan")), (2, 2.5), (4, float("inf")), (5, 1.0)])
    assert (curve.steps, curve.values) == ((1, 2, 5), (3.0, 2.5, 1.0))
    assert not Curve.of("eval loss", [])


def test_a_torn_last_line_and_other_events_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    lines = [
        {"event": "start", "resumedFrom": None, "step": 0, "time": 1.0},
        {"event": "data", "rows": 24, "badRows": 0, "time": 1.1},
        {"event": "step", "step": 1, "epoch": 1, "loss": 2.0, "learningRate": 0.001, "time": 1.2},
        {"event": "eval", "step": 1, "evalLoss": 2.2, "time": 1.3},
        {"event": "step", "step": 2, "epoch": 1, "loss": 1.5, "learningRate": None, "time": 1.4},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"event":"step","step":3,"lo')
    curves = read_metrics_log(log)
    assert (curves.loss.steps, curves.loss.values) == ((1, 2), (2.0, 1.5))
    assert (curves.eval_loss.steps, curves.learning_rate.steps) == ((1,), (1,))
    assert (curves.name, curves.source) == (tmp_path.name, str(log))


def test_a_file_that_is_no_metrics_log_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"event": "start", "step": 0}\nnot json\n')
    with pytest.raises(DataError, match="has no step lines"):
        read_metrics_log(metrics_log_path(tmp_path))
    with pytest.raises(ConfigurationError) as missing:
        metrics_log_path(tmp_path / "elsewhere")
    assert missing.value.field == "--run"
