"""The report as Kubeflow Trainer's status.trainerStatus: written within the Trainer CRD's bounds,
read back into the same report, and every hostile value refused with the metric or field named."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from tensorone.api.report import (
    CheckpointReport,
    InvalidReport,
    LossPoint,
    ProgressReport,
    TrainerState,
    remaining_seconds,
)
from tensorone.api.trainer_status import (
    FORMAT_METRIC,
    MAX_METRIC_TEXT,
    MAX_METRICS,
    is_ours,
    progress_percentage,
    report_of,
    trainer_status_of,
)
from tests.kube.kubeflow_trainer import trainjob_status

NOW = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
STARTED = NOW - timedelta(seconds=40, microseconds=-123456)  # to the microsecond, as a process knows it
# The schema the API server holds trainerStatus to (Trainer v2.2's CRD).
SCHEMA = trainjob_status()["properties"]["trainerStatus"]


def full_report(**fields: Any) -> ProgressReport:
    """A running trainer's report with every field the post carries."""
    values: dict[str, Any] = {
        "state": TrainerState.running,
        "epoch": 2,
        "total_epochs": 4,
        "step": 30,
        "total_steps": 80,
        "loss": 1.234567,
        "best_loss": 1.2,
        "eval_loss": 1.5,
        "best_eval_loss": 1.45,
        "eval_perplexity": 4.48,
        "eval_metrics": {"mAP": 0.5, "mAP50": 0.75},
        "learning_rate": 2e-4,
        "tokens_per_second": 1234.5,
        "samples_per_second": 12.5,
        "memory_bytes": 2_469_606_195,
        "started_at": STARTED,
        "updated_at": NOW,
        "elapsed_seconds": 40.0,
        "step_seconds": 31.5,
        "resumed_from": "ckpt-step-10",
        "start_step": 10,
        "best_checkpoint": "ckpt-step-20",
        "checkpoints": [
            CheckpointReport(id="ckpt-step-10", epoch=1, step=10, loss=1.4, created_at=STARTED, size_bytes=1000),
            CheckpointReport(
                id="ckpt-epoch-2", epoch=2, step=20, loss=1.3, created_at=NOW, size_bytes=2000, reason="epoch"
            ),
        ],
        "eval_history": [LossPoint(step=10, loss=1.6), LossPoint(step=20, loss=1.5)],
        "loss_history": [LossPoint(step=1, loss=2.0), LossPoint(step=30, loss=1.234567)],
    }
    return ProgressReport(**{**values, **fields})


def metric(status: dict[str, Any], name: str) -> str | None:
    return next((m["value"] for m in status["metrics"] if m["name"] == name), None)


def test_a_report_is_posted_within_the_crd_bounds_and_read_back_the_same() -> None:
    report = full_report()
    status = trainer_status_of(report, now=NOW)
    jsonschema.validate(status, SCHEMA)
    assert status["progressPercentage"] == 37  # 30 of 80 steps, rounded down
    assert status["estimatedRemainingSeconds"] == 100  # 50 steps left, 20 done in 40 s since step 10
    assert status["lastUpdatedTime"] == "2026-12-01T08:00:00Z"
    assert metric(status, FORMAT_METRIC) == "1" and metric(status, "loss") == "1.234567"
    assert metric(status, "eval_mAP50") == "0.75" and metric(status, "checkpoint") == "ckpt-epoch-2"

    back = report_of(status, now=NOW)
    same = [
        "state",
        "epoch",
        "total_epochs",
        "step",
        "total_steps",
        "loss",
        "best_loss",
        "eval_loss",
        "best_eval_loss",
        "eval_perplexity",
        "eval_metrics",
        "learning_rate",
        "tokens_per_second",
        "samples_per_second",
        "memory_bytes",
        "started_at",
        "updated_at",
        "elapsed_seconds",
        "step_seconds",
        "resumed_from",
        "best_checkpoint",
    ]
    assert {f: getattr(back, f) for f in same} == {f: getattr(report, f) for f in same}
    assert back.started_at == STARTED  # to the microsecond: the same process as its termination message's
    # The newest checkpoint and the latest evaluation; the lists and curves stay with the termination message.
    assert back.checkpoints == [report.checkpoints[-1]]
    assert back.eval_history == [LossPoint(step=20, loss=1.5)] and back.loss_history == []
    assert remaining_seconds(back) == 100  # from its start step, though its resume checkpoint is not posted


