"""The create-time checks as the SDK and the gateway run them: each error has the reference's
code, the field, and the structured details of the reference's error body; the operator's
conditions say the same (tests/operator/test_builders.py)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tensorone.api import preflight
from tensorone.api.catalog import DEFAULT_GPU_CATALOG, CatalogSettings
from tensorone.api.v1alpha1 import Dataset, DatasetStatus, TrainingJobSpec
from tensorone.errors import ConfigurationError, DatasetNotFound, DatasetNotReady, InsufficientResources

DATASET = Dataset.model_validate(
    {"metadata": {"name": "chat"}, "spec": {"format": "jsonl", "source": {"inline": {"records": [{"text": "a"}]}}}}
)


def spec(**fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(
        {"modelType": "llm", "datasetId": "chat", "config": {"baseModel": "gpt2"}, **fields}
    )


def node(product: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"nvidia.com/gpu.product": product}},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }


def check(job: TrainingJobSpec, dataset: Dataset | None = DATASET, nodes: list[Any] | None = None, **kw: Any) -> Any:
    return preflight.create_error("team", job, dataset=dataset, catalog=DEFAULT_GPU_CATALOG, nodes=nodes, **kw)


def test_a_job_that_can_start_passes() -> None:
    assert check(spec(gpuType="a100"), nodes=[node("NVIDIA-A100-SXM4-80GB")]) is None
    assert check(spec(), nodes=[]) is None  # a CPU-only job needs no GPU node


def test_insufficient_resources_names_the_requested_and_the_available_types() -> None:
    error = check(spec(gpuType="h100"), nodes=[node("Tesla-V100-SXM2-16GB"), node("NVIDIA-L4")])
    assert isinstance(error, InsufficientResources) and error.field == "spec.gpuType"
    assert error.details == {
        "field": "spec.gpuType",
        "reason": error.message,
        "requestedGpuType": "h100",
        "availableGpuTypes": ["l4", "v100"],
    }
    assert error.to_body()["error"] == "INSUFFICIENT_RESOURCES"
    assert check(spec(gpuType="h100"), nodes=None) is None  # node check off


def test_a_missing_dataset_names_the_id_as_the_caller_wrote_it() -> None:
    error = check(spec(datasetId="ds-invalid-id"), dataset=None, dataset_id="ds_invalid_id")
    assert isinstance(error, DatasetNotFound)
    assert error.details["datasetId"] == "ds_invalid_id"
    assert "does not exist in namespace 'team'" in error.message


def test_a_dataset_that_is_not_ready_is_refused_with_its_condition() -> None:
    claim_missing = {
        "type": "Ready",
        "status": "False",
        "reason": "ClaimNotFound",
        "message": "claim 'data' not found",
        "lastTransitionTime": "2026-12-01T00:00:00Z",
    }
    dataset = DATASET.model_copy(update={"status": DatasetStatus.model_validate({"conditions": [claim_missing]})})
    error = check(spec(), dataset=dataset)
    assert isinstance(error, DatasetNotReady) and error.code == "DATASET_NOT_FOUND"
    assert error.details["reason"] == "ClaimNotFound" and "claim 'data' not found" in error.message


def test_configuration_errors_name_every_field() -> None:
    custom = {"image": "x", "env": [{"name": "RANK", "value": "1"}], "progressPort": preflight.MASTER_PORT}
    error = check(spec(modelType="custom", config={"custom": custom}))
    assert isinstance(error, ConfigurationError)
    assert error.details["field"] == "spec.config.custom.env[0].name"
    assert [item["field"] for item in error.details["errors"]] == [
        "spec.config.custom.env[0].name",
        "spec.config.custom.progressPort",
    ]
    unknown = check(spec(gpuType="tpu"))
    assert isinstance(unknown, ConfigurationError) and unknown.field == "spec.gpuType"
    assert unknown.details["requestedGpuType"] == "tpu" and "a100" in unknown.details["availableGpuTypes"]


def test_settings_come_from_the_operators_config_file() -> None:
    data = yaml.safe_load(
        "checkGpuNodes: false\ngpuCatalog:\n  mi300x:\n    displayName: AMD MI300X\n"
        "    products: [AMD-Instinct-MI300X]\n    memoryPerGpu: 192GB\n    hourlyPrice: 3.5\n"
    )
    settings = CatalogSettings.from_operator_config(data)
    assert settings.check_gpu_nodes is False and list(settings.gpu_catalog) == ["mi300x"]
    assert CatalogSettings.from_operator_config(None).gpu_catalog == DEFAULT_GPU_CATALOG
    priced = CatalogSettings.from_operator_config({"cpuJob": {"hourlyPrice": 0.25}})
    assert priced.cpu_pod_hourly_price == 0.25 and CatalogSettings.from_operator_config(None).cpu_pod_hourly_price == 0
    for bad in ("cheap", -1, True):
        with pytest.raises(ConfigurationError) as refused:
            CatalogSettings.from_operator_config({"cpuJob": {"hourlyPrice": bad}})
        assert refused.value.field == "cpuJob.hourlyPrice"


def images(format: str = "imagefolder", **spec_fields: Any) -> Dataset:
    fields = {"format": format, "source": {"pvc": {"claimName": "pictures"}}} | spec_fields
    return Dataset.model_validate({"metadata": {"name": "pictures"}, "spec": fields})


def vision(**config: Any) -> TrainingJobSpec:
    return spec(modelType="vision", datasetId="pictures", config={"architecture": "resnet18"} | config)


def test_a_vision_job_trains_classes_from_a_folder_or_a_manifest_on_a_claim() -> None:
    assert check(vision(), images()) is None
    assert check(vision(), images("csv", columns={"image": "path", "label": "class"})) is None
    assert check(vision(architecture=None, baseModel="facebook/convnext-tiny-224"), images()) is None


def test_a_classification_architecture_on_a_coco_dataset_is_refused_naming_the_detectors() -> None:
    error = check(vision(), images("coco", columns={"annotations": "instances.json"}))
    assert isinstance(error, ConfigurationError) and error.details["field"] == "spec.config.architecture"
    assert "resnet18 is a classification model, but its coco Dataset asks for detection" in error.message
    assert "rt-detr-r18" in error.message


def test_what_image_classification_cannot_read_or_apply_is_refused_by_field() -> None:
    uri = Dataset.model_validate(
        {"metadata": {"name": "pictures"}, "spec": {"format": "imagefolder", "source": {"uri": "https://x/a.zip"}}}
    )
    error = check(vision(augmentation={"mosaic": 0.5, "copyPaste": 0.1, "fliplr": 0.5}), uri)
    assert isinstance(error, ConfigurationError)
    assert [item["field"] for item in error.details["errors"]] == [
        "spec.datasetId",
        "spec.config.augmentation.mosaic",
        "spec.config.augmentation.copyPaste",
    ]
    assert "a uri source; image classification reads its images from a claim" in error.message
    unlabelled = check(vision(), images("jsonl", columns={"image": "path"}))
    assert isinstance(unlabelled, ConfigurationError) and "columns.label (its class)" in unlabelled.message


def test_a_multimodal_job_on_a_vision_dataset_is_refused_naming_the_formats_it_reads() -> None:
    pictures = Dataset.model_validate(
        {"metadata": {"name": "chat"}, "spec": {"format": "coco", "source": {"uri": "s3://bucket/coco"}}}
    )
    multimodal = spec(modelType="multimodal", config={"baseModel": "llava-hf/llava-1.5-7b-hf", "strategy": "lora"})
    error = check(multimodal, dataset=pictures)
    assert isinstance(error, ConfigurationError) and error.details["field"] == "spec.datasetId"
    assert "a multimodal job reads chat messages with images from one of jsonl, json, csv, parquet, text" in str(error)
    assert check(multimodal) is None
