"""The README's main job: ``t1 train examples/tiny-llm-lora.yaml``, and the shipped tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tensorone.cli import exit_codes, main
from tensorone.errors import ConfigurationError, DatasetNotFound
from tests.trainer.conftest import REPO, TINY_MODEL, step_losses
from tests.unimportable import run_without
from trainer.cli import resolve_manifest

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


def test_without_the_trainer_extra_t1_train_says_what_to_install(tmp_path: Path) -> None:
    """The trainer's verb is listed and the other verbs work; training asks for the extra, and ends
    with the exit status of an error that is not the user's input (tensorone.cli.exit_codes)."""
    ran = run_without(
        ["torch", "transformers", "peft"],
        f"""
        import sys
        from tensorone.cli import main

        assert main(["validate", {str(EXAMPLE)!r}]) == 0
        code = main(["train", {str(EXAMPLE)!r}, "--output", "run", "--no-report"])
        assert "torch" not in sys.modules
        raise SystemExit(code)
        """,
        cwd=tmp_path,
    )
    assert ran.returncode == exit_codes.exit_code("MISSING_EXTRA") == exit_codes.OTHER, ran.stderr
    assert ran.stderr.strip() == (
        "t1: MISSING_EXTRA: t1 train needs the trainer extra, which is not installed here (no module named "
        "torch): pip install 'tensorone-training[trainer]'"
    )
    assert not (tmp_path / "run").exists()


def _settings(file: Path) -> dict[str, Any]:
    """A JSON settings file's values, less the version of the library that wrote it."""
    values: dict[str, Any] = json.loads(file.read_text())
    values.pop("transformers_version", None)
    return values


def test_the_shipped_tiny_model_is_what_its_script_builds(tmp_path: Path) -> None:
    """Compared by what the files mean (settings, tensors, tokenization), not their bytes: a newer
    transformers records its version and may lay the same tokenizer out differently."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    script = REPO / "examples" / "models" / "build_tiny_llama.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    shipped = sorted(p.name for p in TINY_MODEL.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped

    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        assert _settings(tmp_path / name) == _settings(TINY_MODEL / name), f"{name} drifted"
    built, ours = load_file(tmp_path / "model.safetensors"), load_file(TINY_MODEL / "model.safetensors")
    assert built.keys() == ours.keys()
    for key, tensor in ours.items():
        assert built[key].dtype == tensor.dtype and torch.equal(built[key], tensor), f"weight {key} drifted"

    built_tokenizer, shipped_tokenizer = (
        AutoTokenizer.from_pretrained(tmp_path),
        AutoTokenizer.from_pretrained(TINY_MODEL),
    )
    assert built_tokenizer.get_vocab() == shipped_tokenizer.get_vocab()
    assert built_tokenizer.all_special_tokens == shipped_tokenizer.all_special_tokens
    texts = [line for line in (REPO / "examples" / "data" / "tiny-instructions.jsonl").read_text().splitlines()]
    texts.append("Any text at all: unseen wörds, digits 1234 and emoji \U0001f680.")
    assert built_tokenizer(texts)["input_ids"] == shipped_tokenizer(texts)["input_ids"]
    chat = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    assert built_tokenizer.apply_chat_template(chat, tokenize=False) == shipped_tokenizer.apply_chat_template(
        chat, tokenize=False
    )

    assert sum((TINY_MODEL / name).stat().st_size for name in shipped) < 400_000
    assert _settings(TINY_MODEL / "config.json")["model_type"] == "llama"
