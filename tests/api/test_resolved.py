"""The resolved job: every default applied by one function, and the same job whether the operator
builds it for the pods or ``t1 train`` builds it on a laptop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from tensorone_operator import builders
from tensorone_operator.config import OperatorConfig

from tensorone.api.admission import validate
from tensorone.api.resolved import ResolvedJob, with_defaults
from tensorone.api.v1alpha1 import Dataset, TrainingConfig, TrainingJob
from tensorone.api.v1alpha1.base import ApiModel
from tensorone.api.v1alpha1.trainingjob import LoraParameters, Optimization, TrainingHyperparameters
from tensorone.cli.manifests import load_manifests
from trainer.cli import resolve_manifest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiny-llm-lora.yaml"
# What legitimately differs between a pod and a laptop: the folders, the port, the uid only the
# API server gives. config.baseModel differs too when it names a folder next to the manifest.
# What differs between a laptop's run and the pods': where they run, and which start of the job (the pods').
PLACEMENT = ("uid", "startId", "datasetMountPath", "checkpointDir", "outputDir", "reportPort")
SECTIONS: dict[str, type[ApiModel]] = {
    "training": TrainingHyperparameters,
    "optimization": Optimization,
    "parameters": LoraParameters,
}


def operator_path(manifest: Path) -> ResolvedJob:
    """The resolved job in the ConfigMap the operator makes, from the objects as the API server
    stores them (validated, its defaults applied, a namespace and a uid given)."""
    stored: dict[str, dict[str, Any]] = {}
    for number, document in enumerate(load_manifests(manifest.read_text())):
        obj = validate(document)
        obj["metadata"].update(namespace="default", uid=f"uid-{number}")
        stored[obj["kind"]] = obj
    job, dataset = TrainingJob.model_validate(stored["TrainingJob"]), Dataset.model_validate(stored["Dataset"])
    config_map = builders.build_config_map(job, dataset, OperatorConfig())
    return ResolvedJob.model_validate(yaml.safe_load(config_map["data"][builders.JOB_CONFIG_KEY]))


def without_placement(job: ResolvedJob) -> dict[str, Any]:
    wire = job.to_wire()
    for key in PLACEMENT:
        wire.pop(key, None)
    wire["config"].pop("baseModel")
    return wire


def example_without(tmp_path: Path, sections: tuple[str, ...]) -> Path:
    """The example manifest with these config sections left out, beside the example's own folders."""
    if not sections:
        return EXAMPLE
    documents = list(yaml.safe_load_all(EXAMPLE.read_text()))
    for document in documents:
        if document["kind"] == "TrainingJob":
            for section in sections:
                del document["spec"]["config"][section]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return manifest


@pytest.mark.parametrize("left_out", [(), ("training", "optimization", "parameters")], ids=["as-shipped", "bare"])
def test_the_laptop_and_the_pods_get_the_same_resolved_job(tmp_path: Path, left_out: tuple[str, ...]) -> None:
    manifest = example_without(tmp_path, left_out)
    pod = operator_path(manifest)
    laptop = resolve_manifest(manifest, output=tmp_path / "run")

    assert without_placement(laptop) == without_placement(pod)
    folder = manifest.resolve().parent
    assert (laptop.dataset_mount_path, laptop.checkpoint_dir) == (str(folder), str(tmp_path / "run" / "checkpoints"))
    assert (pod.dataset_mount_path, pod.checkpoint_dir) == ("/data", "/checkpoints")
    beside = folder / (pod.config.base_model or "")
    assert laptop.config.base_model == (str(beside) if beside.is_dir() else pod.config.base_model)
    # Every default is written out, for the trainer and for whoever reads job.yaml.
    for job in (pod, laptop):
        written = job.to_wire()["config"]
        for section, model in SECTIONS.items():
            defaults = {f.alias or name for name, f in model.model_fields.items() if f.default is not None}
            assert defaults <= set(written[section]), f"{section} lacks {sorted(defaults - set(written[section]))}"
    if left_out:
        assert pod.config.training == TrainingHyperparameters()
        assert pod.config.optimization == Optimization() and pod.config.parameters == LoraParameters()


def test_with_defaults_fills_only_what_the_job_left_out() -> None:
    resolved = with_defaults(TrainingConfig.model_validate({"strategy": "lora", "training": {"epochs": 3}}))
    assert resolved.training == TrainingHyperparameters(epochs=3)
    assert resolved.optimization == Optimization()
    assert resolved.parameters == LoraParameters()
    assert with_defaults(TrainingConfig.model_validate({"strategy": "full"})).parameters is None
    custom = with_defaults(TrainingConfig.model_validate({"custom": {"image": "registry.example.com/me:1"}}))
    assert custom.parameters is None and custom.training == TrainingHyperparameters()
    assert with_defaults(resolved) == resolved


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"strategy": "full", "optimization": {}}, "config.training"),
        ({"strategy": "full", "training": {}}, "config.optimization"),
        ({"strategy": "lora", "training": {}, "optimization": {}}, "parameters are required for strategy lora"),
    ],
)
def test_a_resolved_job_without_its_defaults_is_refused(config: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ResolvedJob.model_validate(
            {
                "name": "job",
                "modelType": "llm",
                "config": {"baseModel": "m", **config},
                "datasetName": "data",
                "dataset": {"format": "jsonl", "source": {"inline": {"records": [{"text": "a"}]}}},
            }
        )
    assert words in str(raised.value)
