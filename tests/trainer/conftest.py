"""Shared pieces of the trainer tests: the tiny model the repository ships, jobs, and run readers.

Every test trains the real model folder examples/models/tiny-llama (a 270 KB Llama built by
examples/models/build_tiny_llama.py) through the real ``from_pretrained`` path, on CPU.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
from safetensors.torch import load_file

from tensorone.api.resolved import ResolvedJob, with_defaults
from tensorone.api.v1alpha1 import TrainingConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = REPO / "examples" / "models" / "tiny-llama"
TINY_VLM = REPO / "examples" / "models" / "tiny-llava"  # built by examples/models/build_tiny_llava.py
EXAMPLE_DATA = REPO / "examples" / "data" / "tiny-instructions.jsonl"

# One thread per trainer process, here and in the subprocesses the tests start (torchrun does the
# same): the tiny model gains nothing from more, and the suite shares two cores with others.
# Comparisons between an in-process run and a subprocess need the same thread count anyway.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_and_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    # Never touch a real pod's termination log or the network from a test.
    monkeypatch.setenv("TENSORONE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("TENSORONE_FAULT_NAN_AT_STEP", raising=False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def example_records(count: int = 24) -> list[dict[str, Any]]:
    """Prompt/completion records from the example dataset."""
    lines = EXAMPLE_DATA.read_text().splitlines()[:count]
    return [json.loads(line) for line in lines]


def make_job(
    root: Path,
    *,
    training: dict[str, Any] | None = None,
    optimization: dict[str, Any] | None = None,
    strategy: str = "lora",
    parameters: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    resume_from: str | None = None,
    model_type: str = "llm",
    config_extra: dict[str, Any] | None = None,
    use_gpu: bool = False,
) -> ResolvedJob:
    """A resolved job on the tiny model, writing under ``root``; camelCase overrides as in a manifest,
    the sections left out filled with their defaults as the operator fills them."""
    config: dict[str, Any] = {
        "baseModel": str(TINY_MODEL),
        "strategy": strategy,
        "training": {"epochs": 1, "batchSize": 4, "learningRate": 0.01, "maxSeqLength": 48, "seed": 7}
        | (training or {}),
    }
    if strategy != "full":
        config["parameters"] = {"rank": 4, "alpha": 8, "dropout": 0.1, "targetModules": ["q_proj", "v_proj"]} | (
            parameters or {}
        )
    if optimization is not None:
        config["optimization"] = optimization
    config |= config_extra or {}
    return ResolvedJob.model_validate(
        {
            "name": "test-job",
            "modelType": model_type,
            "config": with_defaults(TrainingConfig.model_validate(config)),
            "datasetName": "test-data",
            "dataset": dataset or {"format": "jsonl", "source": {"inline": {"records": example_records()}}},
            "datasetMountPath": str(root),
            "checkpointDir": str(root / "checkpoints"),
            "outputDir": str(root / "output"),
            "resumeFrom": resume_from,
            "reportPort": 0,
            "useGpu": use_gpu,
        }
    )


def lora_base_model(model: torch.nn.Module) -> PreTrainedModel:
    """The transformers model inside a LoRA job's model, checking that it is a peft wrapper of one."""
    from peft import PeftModel
    from transformers import PreTrainedModel

    assert isinstance(model, PeftModel), type(model)
    base = model.get_base_model()
    assert isinstance(base, PreTrainedModel), type(base)
    return base


def step_losses(checkpoint_dir: Path) -> dict[int, float]:
    """Loss of every step in the metrics log (a step logged twice keeps its last value)."""
    losses: dict[int, float] = {}
    for line in (checkpoint_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "step":
            losses[record["step"]] = record["loss"]
    return losses


def log_events(checkpoint_dir: Path, event: str) -> list[dict[str, Any]]:
    lines = (checkpoint_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["event"] == event]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file in a folder."""
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    assert tensors, f"no weights in {folder}"
    return tensors


def assert_gradients_close(
    got: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], *, rel: float
) -> None:
    """Each gradient equals its reference within ``rel`` of the reference's own scale (its largest
    element). The same float32 terms summed in another order (packed rows, chunked projections)
    err relative to the size of the whole gradient, not of one element, which may be near zero. A
    failure names the worst element with both values."""
    assert got.keys() == expected.keys(), sorted(got.keys() ^ expected.keys())
    for name, reference in expected.items():
        scale = reference.abs().max().item()
        error = (got[name] - reference).abs().flatten()
        worst = int(error.argmax())
        assert error[worst] <= rel * scale, (
            f"{name}: element {worst} is {got[name].flatten()[worst].item():.6g}, expected "
            f"{reference.flatten()[worst].item():.6g}; |difference| {error[worst].item():.3g} > "
            f"{rel:g} x the gradient's scale {scale:.3g}"
        )


def assert_same_weights(left: Path, right: Path) -> None:
    a, b = weights(left), weights(right)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"
