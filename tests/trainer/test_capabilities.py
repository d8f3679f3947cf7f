"""Settings: everything the trainer cannot honour refused by field name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tensorone.api.v1alpha1.trainingjob import LoraParameters
from tensorone.errors import ConfigurationError
from tests.trainer.conftest import make_job
from trainer.settings import settings_from_job


def test_full_has_no_lora_parameters(tmp_path: Path) -> None:
    assert settings_from_job(make_job(tmp_path, strategy="full"), cuda_available=False).lora is None


@pytest.mark.parametrize(
    ("overrides", "cuda", "field", "words"),
    [
        ({"model_type": "vision"}, False, "modelType", "allowed: llm"),
        ({"model_type": "custom"}, False, "modelType", "own image"),
        ({"config_extra": {"numClasses": 3}}, False, "config.numClasses", "vision"),
        ({"config_extra": {"inputSize": [32, 32]}}, False, "config.inputSize", "vision"),
        ({"config_extra": {"custom": {"image": "x"}}}, False, "config.custom", "custom"),
        ({"config_extra": {"baseModel": None}}, False, "config.baseModel", "required"),
        ({"config_extra": {"strategy": None}}, False, "config.strategy", "lora, qlora, full"),
        ({"training": {"evalSteps": 5}}, False, "config.training.evalSteps", "evalSplit"),
        ({"optimization": {"mixedPrecision": "fp16"}}, False, "config.optimization.mixedPrecision", "bf16 or no"),
        ({"strategy": "qlora"}, False, "config.strategy", "CUDA"),
        ({"use_gpu": True}, False, "useGpu", "CUDA is not available"),
        (
            {"dataset": {"format": "imagefolder", "source": {"pvc": {"claimName": "d"}}}},
            False,
            "dataset.format",
            "image",
        ),
        (
            {"dataset": {"format": "jsonl", "source": {"pvc": {"claimName": "d"}}, "columns": {"image": "img"}}},
            False,
            "dataset.columns.image",
            "vision",
        ),
        (
            {"dataset": {"format": "csv", "source": {"inline": {"records": [{"text": "x"}]}}}},
            False,
            "dataset.format",
            "jsonl or json",
        ),
        ({"resume_from": "../elsewhere"}, False, "resumeFrom", "latest, none or a checkpoint id"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_field(
    tmp_path: Path, overrides: dict[str, Any], cuda: bool, field: str, words: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        settings_from_job(make_job(tmp_path, **overrides), cuda_available=cuda)
    assert raised.value.field == field
    assert words in raised.value.message


def test_lora_parameters_with_strategy_full_are_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path, strategy="full")
    job = job.model_copy(update={"config": job.config.model_copy(update={"parameters": LoraParameters()})})
    with pytest.raises(ConfigurationError) as raised:
        settings_from_job(job, cuda_available=False)
    assert raised.value.field == "config.parameters"


def test_fp16_is_accepted_where_there_is_a_gpu(tmp_path: Path) -> None:
    job = make_job(tmp_path, optimization={"mixedPrecision": "fp16"}, use_gpu=True)
    assert settings_from_job(job, cuda_available=True).optimization.mixed_precision == "fp16"
