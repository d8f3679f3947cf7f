"""What this release's trainer trains: every other model type is refused by field, custom runs."""

from __future__ import annotations

from typing import Any

import pytest

from tensorone.api.trainable import TRAINED_MODEL_TYPES, untrainable_error
from tensorone.api.v1alpha1 import ModelType, TrainingJobSpec
from tests.factories import training_job


def spec_of(**fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(training_job(**fields)["spec"])


def test_the_trained_model_types_and_custom_images_pass() -> None:
    for model_type in TRAINED_MODEL_TYPES:
        assert untrainable_error(spec_of(modelType=str(model_type))) is None
    assert untrainable_error(spec_of(modelType="custom", config={"custom": {"image": "me/train:1"}})) is None


@pytest.mark.parametrize("model_type", sorted(set(ModelType) - set(TRAINED_MODEL_TYPES) - {ModelType.custom}))
def test_every_other_model_type_is_refused_naming_what_trains(model_type: ModelType) -> None:
    error = untrainable_error(spec_of(modelType=str(model_type)))
    assert error is not None
    assert error.code == "CONFIGURATION_ERROR" and error.field == "spec.modelType"
    assert f"modelType {model_type} is not trained" in error.message
    assert all(str(trained) in error.message for trained in TRAINED_MODEL_TYPES) and "custom" in error.message
    assert error.details["trainedModelTypes"] == [str(t) for t in TRAINED_MODEL_TYPES]
