"""The same guarantees for every task beside the llm one (object detection, image classification,
multimodal): a trainer killed with SIGKILL mid-run and run again ends bit-identical to a run never
interrupted; a SIGTERM mid-run saves a stop checkpoint, exits 0, and the run resumed from it ends
bit-identical too; a non-finite loss ends the run as diverged, keeping the last good checkpoint;
and bad data (an unreadable image, a missing file, an unknown class, a box outside its image) is
counted and named while the run goes on.

The trainer that is signalled runs in a process of its own, as ``python -m trainer`` runs it
(``trainer.run.run``, its exit code the process's), forked from a clean server process that loaded
torch and the task's libraries once (multiprocessing's forkserver): each test is spared a second
start-up, and the trainer inherits nothing of the test process (its threads, locks, handlers and
whatever earlier tests left in it).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.exit_codes import ExitCode
from tensorone.api.report import TrainerState
from tensorone.api.resolved import ResolvedJob
from tests.trainer.conftest import assert_same_weights, log_events, step_losses
from tests.trainer.images import build_shapes, vision_job
from tests.trainer.test_detection import TINY_DETECTOR, detection_job
from tests.trainer.test_detection import build_shapes as build_boxes
from tests.trainer.test_multimodal_task import multimodal_job
from trainer.loop import FAULT_NAN_AT_STEP_ENV
from trainer.run import RunOptions, RunResult, run

STEPS = 12  # long enough to be signalled mid-run: the signal comes once the second checkpoint is saved
# A checkpoint after every step, so a kill finds the run anywhere: in a step, or writing a checkpoint.
TRAINING: dict[str, Any] = {
    "maxSteps": STEPS,
    "checkpointSteps": 1,
    "checkpointEveryEpoch": False,
    "keepCheckpoints": 2,
    "evalSplit": 0.0,
}
BOX_AUGMENTATION = {"fliplr": 0.5, "scale": 0.2, "hsvV": 0.3, "mixup": 0.3, "copyPaste": 0.3}
IMAGE_AUGMENTATION = {"fliplr": 0.5, "scale": 0.2, "hsvV": 0.3, "mixup": 0.5}


def detection(root: Path, training: dict[str, Any], **config: Any) -> ResolvedJob:
    """The tiny RT-DETR on 16 drawn 32 x 32 images with boxes, two steps an epoch, augmentations on."""
    if not (root / "shapes").exists():
        build_boxes(root / "shapes", images=16, size=32)
    settings = {"inputSize": [32, 32], "numClasses": 2, "augmentation": BOX_AUGMENTATION} | config
    return detection_job(root, training=TRAINING | training, config=settings)


def classification(root: Path, training: dict[str, Any]) -> ResolvedJob:
    """The tiny ConvNeXt on 12 shapes in a folder per class (batches of 8 and 4), MixUp on."""
    data = root / "claim" / "shapes"
    if not data.exists():
        build_shapes(data, per_class=4)
    return vision_job(root, data=data, training=TRAINING | training, augmentation=IMAGE_AUGMENTATION)


def multimodal(root: Path, training: dict[str, Any]) -> ResolvedJob:
    """The tiny LLaVA with LoRA (dropout on) over the example's 24 picture chats, batches of 4."""
    settings = TRAINING | {"batchSize": 4, "maxSeqLength": 96, "learningRate": 0.01} | training
    return multimodal_job(root, training=settings)


@dataclass(frozen=True)
class Task:
    name: str
    job: Callable[[Path, dict[str, Any]], ResolvedJob]


TASKS = [Task("detection", detection), Task("classification", classification), Task("multimodal", multimodal)]


def train(job: ResolvedJob) -> RunResult:
    return run(job, RunOptions(serve_reports=False))


@pytest.fixture(scope="module", params=TASKS, ids=lambda task: task.name)
def task(request: pytest.FixtureRequest) -> Task:
    task: Task = request.param
    return task


