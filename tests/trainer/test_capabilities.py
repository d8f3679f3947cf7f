"""Capabilities: everything the trainer cannot honour refused by field name, the CRDs' rules included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tensorone.api.v1alpha1.trainingjob import LoraParameters
from tensorone.errors import ConfigurationError
from tests.trainer.conftest import make_job
from trainer.capabilities import refuse_unsupported


def test_full_has_no_lora_parameters(tmp_path: Path) -> None:
    job = make_job(tmp_path, strategy="full")
    refuse_unsupported(job, cuda_available=False)
    assert job.config.parameters is None


@pytest.mark.parametrize(
    ("overrides", "cuda", "field", "words"),
    [
        ({"model_type": "custom"}, False, "modelType", "own image"),
        # The CRD's rules, as the API server words them: one rule names every vision-only field.
        (
            {"config_extra": {"numClasses": 3}},
            False,
            "config",
            "numClasses and augmentation apply only to modelType vision",
        ),
        ({"config_extra": {"inputSize": [32, 32]}}, False, "config", "inputSize, numClasses"),
        ({"config_extra": {"custom": {"image": "x"}}}, False, "config.custom", "custom"),
        ({"config_extra": {"baseModel": None}}, False, "config", "config.baseModel and config.strategy"),
        ({"config_extra": {"strategy": None}}, False, "config", "(lora, qlora or full) are required"),
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
        ({"resume_from": "../elsewhere"}, False, "resumeFrom", "must match the pattern ^(latest|none|"),
        (
            {"model_type": "multimodal", "dataset": {"format": "coco", "source": {"pvc": {"claimName": "d"}}}},
            False,
            "dataset.format",
            "modelType multimodal reads chat messages with images from jsonl",
        ),
        (
            {
                "model_type": "multimodal",
                "dataset": {
                    "format": "jsonl",
                    "source": {"pvc": {"claimName": "d"}},
                    "columns": {"prompt": "q", "completion": "a"},
                },
            },
            False,
            "dataset.columns.prompt",
            "trains on chat messages",
        ),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_field(
    tmp_path: Path, overrides: dict[str, Any], cuda: bool, field: str, words: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        refuse_unsupported(make_job(tmp_path, **overrides), cuda_available=cuda)
    assert raised.value.field == field
    assert words in raised.value.message


def test_lora_parameters_with_strategy_full_are_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path, strategy="full")
    job = job.model_copy(update={"config": job.config.model_copy(update={"parameters": LoraParameters()})})
    with pytest.raises(ConfigurationError) as raised:
        refuse_unsupported(job, cuda_available=False)
    assert raised.value.field == "config.parameters"


def test_fp16_is_accepted_where_there_is_a_gpu(tmp_path: Path) -> None:
    job = make_job(tmp_path, optimization={"mixedPrecision": "fp16"}, use_gpu=True)
    refuse_unsupported(job, cuda_available=True)
    assert job.config.optimization.mixed_precision == "fp16"


@pytest.mark.parametrize(
    ("config", "dataset", "field", "words"),
    [
        ({"architecture": "yolov8"}, None, "config.architecture", "resnet18, resnet34"),
        (
            {"architecture": "resnet18"},
            {"format": "coco", "source": {"pvc": {"claimName": "d"}}},
            "config.architecture",
            "resnet18 is a classification model, but its coco Dataset asks for detection",
        ),
        ({}, {"format": "imagefolder", "source": {"uri": "https://x/a.zip"}}, "dataset", "source.pvc"),
        ({"augmentation": {"copyPaste": 0.5}}, None, "config.augmentation.copyPaste", "object detection"),
        (
            {},
            {"format": "csv", "source": {"pvc": {"claimName": "d"}}, "columns": {"image": "path"}},
            "dataset",
            "columns.label",
        ),
    ],
)
def test_what_a_vision_job_cannot_run_is_refused_by_the_operators_rules(
    tmp_path: Path, config: dict[str, Any], dataset: dict[str, Any] | None, field: str, words: str
) -> None:
    from tests.trainer.images import vision_job

    job = vision_job(tmp_path, dataset=dataset, **config)
    with pytest.raises(ConfigurationError) as raised:
        refuse_unsupported(job, cuda_available=False)
    assert raised.value.field == field
    assert words in raised.value.message


def test_a_vision_job_on_a_folder_of_classes_is_accepted(tmp_path: Path) -> None:
    from tests.trainer.images import vision_job

    refuse_unsupported(vision_job(tmp_path, architecture="vit-small"), cuda_available=False)