def test_what_a_metric_cannot_carry_is_left_out_not_cut() -> None:
    long_id = "ckpt-" + "x" * 70
    report = full_report(
        loss=float("nan"),
        eval_metrics={"a" * 60: 1.0, "loss": 2.0, "ok": 3.0},
        checkpoints=[CheckpointReport(id=long_id, epoch=1, step=10, created_at=NOW, size_bytes=1)],
        resumed_from=long_id,
    )
    status = trainer_status_of(report, now=NOW)
    jsonschema.validate(status, SCHEMA)
    names = {m["name"] for m in status["metrics"]}
    assert "loss" not in names  # a diverged loss: the termination message says so
    assert not names & {"checkpoint", "checkpoint_step", "resumed_from"}  # an id over 64 characters
    assert "eval_ok" in names and "eval_" + "a" * 60 not in names
    assert metric(status, "eval_loss") == "1.5"  # an evaluation metric named loss does not replace it
    assert all(len(m["name"]) <= MAX_METRIC_TEXT and len(m["value"]) <= MAX_METRIC_TEXT for m in status["metrics"])
    read = report_of(status, now=NOW)
    assert read.loss is None and read.checkpoints == [] and read.eval_metrics == {"ok": 3.0}


@pytest.mark.parametrize(
    ("state", "step", "total", "expected"),
    [("running", 0, 0, None), ("running", 79, 80, 98), ("running", 90, 80, 100), ("completed", 3, 80, 100)],
)
def test_progress_percentage(state: str, step: int, total: int, expected: int | None) -> None:
    assert progress_percentage(ProgressReport(state=state, step=step, total_steps=total)) == expected


def test_a_report_before_training_has_no_percentage_nor_estimate() -> None:
    status = trainer_status_of(ProgressReport(state=TrainerState.starting), now=NOW)
    assert "progressPercentage" not in status and "estimatedRemainingSeconds" not in status
    assert status["lastUpdatedTime"] == "2026-12-01T08:00:00Z"  # the post's time, without a report time
    assert report_of(status, now=NOW).state == TrainerState.starting


def test_only_a_status_with_the_format_metric_is_ours() -> None:
    # What the transformers callback posts (integrations.KubeflowCallback).
    theirs = {
        "progressPercentage": 40,
        "metrics": [{"name": "loss", "value": "0.5"}, {"name": "current_epoch", "value": "1.25"}],
        "lastUpdatedTime": "2026-12-01T08:00:00+00:00",
    }
    assert not is_ours(theirs) and not is_ours(None) and not is_ours({"metrics": "x"})
    assert is_ours(trainer_status_of(full_report(), now=NOW))
    with pytest.raises(InvalidReport, match="tensorone_report is missing: no TensorOne trainer posted it"):
        report_of(theirs, now=NOW)


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(status: dict[str, Any]) -> None:
        status["metrics"] = [m for m in status["metrics"] if m["name"] != name] + [{"name": name, "value": value}]

    return change


