"""Object detection: COCO reading with bad-entry accounting, augmentations that move boxes with
their pixels, a tiny RT-DETR whose mAP rises above chance on drawn shapes, exact resume with
augmentations on, and a pretrained detector re-headed for the Dataset's classes."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tensorone.api.resolved import ResolvedJob, with_defaults
from tensorone.api.v1alpha1 import TrainingConfig
from tensorone.api.v1alpha1.trainingjob import Augmentation
from tensorone.errors import ConfigurationError, DataError
from tests.trainer.conftest import REPO, assert_same_weights, log_events, step_losses
from trainer.data import box_augmentation as aug
from trainer.data.coco import read_coco
from trainer.run import RunOptions, run

TINY_DETECTOR = REPO / "examples" / "models" / "tiny-rt-detr"


def build_shapes(folder: Path, *, images: int, size: int) -> dict[str, Any]:
    """examples/data/build_shapes.py (a script, not a package module) writing into ``folder``."""
    spec = importlib.util.spec_from_file_location("build_shapes", REPO / "examples" / "data" / "build_shapes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    document: dict[str, Any] = module.build(folder, images=images, size=size)
    return document


AUGMENTATION = {
    "fliplr": 0.5,
    "flipud": 0.2,
    "scale": 0.2,
    "translate": 0.1,
    "hsvH": 0.015,
    "hsvS": 0.5,
    "hsvV": 0.3,
    "mixup": 0.2,
    "copyPaste": 0.3,
}


def detection_job(
    root: Path, *, training: dict[str, Any], config: dict[str, Any] | None = None, **extra: Any
) -> ResolvedJob:
    spec = {
        "baseModel": str(TINY_DETECTOR),
        "inputSize": [64, 64],
        "training": {"batchSize": 8, "learningRate": 0.002, "weightDecay": 0.0001, "seed": 7} | training,
    } | (config or {})
    return ResolvedJob.model_validate(
        {
            "name": "detect",
            "modelType": "vision",
            "config": with_defaults(TrainingConfig.model_validate(spec)),
            "datasetName": "shapes",
            "dataset": {"format": "coco", "source": {"pvc": {"claimName": "data", "path": "/shapes"}}},
            "datasetMountPath": str(root),
            "checkpointDir": str(root / "checkpoints"),
            "outputDir": str(root / "output"),
            "reportPort": 0,
        }
        | extra
    )


# --- COCO reading -------------------------------------------------------------------------------


def test_bad_entries_are_counted_and_named(tmp_path: Path) -> None:
    document = build_shapes(tmp_path / "shapes", images=12, size=32)
    images = tmp_path / "shapes" / "images"
    (images / "0002.png").unlink()  # missing file
    (images / "0003.png").write_bytes(b"not a png")  # unreadable
    first = {a["image_id"]: a for a in document["annotations"]}
    first[4]["bbox"] = [20, 20, 30, 5]  # reaches outside the 32x32 image
    first[5]["category_id"] = 99  # unknown class
    document["annotations"].append({"id": 999, "image_id": 404, "category_id": 1, "bbox": [0, 0, 4, 4]})
    document["images"][5]["file_name"] = "../../escape.png"
    (tmp_path / "shapes" / "annotations.json").write_text(json.dumps(document))
    spec = detection_job(tmp_path, training={}).dataset

    data = read_coco(spec, mount_path=tmp_path, num_classes=2, max_bad_rows=0.5, eval_split=0.25, seed=7)

    assert (data.entries, data.bad_entries) == (13, 6)
    assert len(data.train) + len(data.eval) == 7
    named = " | ".join(data.first_bad)
    for expected in (
        "annotations[",
        "image_id 404 is not an image",
        "image 2 (0002.png): missing file",
        "image 3 (0003.png): unreadable image",
        "reaches outside the 32x32 image",
        "category_id 99 is not a category",
    ):
        assert expected in named
    assert data.class_names == ["square", "disc"]
    with pytest.raises(DataError, match=r"6 of 13 entries .* config.training.maxBadRows=0.1 allows"):
        read_coco(spec, mount_path=tmp_path, num_classes=2, max_bad_rows=0.1, eval_split=0.0, seed=7)
    with pytest.raises(ConfigurationError, match=r"numClasses is 80 but annotations\.json has 2 categories"):
        read_coco(spec, mount_path=tmp_path, num_classes=80, max_bad_rows=0.5, eval_split=0.0, seed=7)


# --- augmentations ------------------------------------------------------------------------------

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def painted(boxes: list[tuple[int, int, int, int]], size: tuple[int, int] = (48, 64)) -> aug.Sample:
    """A black image with each box filled with its own colour exactly."""
    image = np.zeros((*size, 3), dtype=np.uint8)
    for (x, y, w, h), colour in zip(boxes, COLOURS, strict=False):
        image[y : y + h, x : x + w] = colour
    return aug.Sample(image, np.array(boxes, dtype=np.float64), np.arange(len(boxes)))


def assert_boxes_hold_their_pixels(sample: aug.Sample, *, tolerance: int = 1) -> None:
    """Inside each box (shrunk by ``tolerance`` for resampling at the edges) is its colour only."""
    assert len(sample.boxes) == len(sample.labels)
    for (x, y, w, h), label in zip(sample.boxes, sample.labels, strict=True):
        inner = sample.image[
            int(np.ceil(y)) + tolerance : int(y + h) - tolerance, int(np.ceil(x)) + tolerance : int(x + w) - tolerance
        ]
        assert inner.size, (x, y, w, h)
        assert np.abs(inner.astype(int) - COLOURS[label]).max() <= 2, (label, x, y, w, h)


@pytest.mark.parametrize("seed", range(12))
def test_geometric_augmentations_move_each_box_with_its_pixels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sample = painted([(4, 6, 14, 10), (30, 20, 20, 16), (10, 30, 8, 12)])
    for step in (aug.flip_horizontal, aug.flip_vertical):
        assert_boxes_hold_their_pixels(step(sample), tolerance=0)
    gain = rng.uniform(0.6, 1.6)
    moved = aug.scale_translate(sample, gain, rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3))
    assert_boxes_hold_their_pixels(moved)
    assert_boxes_hold_their_pixels(aug.resize(sample, 96, 40))
    # The colour of every box kept is found nowhere outside the boxes (no box was lost or misplaced).
    outside = np.ones(moved.image.shape[:2], dtype=bool)
    for x, y, w, h in moved.boxes:
        outside[max(0, int(y) - 1) : int(np.ceil(y + h)) + 1, max(0, int(x) - 1) : int(np.ceil(x + w)) + 1] = False
    for label in moved.labels:
        assert not (np.abs(moved.image[outside].astype(int) - COLOURS[label]).max(axis=1) <= 2).any()


def test_copy_paste_and_mixup_bring_the_other_image_s_boxes() -> None:
    rng = np.random.default_rng(3)
    sample = painted([(2, 2, 10, 10)])
    other = painted([(0, 0, 1, 1), (40, 30, 12, 8)])  # the first too small to paste
    other.labels[:] = [0, 1]
    pasted = aug.copy_paste(sample, other, rng)
    assert list(pasted.labels) == [0, 1]
    assert_boxes_hold_their_pixels(pasted, tolerance=0)

    mixed = aug.mixup(sample, other, rng)
    assert len(mixed.boxes) == 3 and list(mixed.labels) == [0, 0, 1]
    np.testing.assert_allclose(mixed.boxes[1:], other.boxes)


def test_hsv_jitter_changes_colours_not_boxes() -> None:
    sample = painted([(4, 6, 14, 10)])
    jittered = aug.hsv_jitter(sample, 0.1, 1.0, 0.5)
    np.testing.assert_array_equal(jittered.boxes, sample.boxes)
    assert (jittered.image[8, 8] != sample.image[8, 8]).any()


def test_augmentations_the_task_cannot_honour_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"augmentation.mosaic is not supported .* supported: mixup"):
        aug.refuse_unsupported(Augmentation(mosaic=0.5))
    with pytest.raises(ConfigurationError) as refused:
        aug.refuse_unsupported(Augmentation(degrees=10))
    assert refused.value.field == "config.augmentation.degrees"


# --- training -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny detector trained on 96 shape images, augmentations on, evaluated every 10 steps."""
    root = tmp_path_factory.mktemp("shapes")
    build_shapes(root / "shapes", images=96, size=64)
    job = detection_job(
        root,
        training={
            "epochs": 9,
            "evalSplit": 0.25,
            "evalSteps": 9,
            "checkpointEveryEpoch": False,
            "checkpointSteps": 36,
            "keepCheckpoints": 10,
        },
        config={"augmentation": AUGMENTATION, "numClasses": 2},
    )
    result = run(job, RunOptions(serve_reports=False))
    assert result.exit_code == 0, result.report
    return root


