"""What this release's trainer trains: every other model type is refused by field, custom runs."""

from __future__ import annotations

from typing import Any

import pytest

from tensorone.api.trainable import TRAINED_MODEL_TYPES, VISION_ARCHITECTURES, untrainable_error, vision_task_error
from tensorone.api.v1alpha1 import ModelType, TrainingJobSpec
from tensorone.api.v1alpha1.dataset import DatasetFormat
from tests.factories import training_job


def spec_of(**fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(training_job(**fields)["spec"])


def test_the_trained_model_types_and_custom_images_pass() -> None:
    for model_type in TRAINED_MODEL_TYPES:
        assert untrainable_error(spec_of(modelType=str(model_type))) is None
    assert untrainable_error(spec_of(modelType="custom", config={"custom": {"image": "me/train:1"}})) is None


def test_every_model_type_the_api_accepts_trains_or_runs_a_custom_image() -> None:
    # A type added to the API without a trainer task would be accepted only to be refused; the
    # operator refuses it before scheduling (untrainable_error), and this test asks for the task.
    assert set(ModelType) == {*TRAINED_MODEL_TYPES, ModelType.custom}


@pytest.mark.parametrize("architecture", ["yolov8", "yolov8n", "YOLO11s"])
def test_yolo_is_refused_before_scheduling_naming_the_license_and_the_alternatives(architecture: str) -> None:
    error = untrainable_error(spec_of(modelType="vision", config={"architecture": architecture}))
    assert error is not None and error.field == "spec.config.architecture"
    assert "Ultralytics, licensed AGPL-3.0" in error.message
    assert all(name in error.message for name in VISION_ARCHITECTURES)


def test_a_vision_job_s_task_comes_from_its_dataset_and_must_fit_the_architecture() -> None:
    detector = spec_of(modelType="vision", config={"architecture": "rt-detr-r18"})
    assert vision_task_error(detector, DatasetFormat.coco) is None
    refused = vision_task_error(detector, DatasetFormat.imagefolder)
    assert refused is not None and refused.field in ("spec.datasetId", "spec.config.architecture")
    assert vision_task_error(spec_of(modelType="llm"), DatasetFormat.imagefolder) is None
