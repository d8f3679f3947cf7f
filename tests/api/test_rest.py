"""Conversion between the reference REST bodies and TrainingJob manifests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.admission import validate
from tensorone.api.rest import (
    DATASET_ID_ANNOTATION,
    DISPLAY_NAME_ANNOTATION,
    dataset_name,
    job_details,
    job_from_details,
    job_from_rest,
    job_name,
    rest_field,
    rest_from_job,
    validated_job_from_rest,
)
from tensorone.api.v1alpha1 import MAX_JOB_NAME_LENGTH, TrainingJob
from tensorone.errors import ValidationFailed

DATA = Path(__file__).parent / "data"
REFERENCE_BODIES = ["create-llm-lora.json", "create-vision.json"]


def body(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


@pytest.mark.parametrize("name", REFERENCE_BODIES)
def test_reference_bodies_convert_to_valid_manifests_and_back(name: str) -> None:
    original = body(name)
    manifest = job_from_rest(original)
    validate(manifest)
    TrainingJob.model_validate(manifest)  # the typed model accepts it too
    assert rest_from_job(manifest) == original


def test_llm_body_maps_snake_case_config_to_the_manifest_fields() -> None:
    manifest = job_from_rest(body("create-llm-lora.json"))
    assert manifest["metadata"] == {
        "name": "llama-7b-finetune",
        "annotations": {DATASET_ID_ANNOTATION: "ds_1234567890abcdef"},
    }
    spec = manifest["spec"]
    assert spec["datasetId"] == "ds-1234567890abcdef"
    assert spec["config"]["parameters"]["targetModules"] == ["q_proj", "v_proj", "k_proj", "o_proj"]
    assert spec["config"]["training"] == {
        "epochs": 3,
        "batchSize": 4,
        "learningRate": 2e-4,
        "weightDecay": 0.01,
        "warmupSteps": 100,
        "gradientAccumulationSteps": 8,
    }
    assert spec["config"]["optimization"]["mixedPrecision"] == "fp16"
    assert (spec["gpuType"], spec["maxWorkers"], spec["priority"]) == ("a100", 2, "high")


def test_vision_body_maps_augmentation_keys() -> None:
    config = job_from_rest(body("create-vision.json"))["spec"]["config"]
    assert config["inputSize"] == [640, 640] and config["numClasses"] == 80
    assert config["augmentation"] == {"mixup": 0.1, "copyPaste": 0.5, "hsvH": 0.015, "hsvS": 0.7, "hsvV": 0.4}


def test_camel_case_and_sdk_snake_case_bodies_give_the_same_manifest() -> None:
    sdk = {
        "name": "llama-7b-finetune",
        "model_type": "llm",
        "dataset_id": "ds_1234567890abcdef",
        "config": {"base_model": "meta-llama/Llama-2-7b-hf", "strategy": "lora", "training": {"batchSize": 4}},
        "gpu_type": "a100",
        "max_workers": 2,
    }
    camel = {
        "name": "llama-7b-finetune",
        "modelType": "llm",
        "datasetId": "ds_1234567890abcdef",
        "config": {"baseModel": "meta-llama/Llama-2-7b-hf", "strategy": "lora", "training": {"batch_size": 4}},
        "gpuType": "a100",
        "maxWorkers": 2,
    }
    assert job_from_rest(sdk) == job_from_rest(camel)
    validate(job_from_rest(sdk))


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("llama-7b-finetune", "llama-7b-finetune"),
        ("Llama 7B Finetune", "llama-7b-finetune"),
        ("my_job__v2", "my-job-v2"),
        ("7b-run", "job-7b-run"),
        ("¡Hola!", "hola"),
        ("!!!", "job"),
    ],
)
def test_job_names_become_dns_1035_slugs(display: str, expected: str) -> None:
    assert job_name(display) == expected


def test_long_names_are_shortened_with_a_hash_that_keeps_them_apart() -> None:
    first, second = job_name("a" * 90 + "1"), job_name("a" * 90 + "2")
    assert len(first) == MAX_JOB_NAME_LENGTH and len(second) == MAX_JOB_NAME_LENGTH
    assert first != second


@pytest.mark.parametrize(
    "display", ["Fine-tune Llama 2 (7B) on support tickets, v2", "x" * 100, "UPPER_case_Name", "9 lives"]
)
def test_any_rest_name_round_trips_through_a_valid_manifest(display: str) -> None:
    original = {**body("create-llm-lora.json"), "name": display}
    manifest = job_from_rest(original)
    validate(manifest)
    assert manifest["metadata"]["annotations"][DISPLAY_NAME_ANNOTATION] == display
    assert rest_from_job(manifest) == original


def test_dataset_ids_become_dns_subdomains() -> None:
    assert dataset_name("ds_1234567890abcdef") == "ds-1234567890abcdef"
    assert dataset_name("ds_vision_objects_001") == "ds-vision-objects-001"
    assert dataset_name("Team.Data_v1") == "team.data-v1"
    assert dataset_name("already-fine") == "already-fine"


def test_names_that_are_already_valid_need_no_annotation() -> None:
    original = {**body("create-vision.json"), "datasetId": "objects"}
    manifest = job_from_rest(original, namespace="vision")
    assert manifest["metadata"] == {"name": "custom-object-detection", "namespace": "vision"}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"name": ""}, "name", "1 to 100 characters"),
        ({"name": "x" * 101}, "name", "1 to 100 characters"),
        ({"name": None}, "name", "1 to 100 characters"),
        ({"datasetId": 7}, "datasetId", "the id of a dataset"),
        ({"budget": 10}, "budget", "unknown parameter"),
    ],
)
def test_malformed_bodies_are_refused_naming_the_rest_field(change: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(ValidationFailed) as failed:
        job_from_rest({**body("create-llm-lora.json"), **change})
    assert any(e.field == field and says in e.reason for e in failed.value.errors), failed.value.errors


def test_validation_errors_name_rest_fields_like_the_reference() -> None:
    bad = copy.deepcopy(body("create-llm-lora.json"))
    bad["config"]["training"]["learning_rate"] = 0.5
    with pytest.raises(ValidationFailed) as failed:
        validated_job_from_rest(bad)
    assert [str(e) for e in failed.value.errors] == [
        "config.training.learning_rate: must be between 1e-06 and 0.1, got 0.5"
    ]


def test_rest_field_spelling() -> None:
    assert rest_field("spec.config.training.learningRate") == "config.training.learning_rate"
    assert rest_field("spec.config.baseModel") == "config.baseModel"
    assert rest_field("spec.config.augmentation.hsvH") == "config.augmentation.hsv_h"
    assert rest_field("spec.config.custom.env[1].name") == "config.custom.env[1].name"
    assert rest_field("spec.maxWorkers") == "maxWorkers"
    assert rest_field("metadata.name") == "name"


def test_job_details_has_the_reference_shape() -> None:
    reference = body("job-details.json")
    manifest = job_from_rest(
        {
            "name": reference["name"],
            "modelType": reference["modelType"],
            "datasetId": reference["datasetId"],
            "config": reference["config"],
        }
    )
    manifest["metadata"]["creationTimestamp"] = reference["createdAt"]
    manifest["status"] = {
        "phase": "Running",
        "progress": reference["progress"],
        "metrics": reference["metrics"],
        "resourceUsage": reference["resourceUsage"],
        "checkpoints": reference["checkpoints"],
        "startedAt": reference["startedAt"],
        "estimatedCompletion": reference["estimatedCompletion"],
    }
    validate(manifest)
    details = job_details(manifest)
    # The id is the TrainingJob's name (what the verbs take); everything else is the reference's,
    # with the create response's updatedAt in every job body (no condition yet: the creation).
    assert details == {**reference, "id": "llama-7b-finetune", "updatedAt": reference["createdAt"]}
    assert list(details)[:6] == ["id", "name", "status", "modelType", "datasetId", "config"]
    # What an HTTP client reads back is the same TrainingJob.
    again = job_from_details(details)
    assert again["spec"] == manifest["spec"] and again["metadata"]["name"] == "llama-7b-finetune"
    assert again["status"]["phase"] == "Running" and again["status"]["progress"] == reference["progress"]


def test_job_details_before_the_operator_wrote_a_status() -> None:
    details = job_details(job_from_rest(body("create-vision.json")))
    assert details["status"] == "pending"
    assert details["name"] == "custom-object-detection" and details["datasetId"] == "ds_vision_objects_001"
    assert (details["gpuType"], details["maxWorkers"]) == ("v100", 4)
    assert "progress" not in details


def test_manifest_only_fields_are_left_out_of_the_rest_body() -> None:
    manifest = job_from_rest(body("create-vision.json"))
    manifest["spec"]["suspend"] = True
    assert rest_from_job(manifest) == body("create-vision.json")
