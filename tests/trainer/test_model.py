"""Model loading options: the hub token, the cache and offline mode come from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.conftest import make_job
from trainer.model import hub_options


def test_hub_token_cache_and_offline_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = make_job(tmp_path).model_copy(update={"cache_dir": str(tmp_path / "hf")})
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_options(job) == {"token": "hf_secret", "cache_dir": str(tmp_path / "hf"), "local_files_only": True}
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub_options(job) == {"token": None, "cache_dir": str(tmp_path / "hf"), "local_files_only": False}


def test_a_base_model_that_is_not_there_is_a_configuration_error(tmp_path: Path) -> None:
    from tensorone.errors import ConfigurationError
    from trainer.model import load_tokenizer

    job = make_job(tmp_path, config_extra={"baseModel": str(tmp_path / "missing-model")})
    with pytest.raises(ConfigurationError) as raised:
        load_tokenizer(job)
    assert raised.value.field == "config.baseModel"


def test_an_adapter_is_written_the_same_whatever_the_processs_string_hashing(tmp_path: Path) -> None:
    """peft keeps targetModules as a set, written in the order of the process's string hashing: two
    runs that train the same weights would get different files and status.output.sha256 values."""
    import json

    import torch

    from trainer.model import load_model, save_weights

    targets = ["v_proj", "o_proj", "q_proj", "k_proj"]
    model = load_model(make_job(tmp_path, parameters={"targetModules": targets}), torch.device("cpu"))
    save_weights(model, tmp_path / "adapter")
    written = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert written["target_modules"] == sorted(targets)
