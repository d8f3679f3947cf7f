"""The image classification task: images and labels read with bad ones counted and named, the
model built or loaded with a head for the classes, augmentation a function of (seed, step,
position), accuracy that rises above chance, and a resume that is bit-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tensorone.api.trainable import VISION_ARCHITECTURES, VisionTask
from tensorone.errors import ConfigurationError, DataError
from tests.trainer.conftest import TINY_MODEL, assert_same_weights, log_events, step_losses
from tests.trainer.images import build_shapes, tiny_classifier, vision_job
from trainer.classifier import ARCHITECTURE_SETTINGS, architecture_config
from trainer.data.augmentation import Normalisation, pixels
from trainer.data.images import read_images
from trainer.run import RunOptions, run
from trainer.tasks.classification import ClassificationTask

# Every augmentation that applies to classification, with gradient accumulation: 96 training
# images, batches of 8 in steps of 2: 6 steps an epoch.
TRAINING: dict[str, Any] = {
    "epochs": 3,
    "gradientAccumulationSteps": 2,
    "evalSplit": 0.2,
    "evalSteps": 3,
    "checkpointSteps": 4,
    "keepCheckpoints": 100,
    "warmupSteps": 2,
    "lrScheduler": "cosine",
    "learningRate": 0.01,
}
AUGMENTATION = {
    "fliplr": 0.5,
    "flipud": 0.5,
    "scale": 0.3,
    "degrees": 15.0,
    "translate": 0.1,
    "hsvH": 0.02,
    "hsvS": 0.4,
    "hsvV": 0.4,
    "mixup": 0.3,
}


# Reading --------------------------------------------------------------------------------------


def test_a_folder_per_class_is_read_with_bad_images_counted_and_named(tmp_path: Path) -> None:
    data = tmp_path / "claim" / "shapes"
    build_shapes(data, per_class=4)
    (data / "circle" / "broken.png").write_bytes(b"not an image at all")
    (data / "square" / "empty.jpg").write_bytes(b"")
    (data / "square" / "notes.txt").write_text("not an image name: not an example")
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (8, 8)).save(outside)
    (data / "triangle" / "link.png").symlink_to(outside)

    images = read_images(vision_job(tmp_path, data=data, training={"maxBadRows": 0.3}), num_classes=None)
    assert images.classes == ["circle", "square", "triangle"]
    assert (images.bad_rows.count, images.bad_rows.total) == (3, 15)
    assert len(images.train) == 12 and {e.label for e in images.train} == {0, 1, 2}
    reasons = "\n".join(images.bad_rows.first)
    assert f"{data / 'circle' / 'broken.png'}: not a readable image" in reasons
    assert f"{data / 'square' / 'empty.jpg'}: not a readable image" in reasons
    assert f"{data / 'triangle' / 'link.png'}: resolves to {outside}, outside the claim" in reasons

    with pytest.raises(DataError, match=r"3 of 15 images are bad \(20.0%\), more than config.training.maxBadRows=0.1"):
        read_images(vision_job(tmp_path, data=data, training={"maxBadRows": 0.1}), num_classes=None)
    with pytest.raises(ConfigurationError) as raised:
        read_images(vision_job(tmp_path, data=data, training={"maxBadRows": 0.3}), num_classes=4)
    assert raised.value.field == "config.numClasses" and "3 classes (circle, square, triangle)" in raised.value.message


def test_a_manifest_names_its_missing_files_unknown_labels_and_unreadable_rows(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    images = build_shapes(claim / "pictures", per_class=3)
    rows: list[dict[str, Any]] = [
        {"path": str(p.relative_to(claim / "pictures")), "label": i % 3} for i, p in enumerate(images)
    ]
    rows[1]["path"] = "/pictures/" + rows[1]["path"]  # absolute: from the claim's root
    rows += [
        {"path": "circle/missing.png", "label": 0},
        {"path": "circle/000.png", "label": 7},
        {"path": "circle/000.png"},
        {"path": "../../outside.png", "label": 1},
    ]
    lines = [json.dumps(row) for row in rows] + ["{not json"]
    (claim / "pictures" / "labels.jsonl").write_text("\n".join(lines) + "\n")
    dataset = {
        "format": "jsonl",
        "source": {"pvc": {"claimName": "data", "path": "/pictures/labels.jsonl"}},
        "columns": {"image": "path", "label": "label"},
    }
    job = vision_job(tmp_path, data=claim / "pictures", dataset=dataset, training={"maxBadRows": 0.5})
    read = read_images(job, num_classes=3)
    assert read.classes == ["0", "1", "2"]
    assert (read.bad_rows.count, read.bad_rows.total, len(read.train)) == (5, 14, 9)
    manifest = claim / "pictures" / "labels.jsonl"
    assert read.bad_rows.first == [
        f"row 10 of {manifest}: missing file {claim / 'pictures' / 'circle' / 'missing.png'}",
        f"row 11 of {manifest}: unknown label 7: config.numClasses is 3, so labels are 0 to 2",
        f"row 12 of {manifest}: missing label (column 'label')",
        f"row 13 of {manifest}: image path '../../outside.png' resolves to {tmp_path / 'outside.png'}, outside the claim",
        f"row 14 of {manifest}: not valid JSON (Expecting property name enclosed in double quotes)",
    ]


# Augmentation ---------------------------------------------------------------------------------


def test_augmentation_is_a_function_of_seed_step_and_position() -> None:
    task = ClassificationTask(vision_job(Path("unused"), augmentation=AUGMENTATION))
    task.load_data()
    assert task.data is not None
    by_class = [[e for e in task.data.train if e.label == label] for label in range(3)]
    examples = [by_class[label][i] for i in range(2) for label in range(3)]  # each next one of another class
    batch, again = task.prepare(examples, 1234), task.prepare(examples, 1234)
    assert torch.equal(batch.pixel_values, again.pixel_values) and torch.equal(batch.targets, again.targets)
    other = task.prepare(examples, 1235)
    assert not torch.equal(batch.pixel_values, other.pixel_values)
    assert torch.allclose(batch.targets.sum(dim=1), torch.ones(6))
    assert (batch.targets.max(dim=1).values < 1).any(), "mixup at 0.3 mixed some of six images"
    # While the objective trains, a batch's seed comes from torch's generator (kept by checkpoints).
    task.objective(torch.nn.Linear(1, 1))
    torch.manual_seed(5)
    drawn = task.collate(examples)
    torch.manual_seed(5)
    assert torch.equal(drawn.pixel_values, task.collate(examples).pixel_values)
    assert not torch.equal(drawn.pixel_values, task.prepare(examples, None).pixel_values)

    # Evaluation batches are not augmented: resized and normalised only, targets one-hot.
    plain = task.prepare(examples, None)
    assert torch.equal(plain.targets, torch.eye(3)[plain.labels])
    normalisation = task.normalisation
    first = pixels(Image.open(examples[0].path).convert("RGB"), normalisation)
    assert np.array_equal(plain.pixel_values[0].numpy(), first)


def test_a_flip_with_probability_one_mirrors_the_image() -> None:
    from tensorone.api.v1alpha1.trainingjob import Augmentation

    image = Image.fromarray(np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3))
    normalisation = Normalisation(height=4, width=4, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    draws = dict.fromkeys(("scale", "degrees", "translate_x", "translate_y", "hue", "saturation", "value"), 0.5)
    draws |= {"fliplr": 0.2, "flipud": 0.9, "mixup": 0.0, "mixup_weight": 0.5}
    flipped = pixels(image, normalisation, Augmentation(fliplr=1.0, flipud=0.5), draws)
    assert np.array_equal(flipped, pixels(image, normalisation)[:, :, ::-1])


# Models ---------------------------------------------------------------------------------------


def test_each_architecture_name_builds_its_published_configuration() -> None:
    classification = {name for name, a in VISION_ARCHITECTURES.items() if a.task == VisionTask.classification}
    assert set(ARCHITECTURE_SETTINGS) == classification
    for name in ARCHITECTURE_SETTINGS:
        config = architecture_config(name, ["a", "b"], (224, 224))
        assert config.model_type == VISION_ARCHITECTURES[name].family and config.num_labels == 2, name
    assert architecture_config("resnet50", ["a"], (64, 64)).depths == [3, 4, 6, 3]
    assert architecture_config("vit-base", ["a"], (224, 224)).hidden_size == 768
    assert architecture_config("vit-small", ["a"], (96, 128)).image_size == [96, 128]
    assert architecture_config("convnext-tiny", ["a"], (224, 224)).hidden_sizes == [96, 192, 384, 768]


@pytest.mark.parametrize("family", ["vit", "resnet", "convnext"])
def test_a_base_model_is_loaded_with_a_head_for_the_jobs_classes(tmp_path: Path, family: str) -> None:
    base = tiny_classifier(tmp_path / family, family, labels=5, image_size=32)
    task = ClassificationTask(vision_job(tmp_path, baseModel=str(base), inputSize=[48, 48]))
    task.load_data()
    model: Any = task.load_model(torch.device("cpu"))
    assert model.config.num_labels == 3 and model.config.id2label == {0: "circle", 1: "square", 2: "triangle"}
    assert task.notices() == [
        f"{base} has no image processor: inputs are normalised with the {family} family's mean and standard deviation",
        "a new classification head for 3 classes (the base model's had 5)",
    ]
    if family == "vit":
        assert task.forward_options == {"interpolate_pos_encoding": True}  # trained at 32, fed 48
    assert task.data is not None
    batch = task.prepare(task.data.train[:2], None)
    assert task.objective(model)(batch).shape == ()


def test_a_base_model_that_is_not_an_image_classifier_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        ClassificationTask(vision_job(tmp_path, baseModel=str(TINY_MODEL)))
    assert raised.value.field == "config.baseModel"
    assert "is a llama model; image classification trains the resnet, vit, convnext families" in raised.value.message


# Training -------------------------------------------------------------------------------------


def train(root: Path, **overrides: Any) -> None:
    job = vision_job(root, training=TRAINING, augmentation=AUGMENTATION, **overrides)
    result = run(job, RunOptions(serve_reports=False))
    assert result.exit_code == 0, result.report


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    train(root)
    return root


def test_accuracy_rises_above_chance_and_is_reported(reference: Path) -> None:
    evaluations = log_events(reference / "checkpoints", "eval")
    assert [e["step"] for e in evaluations] == [3, 6, 9, 12, 15, 18]
    final = evaluations[-1]["metrics"]
    assert final["accuracy"] >= 0.75, evaluations  # chance is 1/3
    assert "top5Accuracy" not in final  # three classes
    output = reference / "output"
    assert {p.name for p in output.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json"}
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(output)
    processor = AutoImageProcessor.from_pretrained(output)
    assert model.config.id2label[0] == "circle" and processor.size == {"height": 32, "width": 32}


@pytest.mark.parametrize("checkpoint", ["ckpt-step-4", "ckpt-epoch-2"])
def test_resume_is_bit_identical(reference: Path, tmp_path: Path, checkpoint: str) -> None:
    shutil.copytree(reference / "checkpoints" / checkpoint, tmp_path / "checkpoints" / checkpoint)
    train(tmp_path, resume_from=checkpoint)
    expected, resumed = step_losses(reference / "checkpoints"), step_losses(tmp_path / "checkpoints")
    assert min(resumed) > 1 and all(resumed[step] == expected[step] for step in resumed)
    evaluations = {e["step"]: e for e in log_events(reference / "checkpoints", "eval")}
    for event in log_events(tmp_path / "checkpoints", "eval"):
        assert event["metrics"] == evaluations[event["step"]]["metrics"]
        assert event["evalLoss"] == evaluations[event["step"]]["evalLoss"]
    assert_same_weights(reference / "output", tmp_path / "output")


def test_the_examples_model_and_images_are_what_their_scripts_build(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from tests.trainer.conftest import REPO
    from tests.trainer.images import EXAMPLE_SHAPES, TINY_CONVNEXT, module_of
    from trainer.cli import resolve_manifest

    module_of(REPO / "examples" / "models" / "build_tiny_convnext.py").build(tmp_path / "model")
    built, shipped = load_file(tmp_path / "model" / "model.safetensors"), load_file(TINY_CONVNEXT / "model.safetensors")
    assert built.keys() == shipped.keys() and all(torch.equal(built[k], shipped[k]) for k in shipped)
    rebuilt = build_shapes(tmp_path / "shapes", per_class=40)
    assert len(rebuilt) == len(list(EXAMPLE_SHAPES.rglob("*.png"))) == 120
    for path in rebuilt:
        ours = EXAMPLE_SHAPES / path.relative_to(tmp_path / "shapes")
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(ours))), ours
    job = resolve_manifest(REPO / "examples" / "vision-classification.yaml", output=tmp_path / "run")
    assert job.config.base_model == str(TINY_CONVNEXT) and job.dataset_mount_path == str(REPO / "examples")
