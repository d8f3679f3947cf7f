"""Early stopping and the best checkpoint: the stopping rule, retention that keeps the best, and a
real run that stops on a plateau and writes the best weights as its output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tensorone.api.resolved import with_defaults
from tensorone.api.v1alpha1 import TrainingConfig
from tensorone.api.v1alpha1.trainingjob import MetricMode
from tensorone.errors import ConfigurationError
from tests.trainer.conftest import log_events, make_job
from trainer.checkpoint import CheckpointStore, DataPosition, TrainingState
from trainer.distributed import Topology
from trainer.early_stopping import EvaluationWatch, watch_for, watched_value
from trainer.run import RunOptions, run


def stops_after(values: list[float], watch: EvaluationWatch) -> int | None:
    """The 1-based evaluation at which ``watch`` ends the run, or None."""
    for number, value in enumerate(values, start=1):
        watch.observe(value, step=number)
        if watch.plateau:
            return number
    return None


def test_min_mode_stops_after_patience_evaluations_without_an_improvement_beyond_min_delta() -> None:
    # 1.0 is the best; 0.95 is better by less than minDelta 0.1, so it does not count.
    watch = EvaluationWatch(patience=2, min_delta=0.1)
    assert stops_after([1.0, 0.95, 0.99, 0.5], watch) == 3
    assert (watch.best, watch.best_step, watch.since_best) == (1.0, 1, 2)


def test_an_improvement_resets_the_count() -> None:
    watch = EvaluationWatch(patience=2)
    assert stops_after([3.0, 3.0, 2.0, 2.5, 1.0, 1.0, 1.0], watch) == 7
    assert (watch.best, watch.best_step) == (1.0, 5)


def test_max_mode_watches_for_higher_values_and_non_finite_values_never_improve() -> None:
    watch = EvaluationWatch(metric="mAP", mode=MetricMode.max, patience=3, min_delta=0.01)
    assert stops_after([0.2, 0.5, math.nan, 0.505, 0.4], watch) == 5
    assert (watch.best, watch.best_step) == (0.5, 2)


def test_without_patience_the_best_is_tracked_and_the_run_never_stops() -> None:
    watch = EvaluationWatch()
    assert stops_after([5.0, 6.0, 7.0, 8.0, 9.0], watch) is None
    assert watch.best == 5.0


def test_the_watch_survives_a_checkpoint() -> None:
    watch = EvaluationWatch(patience=3)
    stops_after([2.0, 1.0, 1.5], watch)
    watch.best_checkpoint = "ckpt-step-2"
    resumed = EvaluationWatch(patience=3)
    resumed.load_state_dict(json.loads(json.dumps(watch.state_dict())))
    assert resumed == watch


def test_the_job_config_decides_what_is_watched() -> None:
    plain = with_defaults(TrainingConfig.model_validate({"training": {"evalSplit": 0.1}}))
    assert watch_for(plain) is None
    best = with_defaults(TrainingConfig.model_validate({"training": {"evalSplit": 0.1}, "output": {"from": "best"}}))
    assert watch_for(best) == EvaluationWatch()
    early = with_defaults(
        TrainingConfig.model_validate(
            {"training": {"evalSplit": 0.1, "earlyStopping": {"metric": "mAP", "mode": "max", "patience": 4}}}
        )
    )
    assert watch_for(early) == EvaluationWatch(metric="mAP", mode=MetricMode.max, patience=4)


def test_a_metric_the_task_does_not_measure_is_refused_by_name() -> None:
    assert watched_value("evalLoss", 1.5, {"mAP": 0.3}) == 1.5
    assert watched_value("mAP", 1.5, {"mAP": 0.3}) == 0.3
    with pytest.raises(ConfigurationError, match="measures: evalLoss, mAP") as raised:
        watched_value("accuracy", 1.5, {"mAP": 0.3})
    assert raised.value.field == "config.training.earlyStopping.metric"


def test_retention_keeps_the_protected_checkpoint_beyond_the_newest_and_the_lowest_loss(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, Topology(rank=0, world_size=1, local_rank=0))

    def write_model(directory: Path) -> None:
        directory.mkdir()
        (directory / "w.bin").write_bytes(b"w")

    def save(step: int, loss: float, protect: str | None) -> list[str]:
        _, kept = store.save(
            reason="step",
            epoch=0,
            step=step,
            position=DataPosition(epoch=0, step_in_epoch=step),
            loss=loss,
            eval_loss=None,
            strategy="lora",
            base_model="tiny",
            write_model=write_model,
            state=lambda: TrainingState(optimizer={}, schedule={}, scaler={}, trainer={}, rng={}),
            keep=1,
            protect=protect,
        )
        return [m.id for m in kept]

    save(1, 3.0, "ckpt-step-1")
    save(2, 2.0, "ckpt-step-1")
    # Newest and lowest training loss: ckpt-step-3; without protection ckpt-step-1 would go too.
    assert save(3, 1.0, "ckpt-step-1") == ["ckpt-step-1", "ckpt-step-3"]
    assert save(4, 4.0, None) == ["ckpt-step-3", "ckpt-step-4"]


def test_a_plateau_stops_the_run_at_the_expected_evaluation_and_the_output_is_the_best(tmp_path: Path) -> None:
    # The smallest learning rate the API allows barely moves the adapter: the evaluation loss changes
    # by far less than minDelta, so evaluation 1 is the best and evaluation 3 (patience 2) stops.
    job = make_job(
        tmp_path,
        training={
            "learningRate": 1e-6,
            "maxSteps": 10,
            "evalSplit": 0.25,
            "evalSteps": 1,
            "checkpointEveryEpoch": False,
            "keepCheckpoints": 1,
            "earlyStopping": {"patience": 2, "minDelta": 0.01},
        },
        config_extra={"output": {"from": "best"}},
    )
    result = run(job, RunOptions(serve_reports=False))

    assert result.exit_code == 0
    report = result.report
    assert report is not None
    assert (report.state, report.reason, report.step) == ("completed", "EarlyStopped", 3)
    assert report.message is not None and "did not improve" in report.message
    assert [p.step for p in report.eval_history] == [1, 2, 3]
    assert report.eval_loss is not None and report.eval_perplexity == pytest.approx(math.exp(report.eval_loss))
    assert report.best_checkpoint == "ckpt-step-1"
    checkpoints = tmp_path / "checkpoints"
    assert [e["id"] for e in log_events(checkpoints, "checkpoint")] == ["ckpt-step-1", "ckpt-step-3"]
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("ckpt-")) == [
        "ckpt-step-1",
        "ckpt-step-3",
    ]

    assert report.output is not None and report.output.checkpoint == "ckpt-step-1"
    output = load_file(tmp_path / "output" / "adapter_model.safetensors")
    best = load_file(checkpoints / "ckpt-step-1" / "model" / "adapter_model.safetensors")
    last = load_file(checkpoints / "ckpt-step-3" / "model" / "adapter_model.safetensors")
    assert output.keys() == best.keys()
    assert all(torch.equal(output[k], best[k]) for k in output)
    assert not all(torch.equal(output[k], last[k]) for k in output), "the last weights equal the best"

    # Resumed after the early stop (a restarted pod): no more steps, the same output.
    again = run(job, RunOptions(serve_reports=False))
    assert again.report is not None
    assert (again.report.state, again.report.reason, again.report.step) == ("completed", "EarlyStopped", 3)
    assert again.report.output is not None and again.report.output.sha256 == report.output.sha256
