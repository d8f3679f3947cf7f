"""The llm task as the loop uses it: packed batches and the supervised-only loss, the padded
fallback for models that need their own logits, and the compile option."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import CohereConfig, CohereForCausalLM, Gemma2Config, Gemma2ForCausalLM, PreTrainedModel

from tensorone.errors import ConfigurationError
from tests.trainer.conftest import TINY_MODEL, assert_gradients_close, log_events, lora_base_model, make_job
from trainer.attention import VARLEN_SDPA
from trainer.data.batches import PackedBatch, PaddedBatch, pad_batch
from trainer.data.examples import Example
from trainer.model import compile_layers
from trainer.run import RunOptions, run
from trainer.supervised_loss import SupervisedCausalLM
from trainer.tasks.llm import LlmTask, PaddedCausalLM

CPU = torch.device("cpu")


def loaded_task(root: Path, **overrides: Any) -> tuple[LlmTask, torch.nn.Module]:
    task = LlmTask(make_job(root, **overrides))
    return task, task.load_model(CPU)


def text_examples(task: LlmTask, count: int) -> list[Example]:
    """The first ``count`` training examples; an llm task's data are text examples."""
    train = task.load_data().train[:count]
    examples = [example for example in train if isinstance(example, Example)]
    assert len(examples) == len(train), [type(example) for example in train]
    return examples


def lora_gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_micro_batches_are_packed_and_the_loss_and_gradients_equal_the_padded_computation(tmp_path: Path) -> None:
    # No LoRA dropout: both computations must see the same network.
    task, model = loaded_task(tmp_path, parameters={"dropout": 0.0})
    examples = text_examples(task, 4)
    assert len({e.num_tokens for e in examples}) > 1, "the examples must differ in length for padding to matter"

    packed = task.collate(examples)
    assert isinstance(packed, PackedBatch)
    assert packed.num_tokens == sum(e.num_tokens for e in examples)  # not one padding token
    assert packed.num_supervised == sum(e.num_targets for e in examples)
    assert lora_base_model(model).config._attn_implementation == VARLEN_SDPA

    objective = task.objective(model)
    assert isinstance(objective, SupervisedCausalLM) and objective.model is model
    objective(packed).backward()
    packed_loss = objective(packed).item()
    packed_gradients = lora_gradients(model)
    model.zero_grad(set_to_none=True)

    padded = pad_batch(examples, task._tokenizer().pad_token_id)
    assert padded.input_ids.numel() > packed.num_tokens
    padded_objective = PaddedCausalLM(model)
    padded_objective(padded).backward()
    padded_loss = padded_objective(padded).item()

    assert packed_loss == pytest.approx(padded_loss, rel=1e-5)
    assert_gradients_close(packed_gradients, lora_gradients(model), rel=1e-5)


def with_tiny_tokenizer(model: PreTrainedModel, folder: Path) -> Path:
    """``model`` saved in ``folder`` with the tiny Llama's tokenizer (384 tokens, pad 0, bos 1, eos 2)."""
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(TINY_MODEL / name, folder / name)
    return folder


TOKENIZER_IDS: dict[str, Any] = {"vocab_size": 384, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def cohere_folder(root: Path) -> Path:
    """A tiny Cohere model (it multiplies its logits by logit_scale) with the tiny Llama's tokenizer."""
    torch.manual_seed(0)
    config = CohereConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        **TOKENIZER_IDS,
    )
    return with_tiny_tokenizer(CohereForCausalLM(config), root / "tiny-cohere")


def gemma2_folder(root: Path) -> Path:
    """A tiny Gemma 2 (soft-capped attention and logits, sliding windows, no sdpa support in its
    class) with the tiny Llama's tokenizer."""
    torch.manual_seed(0)
    config = Gemma2Config(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        max_position_embeddings=512,
        sliding_window=8,
        **TOKENIZER_IDS,
    )
    return with_tiny_tokenizer(Gemma2ForCausalLM(config), root / "tiny-gemma2")


@pytest.mark.slow
def test_a_model_that_scales_its_logits_trains_on_padded_batches_with_its_own_forward(tmp_path: Path) -> None:
    folder = cohere_folder(tmp_path)
    overrides: dict[str, Any] = {"config_extra": {"baseModel": str(folder)}, "training": {"maxSteps": 2}}
    task, model = loaded_task(tmp_path / "task", **overrides)
    examples = text_examples(task, 4)

    assert task.packed is False
    assert isinstance(task.collate(examples), PaddedBatch)
    objective = task.objective(model)
    assert isinstance(objective, PaddedCausalLM)
    # The fallback is the model's own loss: Hugging Face's labels path gives the mean of the same terms.
    batch = pad_batch(examples, task._tokenizer().pad_token_id)
    own = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    assert (objective(batch) / sum(e.num_targets for e in examples)).item() == pytest.approx(own.item(), rel=1e-5)

    result = run(make_job(tmp_path / "run", **overrides), RunOptions(serve_reports=False))
    assert result.exit_code == 0 and result.report is not None
    assert result.report.state == "completed" and result.report.step == 2


def test_collate_before_the_model_is_loaded_is_refused(tmp_path: Path) -> None:
    task = LlmTask(make_job(tmp_path))
    with pytest.raises(RuntimeError, match="load_model"):
        task.collate([])


def test_the_compile_option_compiles_every_decoder_layer_in_place(tmp_path: Path) -> None:
    # Compiling happens at the first step (a minute on two cores for this tiny model): not run here;
    # bench/trainer_speed.py --levers --compile measures its speed and loss difference.
    _, model = loaded_task(tmp_path, optimization={"compile": True})
    layers = lora_base_model(model).get_decoder().layers
    assert len(layers) == 2
    assert all(layer._compiled_call_impl is not None for layer in layers)
    plain_keys = set(loaded_task(tmp_path / "plain")[1].state_dict())
    assert set(model.state_dict()) == plain_keys  # checkpoints stay loadable either way


def test_compile_on_a_model_without_decoder_layers_names_the_field() -> None:
    with pytest.raises(ConfigurationError) as error:
        compile_layers(torch.nn.Linear(2, 2))
    assert error.value.field == "config.optimization.compile"


@pytest.mark.slow
def test_gemma2_trains_packed_with_the_attention_it_supports_and_says_which(tmp_path: Path) -> None:
    overrides: dict[str, Any] = {
        "config_extra": {"baseModel": str(gemma2_folder(tmp_path))},
        "training": {"maxSteps": 2},
        "parameters": {"dropout": 0.0},
    }
    task, model = loaded_task(tmp_path / "task", **overrides)
    assert task.packed is True and lora_base_model(model).config._attn_implementation == "eager"
    notice = (
        "attention eager: Gemma2ForCausalLM does not support sdpa; transformers' eager attention with a "
        "block-diagonal mask for packed rows"
    )
    assert task.notices() == [notice]
    # Packed under eager attention, the loss is the model's own on the padded batch.
    examples = text_examples(task, 4)
    packed_sum = task.objective(model)(task.collate(examples))
    batch = pad_batch(examples, task._tokenizer().pad_token_id)
    own = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    assert (packed_sum / sum(e.num_targets for e in examples)).item() == pytest.approx(own.item(), rel=1e-5)

    root = tmp_path / "run"
    result = run(make_job(root, **overrides), RunOptions(serve_reports=False))
    assert result.exit_code == 0 and result.report is not None
    assert result.report.state == "completed" and result.report.step == 2
    assert [event["message"] for event in log_events(root / "checkpoints", "notice")] == [notice]