def _field(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda status: status.__setitem__(name, value)


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda status: status.update(metrics=[m for m in status["metrics"] if m["name"] != name])


def _many_evaluations(status: dict[str, Any], count: int) -> None:
    for index in range(count):
        _set(f"eval_m{index}", "1")(status)


FUTURE = "2026-12-01T09:00:00Z"
HOSTILE: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("another format", _set(FORMAT_METRIC, "2"), "tensorone_report: '2' is no report format"),
    ("no state", _drop("state"), "metric state is required"),
    ("an unknown state", _set("state", "winning"), "metric state: 'winning' is not one of starting"),
    ("a fractional step", _set("current_step", "1.5"), "current_step: '1.5' is not a whole number"),
    ("a negative step", _set("current_step", "-1"), "current_step: '-1' is not a whole number"),
    ("a step past the bound", _set("current_step", "9" * 19), "metric current_step: Input should be less than"),
    ("twenty digits", _set("memory_bytes", "1" * 20), "memory_bytes: '11111111111111111111' is not a whole"),
    ("a NaN loss", _set("loss", "nan"), "metric loss: 'nan' is not a finite decimal number"),
    ("an infinite loss", _set("loss", "1e400"), "metric loss: '1e400' is not a finite decimal number"),
    ("a hex number", _set("learning_rate", "0x10"), "learning_rate: '0x10' is not a finite decimal number"),
    ("a learning rate past the bound", _set("learning_rate", "11"), "metric learning_rate: Input should be less"),
    ("a negative throughput", _set("tokens_per_second", "-5"), "metric tokens_per_second: Input should be greater"),
    ("a start in the future", _set("started_at", FUTURE), "report field startedAt: 2026-12-01T09:00:00Z is in the"),
    ("a start that is no time", _set("started_at", "yesterday"), "started_at: 'yesterday' is not an RFC 3339"),
    ("month 13", _set("started_at", "2026-13-01T00:00:00Z"), "started_at: '2026-13-01T00:00:00Z' is not an RFC"),
    ("an update in the future", _field("lastUpdatedTime", FUTURE), "report field updatedAt"),
    ("no update time", lambda s: s.pop("lastUpdatedTime"), "lastUpdatedTime is required"),
    ("an update time that is a number", _field("lastUpdatedTime", 7), "lastUpdatedTime is required"),
    ("a percentage over 100", _field("progressPercentage", 101), "progressPercentage: '101' is not a whole number"),
    ("a percentage as text", _field("progressPercentage", "50"), "progressPercentage: '50' is not a whole number"),
    ("a percentage that is true", _field("progressPercentage", True), "progressPercentage: 'True' is not a whole"),
    ("a negative estimate", _field("estimatedRemainingSeconds", -1), "estimatedRemainingSeconds: '-1' is not"),
    ("an estimate past int32", _field("estimatedRemainingSeconds", 2**31), "estimatedRemainingSeconds: '2147483648'"),
    ("a checkpoint id with a slash", _set("checkpoint", "../../etc"), "metric checkpoint: '../../etc' is not a check"),
    ("a checkpoint without its step", _drop("checkpoint_step"), "metric checkpoint_step: Field required"),
    ("a checkpoint epoch past the bound", _set("checkpoint_epoch", "999999"), "metric checkpoint_epoch: Input should"),
    ("a resume from a bad id", _set("resumed_from", "CKPT A"), "metric resumed_from: 'CKPT A' is not a checkpoint"),
    ("an evaluation metric past the bound", _set("eval_mAP", "1e13"), "metric eval_mAP: Input should be less than"),
    ("seventeen evaluation metrics", lambda s: _many_evaluations(s, 17), "eval_ metrics"),
    ("an evaluation metric name the task refuses", _set("eval_9lives", "1"), "metric eval_9lives: String should"),
    ("a name given twice", lambda s: s["metrics"].append(dict(s["metrics"][1])), "metric state is given twice"),
    ("an empty value", _set("loss", ""), "must have a name and a value of 1 to 64 characters"),
    ("a value too long", _set("loss", "1" * 65), "must have a name and a value of 1 to 64 characters"),
    ("a value that is a number", _set("loss", 0.5), "must have a name and a value of 1 to 64 characters"),
    ("a metric that is no object", lambda s: s["metrics"].append("loss=1"), "must have a name and a value"),
    ("metrics that are no list", _field("metrics", {"loss": "1"}), "metrics must be a list of at most 256"),
    ("257 metrics", lambda s: s["metrics"].extend({"name": f"m{i}", "value": "1"} for i in range(233)), "at most 256"),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_hostile_trainer_status_is_refused_naming_what_is_wrong(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    status = copy.deepcopy(trainer_status_of(full_report(), now=NOW))
    change(status)
    with pytest.raises(InvalidReport) as refused:
        report_of(status, now=NOW)
    assert expected in str(refused.value), str(refused.value)


def test_a_trainer_status_that_is_no_object_is_refused() -> None:
    with pytest.raises(InvalidReport, match="trainerStatus must be an object"):
        report_of(["metrics"], now=NOW)  # type: ignore[arg-type]


def test_unknown_metrics_are_left_alone() -> None:
    status = trainer_status_of(full_report(), now=NOW)
    status["metrics"] += [{"name": "accuracy", "value": "not even a number"}]
    assert len(status["metrics"]) <= MAX_METRICS
    assert report_of(status, now=NOW).step == 30