@pytest.fixture(scope="module")
def reference(task: Task, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The task's run, never interrupted."""
    root = tmp_path_factory.mktemp(f"{task.name}-reference")
    result = train(task.job(root, {}))
    assert result.exit_code == 0, result.report
    assert sorted(step_losses(root / "checkpoints")) == list(range(1, STEPS + 1))
    return root


# The forkserver loads these once; every trainer forked from it starts with them imported.
PRELOADED = ["trainer.run", "tests.trainer.test_task_guarantees"]


def run_in_child(job: ResolvedJob, environment: dict[str, str]) -> None:
    """A trainer process's body: the test's environment (its termination log), one thread, the
    run, and out with the run's exit code (an exception that escapes the run exits UNEXPECTED)."""
    import torch

    os.environ.clear()
    os.environ.update(environment)
    torch.set_num_threads(1)
    code: int = ExitCode.UNEXPECTED
    try:
        code = train(job).exit_code
    finally:
        os._exit(code)


class Trainer:
    """A trainer process running ``job`` to its end or a signal."""

    def __init__(self, job: ResolvedJob) -> None:
        self.job = job
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOADED)
        self.process = context.Process(target=run_in_child, args=(job, dict(os.environ)), daemon=True)
        self.process.start()

    def running(self) -> bool:
        return self.process.is_alive()

    @property
    def exit_code(self) -> int | None:
        """The process's exit code, or minus the signal that ended it; None while it runs."""
        return self.process.exitcode

    def checkpoint_saved(self, step: int) -> bool:
        """Whether a checkpoint of ``step`` or later is complete (its manifest is the last file
        written; an older one may already be pruned), or the process ended (so a wait on it does
        not last)."""
        manifests = Path(self.job.checkpoint_dir).glob("ckpt-step-*/manifest.json")
        saved = any(int(m.parent.name.removeprefix("ckpt-step-")) >= step for m in manifests)
        return saved or not self.running()

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the trainer, which must still be running, and wait for its end."""
        assert self.running(), f"the trainer ended before it could be signalled: {self.ending()}"
        os.kill(self.process.pid, signum)  # type: ignore[arg-type]
        self.process.join()

    def ending(self) -> str:
        """The ended trainer's exit code and termination message, for a failure's message."""
        message = Path(os.environ["TENSORONE_TERMINATION_LOG"])
        return f"exit code {self.exit_code}, termination message {message.read_text() if message.exists() else None}"

    def kill(self) -> None:
        if self.running():
            self.process.kill()
        self.process.join()


@pytest.fixture
def forked() -> Iterator[list[Trainer]]:
    """The trainers a test forks, killed at its end whatever happened."""
    trainers: list[Trainer] = []
    yield trainers
    for trainer in trainers:
        trainer.kill()


def signalled_mid_run(task: Task, root: Path, signum: signal.Signals, forked: list[Trainer]) -> int | None:
    """Start a trainer on the task's job under ``root``, send it ``signum`` once its second
    checkpoint is saved; its exit code (minus the signal that ended it)."""
    trainer = Trainer(task.job(root, {}))
    forked.append(trainer)
    # Polled every millisecond, not every 50: the signal lands as soon after the checkpoint's last
    # file as it can, where a trainer that logs its steps late (after the checkpoint) loses them.
    deadline = time.monotonic() + 120
    while not trainer.checkpoint_saved(2):
        assert time.monotonic() < deadline, "timed out waiting for a checkpoint at step 2 or later"
        time.sleep(0.001)
    trainer.signal(signum)
    return trainer.exit_code


def assert_ends_as_the_reference(root: Path, reference: Path) -> None:
    expected, losses = step_losses(reference / "checkpoints"), step_losses(root / "checkpoints")
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert all(losses[step] == expected[step] for step in expected), "losses differ after the resume"
    assert_same_weights(reference / "output", root / "output")


def test_a_kill_9_mid_run_then_a_restart_ends_bit_identical(
    task: Task, reference: Path, tmp_path: Path, forked: list[Trainer]
) -> None:
    exit_code = signalled_mid_run(task, tmp_path, signal.SIGKILL, forked)
    assert exit_code == -signal.SIGKILL, exit_code

    resumed = train(task.job(tmp_path, {}))  # as the restarted pod: from the latest checkpoint that verifies
    assert resumed.exit_code == 0, resumed.report
    assert resumed.report is not None and resumed.report.resumed_from is not None
    assert int(resumed.report.resumed_from.removeprefix("ckpt-step-")) >= 2
    assert_ends_as_the_reference(tmp_path, reference)


def test_sigterm_mid_run_saves_a_checkpoint_exits_0_and_the_resume_is_bit_identical(
    task: Task, reference: Path, tmp_path: Path, forked: list[Trainer]
) -> None:
    exit_code = signalled_mid_run(task, tmp_path, signal.SIGTERM, forked)
    assert exit_code == 0, exit_code
    final = json.loads((tmp_path / "termination-log").read_text())
    assert final["state"] == "stopped" and "SIGTERM" in final["message"], final
    stopped_at = final["step"]
    assert 2 <= stopped_at < STEPS
    newest = final["checkpoints"][-1]
    assert (newest["id"], newest["reason"]) == (f"ckpt-step-{stopped_at}", "stop"), newest

    resumed = train(task.job(tmp_path, {}))
    assert resumed.exit_code == 0, resumed.report
    assert resumed.report is not None and resumed.report.resumed_from == f"ckpt-step-{stopped_at}"
    assert_ends_as_the_reference(tmp_path, reference)


def test_a_nan_loss_ends_the_run_diverged_keeping_the_last_good_checkpoint(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_NAN_AT_STEP_ENV, "3")
    result = train(task.job(tmp_path, {"maxSteps": 4}))
    assert result.exit_code == ExitCode.DIVERGED and result.report is not None, result.report
    assert (result.report.state, result.report.reason) == (TrainerState.diverged, "Diverged")
    assert "the loss of step 3 is nan; last good checkpoint: ckpt-step-2" in (result.report.message or "")
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("ckpt-*")) == ["ckpt-step-1", "ckpt-step-2"]
    assert sorted(step_losses(tmp_path / "checkpoints")) == [1, 2]
    assert not (tmp_path / "output").exists()


def test_a_detector_whose_predictions_overflow_ends_diverged_not_failed(tmp_path: Path) -> None:
    """Weights grown until the forward overflows, as a diverging run's do: the predicted boxes are
    NaN, which the model's own loss refuses with a ValueError instead of returning a NaN loss."""
    import torch
    from transformers import AutoModelForObjectDetection

    model = AutoModelForObjectDetection.from_pretrained(TINY_DETECTOR, dtype=torch.float32)
    with torch.no_grad():
        model.model.backbone.model.embedder.embedder[0].convolution.weight.mul_(1e38)
    model.save_pretrained(tmp_path / "grown")
    result = train(detection(tmp_path, {"maxSteps": 1}, baseModel=str(tmp_path / "grown")))
    assert result.exit_code == ExitCode.DIVERGED and result.report is not None, result.report
    assert result.report.state == TrainerState.diverged
    assert "the loss of step 1 is nan; last good checkpoint: none" in (result.report.message or "")


