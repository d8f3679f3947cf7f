"""Resume is exact: from any checkpoint, the later losses and the final weights are bit-identical
to a run that never stopped (CPU, LoRA with dropout so the RNG state matters, gradient accumulation
2 with an uneven last micro-batch, evaluation in between, and the full strategy too)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.exit_codes import ExitCode
from tests.trainer.conftest import assert_same_weights, log_events, make_job, step_losses
from trainer.loop import FAULT_NAN_AT_STEP_ENV
from trainer.run import RunOptions, run

# 24 records, 2 held out for evaluation: 22 for training, 6 micro-batches of 4 (the last of 2),
# 3 optimizer steps per epoch with 2 micro-batches each; 3 epochs = 9 steps.
TRAINING: dict[str, Any] = {
    "epochs": 3,
    "batchSize": 4,
    "gradientAccumulationSteps": 2,
    "evalSplit": 0.1,
    "evalSteps": 2,
    "checkpointSteps": 2,
    "keepCheckpoints": 100,
    "warmupSteps": 2,
    "weightDecay": 0.1,
    "lrScheduler": "cosine",
}


def train_to_end(root: Path, **overrides: Any) -> None:
    result = run(make_job(root, **overrides), RunOptions(serve_reports=False))
    assert result.exit_code == 0, result.report


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    train_to_end(root, training=TRAINING)
    return root


def resume_copy(reference: Path, root: Path, checkpoint: str, **overrides: Any) -> None:
    """Train from a copy of one of the reference's checkpoints, in a fresh folder."""
    shutil.copytree(reference / "checkpoints" / checkpoint, root / "checkpoints" / checkpoint)
    train_to_end(root, resume_from=checkpoint, **overrides)


def test_reference_run_saved_the_expected_checkpoints(reference: Path) -> None:
    ids = [json.loads((p / "manifest.json").read_text())["id"] for p in (reference / "checkpoints").glob("ckpt-*")]
    assert sorted(ids) == sorted(
        ["ckpt-step-2", "ckpt-epoch-1", "ckpt-step-4", "ckpt-epoch-2", "ckpt-step-8", "ckpt-epoch-3"]
    )
    assert sorted(step_losses(reference / "checkpoints")) == list(range(1, 10))


@pytest.mark.parametrize(
    ("checkpoint", "resumed_step"),
    [("ckpt-step-4", 4), ("ckpt-epoch-1", 3), ("ckpt-step-8", 8)],
    ids=["mid-epoch", "epoch-boundary", "last-epoch"],
)
def test_resume_gives_identical_losses_and_weights(
    reference: Path, tmp_path: Path, checkpoint: str, resumed_step: int
) -> None:
    resume_copy(reference, tmp_path, checkpoint, training=TRAINING)

    expected = step_losses(reference / "checkpoints")
    resumed = step_losses(tmp_path / "checkpoints")
    assert sorted(resumed) == list(range(resumed_step + 1, 10)), "the resumed run redoes no step and skips none"
    for step, loss in resumed.items():
        assert loss == expected[step], f"step {step}: {loss!r} != {expected[step]!r}"
    expected_eval = {e["step"]: e["evalLoss"] for e in log_events(reference / "checkpoints", "eval")}
    for event in log_events(tmp_path / "checkpoints", "eval"):
        assert event["evalLoss"] == expected_eval[event["step"]]
    assert_same_weights(reference / "output", tmp_path / "output")
    assert_same_weights(
        reference / "checkpoints" / "ckpt-epoch-3" / "model", tmp_path / "checkpoints" / "ckpt-epoch-3" / "model"
    )


def test_resume_of_the_full_strategy_is_exact(tmp_path: Path) -> None:
    training = TRAINING | {"epochs": 2}
    train_to_end(tmp_path / "reference", strategy="full", training=training)
    resume_copy(tmp_path / "reference", tmp_path / "resumed", "ckpt-step-4", strategy="full", training=training)

    expected = step_losses(tmp_path / "reference" / "checkpoints")
    resumed = step_losses(tmp_path / "resumed" / "checkpoints")
    assert sorted(resumed) == [5, 6]
    assert all(resumed[step] == expected[step] for step in resumed)
    assert_same_weights(tmp_path / "reference" / "output", tmp_path / "resumed" / "output")


def test_running_again_resumes_from_the_latest_checkpoint_and_finishes(reference: Path, tmp_path: Path) -> None:
    shutil.copytree(reference / "checkpoints", tmp_path / "checkpoints")
    result = run(make_job(tmp_path, training=TRAINING), RunOptions(serve_reports=False))
    assert result.exit_code == 0
    assert result.report is not None
    assert result.report.resumed_from == "ckpt-epoch-3"
    assert result.report.step == 9
    assert_same_weights(reference / "output", tmp_path / "output")


def test_a_restarted_start_goes_on_from_its_own_checkpoints_not_back_to_resume_from(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pods of a start told to resume from ckpt-step-2 fail after step 5 and come back (same
    start id, same resumeFrom): they go on from ckpt-step-4, which that start saved, and end as the
    uninterrupted run did."""
    shutil.copytree(reference / "checkpoints" / "ckpt-step-2", tmp_path / "checkpoints" / "ckpt-step-2")
    job = make_job(tmp_path, training=TRAINING, resume_from="ckpt-step-2").model_copy(update={"start_id": "uid:3"})
    monkeypatch.setenv(FAULT_NAN_AT_STEP_ENV, "6")  # the first pods end at step 6, after ckpt-step-4
    first = run(job, RunOptions(serve_reports=False))
    assert first.report is not None and first.report.resumed_from == "ckpt-step-2", first.report
    assert first.exit_code == ExitCode.DIVERGED
    saved = json.loads((tmp_path / "checkpoints" / "ckpt-step-4" / "manifest.json").read_text())
    assert saved["startId"] == "uid:3"

    monkeypatch.delenv(FAULT_NAN_AT_STEP_ENV)
    again = run(job, RunOptions(serve_reports=False))
    assert again.exit_code == 0 and again.report is not None, again.report
    assert again.report.resumed_from == "ckpt-step-4"
    expected = step_losses(reference / "checkpoints")
    assert all(loss == expected[step] for step, loss in step_losses(tmp_path / "checkpoints").items())
    assert_same_weights(reference / "output", tmp_path / "output")
