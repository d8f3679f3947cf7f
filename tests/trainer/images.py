"""What the vision tests train on: shapes images (examples/data/build_shape_classes.py), tiny classifiers
built from configs, and resolved vision jobs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tensorone.api.resolved import ResolvedJob, with_defaults
from tensorone.api.v1alpha1 import TrainingConfig
from tests.trainer.conftest import REPO

TINY_CONVNEXT = REPO / "examples" / "models" / "tiny-convnext"
EXAMPLE_SHAPES = REPO / "examples" / "data" / "shape-classes"


def module_of(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shapes = module_of(REPO / "examples" / "data" / "build_shape_classes.py")


def build_shapes(folder: Path, *, per_class: int = 8, seed: int = 0) -> list[Path]:
    """A folder per class of 32 x 32 shapes (circle, square, triangle)."""
    written: list[Path] = shapes.build(folder, per_class=per_class, seed=seed)
    return written


def tiny_classifier(folder: Path, family: str, *, labels: int = 5, image_size: int = 32) -> Path:
    """A classifier of ``family`` from a tiny config, saved where from_pretrained loads it."""
    from transformers import AutoConfig, AutoModelForImageClassification

    families: dict[str, dict[str, Any]] = {
        "vit": {
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "patch_size": 8,
            "image_size": image_size,
        },
        "resnet": {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"},
        "convnext": {"num_stages": 2, "hidden_sizes": [8, 16], "depths": [1, 1], "patch_size": 2},
    }
    settings = families[family]
    torch.manual_seed(0)
    config = AutoConfig.for_model(family, num_labels=labels, **settings)
    AutoModelForImageClassification.from_config(config).save_pretrained(folder)
    return folder


def vision_job(
    root: Path,
    *,
    data: Path | None = None,
    training: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    resume_from: str | None = None,
    **config: Any,
) -> ResolvedJob:
    """A resolved vision job writing under ``root``, reading the claim mounted at ``data``'s parent
    (the shipped shapes by default); camelCase ``config`` fields as in a manifest."""
    folder = data or EXAMPLE_SHAPES
    settings: dict[str, Any] = {
        "baseModel": str(TINY_CONVNEXT),
        "inputSize": [32, 32],
        "training": {"epochs": 1, "batchSize": 8, "learningRate": 0.005, "seed": 7} | (training or {}),
    } | config
    if settings.get("architecture"):
        settings.pop("baseModel", None)
    return ResolvedJob.model_validate(
        {
            "name": "vision-job",
            "modelType": "vision",
            "config": with_defaults(TrainingConfig.model_validate(settings)),
            "datasetName": "shapes",
            "dataset": dataset
            or {"format": "imagefolder", "source": {"pvc": {"claimName": "data", "path": f"/{folder.name}"}}},
            "datasetMountPath": str(folder.parent),
            "checkpointDir": str(root / "checkpoints"),
            "outputDir": str(root / "output"),
            "resumeFrom": resume_from,
            "reportPort": 0,
        }
    )