# --- bad data -----------------------------------------------------------------------------------


def bad_boxes(root: Path) -> tuple[ResolvedJob, list[str]]:
    job = detection(root, {"maxSteps": 1, "maxBadRows": 0.5})
    folder = root / "shapes"
    document = json.loads((folder / "annotations.json").read_text())
    (folder / "images" / "0002.png").unlink()
    (folder / "images" / "0003.png").write_bytes(b"not a png")
    first = {a["image_id"]: a for a in document["annotations"]}
    first[4]["bbox"] = [20, 20, 30, 5]
    first[5]["category_id"] = 99
    (folder / "annotations.json").write_text(json.dumps(document))
    return job, [
        "image 2 (0002.png): missing file",
        "image 3 (0003.png): unreadable image",
        "box [20, 20, 30, 5] reaches outside the 32x32 image",
        "category_id 99 is not a category of the file",
    ]


def bad_images(root: Path) -> tuple[ResolvedJob, list[str]]:
    claim = root / "claim" / "pictures"
    images = build_shapes(claim, per_class=4)
    classes = ["circle", "square", "triangle"]
    rows = [{"path": str(p.relative_to(claim)), "label": classes.index(p.parent.name)} for p in images]
    (claim / "circle" / "broken.png").write_bytes(b"not an image at all")
    rows += [
        {"path": "circle/broken.png", "label": 0},
        {"path": "square/missing.png", "label": 1},
        {"path": "triangle/000.png", "label": 7},
    ]
    (claim / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = {
        "format": "jsonl",
        "source": {"pvc": {"claimName": "data", "path": "/pictures/labels.jsonl"}},
        "columns": {"image": "path", "label": "label"},
    }
    training = TRAINING | {"maxSteps": 1, "maxBadRows": 0.5}
    job = vision_job(root, data=claim, dataset=dataset, training=training, numClasses=3)
    manifest = claim / "labels.jsonl"
    return job, [
        f"row 13 of {manifest}: not a readable image",
        f"row 14 of {manifest}: missing file {claim / 'square' / 'missing.png'}",
        f"row 15 of {manifest}: unknown label 7: config.numClasses is 3, so labels are 0 to 2",
    ]


def bad_chats(root: Path) -> tuple[ResolvedJob, list[str]]:
    job = multimodal(root, {"maxSteps": 1, "maxBadRows": 0.5})
    chats = root / "data" / "tiny-pictures.jsonl"
    (root / "data" / "pictures" / "garbage.png").write_bytes(b"not a picture at all")

    def asking_about(image: str) -> str:
        user = [{"type": "image", "image": image}, {"type": "text", "text": "What is it?"}]
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": "A shape."}]
        return json.dumps({"messages": messages}) + "\n"

    with chats.open("a") as lines:
        lines.write(asking_about("pictures/garbage.png") + asking_about("pictures/missing.png"))
    return job, [
        f"row 25 of {chats}: image pictures/garbage.png is not a readable image",
        f"row 26 of {chats}: image pictures/missing.png not found",
    ]


@pytest.mark.parametrize("spoil", [bad_boxes, bad_images, bad_chats], ids=["detection", "classification", "multimodal"])
def test_bad_data_is_counted_and_named_and_the_run_goes_on(
    spoil: Callable[[Path], tuple[ResolvedJob, list[str]]], tmp_path: Path
) -> None:
    job, reasons = spoil(tmp_path)
    result = train(job)
    assert result.exit_code == 0, result.report
    (data,) = log_events(tmp_path / "checkpoints", "data")
    assert data["badRows"] == len(reasons), data
    named = "\n".join(data["firstBadRows"])
    for reason in reasons:
        assert reason in named, (reason, data["firstBadRows"])