@pytest.mark.slow
def test_map_rises_well_above_chance_and_is_reported(shapes_run: Path) -> None:
    evaluations = log_events(shapes_run / "checkpoints", "eval")
    first, last = evaluations[0]["metrics"], evaluations[-1]["metrics"]
    # Random boxes on these images score an mAP50 below 0.01 (the first evaluation is about that).
    assert first["mAP50"] < 0.05
    assert last["mAP50"] > 0.1 and last["mAP"] > 0.02, evaluations
    report = (
        json.loads((shapes_run / "termination-log").read_text()) if (shapes_run / "termination-log").exists() else None
    )
    if report is not None:
        assert report["evalMetrics"] == last["metrics"]
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    model = AutoModelForObjectDetection.from_pretrained(shapes_run / "output")
    assert model.config.id2label == {0: "square", 1: "disc"}
    assert AutoImageProcessor.from_pretrained(shapes_run / "output").size == {"height": 64, "width": 64}


@pytest.mark.slow
def test_resume_with_augmentations_is_bit_identical(shapes_run: Path, tmp_path: Path) -> None:
    checkpoint = "ckpt-step-36"
    shutil.copytree(shapes_run / "shapes", tmp_path / "shapes")
    shutil.copytree(shapes_run / "checkpoints" / checkpoint, tmp_path / "checkpoints" / checkpoint)
    job = detection_job(
        tmp_path,
        training={
            "epochs": 9,
            "evalSplit": 0.25,
            "evalSteps": 9,
            "checkpointEveryEpoch": False,
            "checkpointSteps": 36,
            "keepCheckpoints": 10,
        },
        config={"augmentation": AUGMENTATION, "numClasses": 2},
        resumeFrom=checkpoint,
    )
    assert run(job, RunOptions(serve_reports=False)).exit_code == 0

    expected, resumed = step_losses(shapes_run / "checkpoints"), step_losses(tmp_path / "checkpoints")
    assert sorted(resumed) == list(range(37, 82))
    assert all(resumed[step] == expected[step] for step in resumed)
    expected_map = {e["step"]: e["metrics"] for e in log_events(shapes_run / "checkpoints", "eval")}
    for event in log_events(tmp_path / "checkpoints", "eval"):
        assert event["metrics"] == expected_map[event["step"]]
    assert_same_weights(shapes_run / "output", tmp_path / "output")


def test_an_architecture_trains_from_scratch_and_a_wrong_family_is_refused(tmp_path: Path) -> None:
    from trainer.tasks.detection import architecture_config, load_detector

    config = architecture_config("rt-detr-v2-r18", num_labels=3)
    assert (config.model_type, config.decoder_layers, config.backbone_config.depths) == ("rt_detr_v2", 3, [2, 2, 2, 2])
    job = detection_job(tmp_path, training={}, config={"architecture": "rt-detr-v2-r18"})
    with pytest.raises(ConfigurationError, match=r"architecture rt-detr-v2-r18 is rt_detr_v2, but .* is rt_detr"):
        load_detector(job, ["a", "b"])


def test_input_size_must_be_a_multiple_of_the_stride(tmp_path: Path) -> None:
    from trainer.tasks.detection import DetectionTask

    with pytest.raises(ConfigurationError, match=r"multiples of 32, such as \[64, 96\]"):
        DetectionTask(detection_job(tmp_path, training={}, config={"inputSize": [70, 100]}))
