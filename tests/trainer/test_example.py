"""The README's main job: ``t1 train examples/tiny-llm-lora.yaml``, and the shipped tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tensorone.cli import main
from tensorone.cli.train import resolve_manifest
from tensorone.errors import ConfigurationError, DatasetNotFound
from tests.trainer.conftest import REPO, TINY_MODEL, step_losses

EXAMPLE = REPO / "examples" / "tiny-llm-lora.yaml"


@pytest.mark.slow
def test_t1_train_runs_the_example_and_lowers_the_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(EXAMPLE), "--output", str(tmp_path), "--no-report"]) == 0
    printed = capsys.readouterr()
    assert "loss " in printed.out and "state completed" in printed.out
    assert "step/s" in printed.err, "a progress bar was shown"

    losses = step_losses(tmp_path / "checkpoints")
    steps = sorted(losses)
    assert losses[steps[-1]] < losses[steps[0]] / 3, "the loss visibly went down"
    assert (tmp_path / "output" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "job.yaml").is_file()
    assert any(p.name.startswith("ckpt-epoch-") for p in (tmp_path / "checkpoints").iterdir())

    # The same command again finds the final checkpoint and has nothing left to do.
    assert main(["train", str(EXAMPLE), "--output", str(tmp_path), "--no-report"]) == 0
    assert "resumed from ckpt-epoch-15" in capsys.readouterr().out
    assert step_losses(tmp_path / "checkpoints") == losses


def test_the_example_resolves_paths_next_to_the_manifest(tmp_path: Path) -> None:
    job = resolve_manifest(EXAMPLE, output=tmp_path)
    assert Path(job.config.base_model or "") == TINY_MODEL
    assert job.dataset_mount_path == str(EXAMPLE.parent)
    assert job.checkpoint_dir == str(tmp_path / "checkpoints")
    assert job.output_dir == str(tmp_path / "output")
    assert (job.name, job.dataset_name, job.model_type) == ("tiny-llm-lora", "tiny-instructions", "llm")


def test_a_manifest_without_its_dataset_is_refused(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    only_job = text[text.index("kind: TrainingJob") - len("apiVersion: training.tensorone.ai/v1alpha1\n") :]
    (tmp_path / "job.yaml").write_text(only_job)
    with pytest.raises(DatasetNotFound) as raised:
        resolve_manifest(tmp_path / "job.yaml")
    assert raised.value.field == "spec.datasetId"


def test_an_invalid_manifest_is_refused_as_the_api_server_would(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(EXAMPLE.read_text().replace("learningRate: 0.01", "learningRate: 5"))
    with pytest.raises(ConfigurationError) as raised:
        resolve_manifest(tmp_path / "job.yaml")
    assert "learningRate" in str(raised.value)


def test_the_shipped_tiny_model_is_what_its_script_builds(tmp_path: Path) -> None:
    script = REPO / "examples" / "models" / "build_tiny_llama.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    shipped = sorted(p.name for p in TINY_MODEL.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped
    for name in shipped:
        assert (tmp_path / name).read_bytes() == (TINY_MODEL / name).read_bytes(), f"{name} drifted"
    assert sum((TINY_MODEL / name).stat().st_size for name in shipped) < 400_000
    assert json.loads((TINY_MODEL / "config.json").read_text())["model_type"] == "llama"
