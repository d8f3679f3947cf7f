"""The multimodal example: ``examples/multimodal-lora.yaml`` resolves next to itself, and the tiny LLaVA
and the picture chats it ships are what their scripts build."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from PIL import Image, ImageChops

from tests.trainer.conftest import REPO, TINY_VLM
from trainer.cli import resolve_manifest

EXAMPLE = REPO / "examples" / "multimodal-lora.yaml"
DATA = REPO / "examples" / "data"


def script(path: Path) -> ModuleType:
    """A build script of examples/, imported (this process has transformers loaded already)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_resolves_paths_next_to_the_manifest(tmp_path: Path) -> None:
    job = resolve_manifest(EXAMPLE, output=tmp_path)
    assert Path(job.config.base_model or "") == TINY_VLM
    assert job.dataset_mount_path == str(EXAMPLE.parent)
    assert (job.name, job.dataset_name, job.model_type) == ("multimodal-lora", "tiny-pictures", "multimodal")
    source = job.dataset.source.pvc
    assert source is not None and (EXAMPLE.parent / source.path.lstrip("/")).is_file()


def _settings(file: Path) -> Any:
    """A JSON settings file's values, less the version of the library that wrote it."""
    values = json.loads(file.read_text())
    values.pop("transformers_version", None)
    return values


def test_the_shipped_tiny_vlm_is_what_its_script_builds(tmp_path: Path) -> None:
    """Compared by what the files mean (settings, tensors, tokenization, template), not their bytes."""
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    builder = script(REPO / "examples" / "models" / "build_tiny_llava.py")
    builder.build_processor(tmp_path)
    builder.build_model(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in TINY_VLM.iterdir())
    for name in ("config.json", "generation_config.json", "processor_config.json"):
        assert _settings(tmp_path / name) == _settings(TINY_VLM / name), f"{name} drifted"
    assert (tmp_path / "chat_template.jinja").read_text() == (TINY_VLM / "chat_template.jinja").read_text()
    built, ours = load_file(tmp_path / "model.safetensors"), load_file(TINY_VLM / "model.safetensors")
    assert built.keys() == ours.keys()
    for key, tensor in ours.items():
        assert torch.equal(built[key], tensor), f"weight {key} drifted"
    built_processor, shipped = (AutoProcessor.from_pretrained(p, backend="pil") for p in (tmp_path, TINY_VLM))
    assert built_processor.tokenizer.get_vocab() == shipped.tokenizer.get_vocab()
    text = "<|user|><image>Any text: wörds, 1234.<|end|>"
    assert built_processor.tokenizer(text)["input_ids"] == shipped.tokenizer(text)["input_ids"]


def test_the_shipped_pictures_and_chats_are_what_their_script_builds(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr("sys.argv", ["build_tiny_pictures.py", str(tmp_path)])
    script(DATA / "build_tiny_pictures.py").main()
    assert (tmp_path / "tiny-pictures.jsonl").read_text() == (DATA / "tiny-pictures.jsonl").read_text()
    shipped = sorted(p.name for p in (DATA / "pictures").iterdir())
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == shipped and len(shipped) == 12
    for name in shipped:
        with Image.open(tmp_path / "pictures" / name) as built, Image.open(DATA / "pictures" / name) as ours:
            assert ImageChops.difference(built.convert("RGB"), ours.convert("RGB")).getbbox() is None, name
