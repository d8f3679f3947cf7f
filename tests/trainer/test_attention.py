"""Attention over packed rows: each sample as if alone, no attention across samples, the kernels chosen."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

from tensorone.errors import ConfigurationError
from tests.trainer.conftest import lora_base_model
from trainer.attention import (
    VARLEN_SDPA,
    AttentionChoice,
    ModelAttention,
    attend_with_varlen_kernel,
    choose_attention,
    enable_packed_attention,
    torch_varlen_usable,
    varlen_sdpa_attention,
)
from trainer.data.batches import PackedBatch, pack
from trainer.data.examples import IGNORE_INDEX

VOCAB = 97


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """Four query heads sharing two key/value heads, so grouped-query attention is exercised too."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


def random_examples(lengths: list[int], seed: int = 1) -> list[Example]:
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for length in lengths:
        ids = torch.randint(0, VOCAB, (length,), generator=generator).tolist()
        prompt = length // 2
        examples.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def packed_logits(model: LlamaForCausalLM, batch: PackedBatch, *, with_cu_seqlens: bool = True) -> torch.Tensor:
    inputs = batch.model_inputs()
    if not with_cu_seqlens:
        # use_cache=False as in training: with a cache transformers does not look for packed positions.
        inputs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids, "use_cache": False}
    with torch.no_grad():
        return model(**inputs).logits[0]


@pytest.mark.parametrize("with_cu_seqlens", [True, False], ids=["cu_seqlens", "position_ids_only"])
def test_packed_logits_equal_each_sample_run_alone(with_cu_seqlens: bool) -> None:
    model = tiny_llama()
    assert enable_packed_attention(model) == AttentionChoice(VARLEN_SDPA)
    examples = random_examples([9, 1, 17, 4])
    batch = pack(examples)

    logits = packed_logits(model, batch, with_cu_seqlens=with_cu_seqlens)

    for example, start in zip(examples, batch.cu_seqlens.tolist(), strict=False):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([example.input_ids])).logits[0]
        torch.testing.assert_close(logits[start : start + len(example.input_ids)], alone, rtol=1e-5, atol=1e-5)


def test_changing_one_sample_does_not_change_another_samples_logits() -> None:
    model = tiny_llama()
    enable_packed_attention(model)
    sample_a, sample_b = random_examples([12, 10])
    perturbed_a = Example([(t + 1) % VOCAB for t in sample_a.input_ids], sample_a.labels)

    before = packed_logits(model, pack([sample_a, sample_b]))
    after = packed_logits(model, pack([perturbed_a, sample_b]))

    assert not torch.allclose(before[:12], after[:12]), "perturbing sample A must change A's own logits"
    assert torch.equal(before[12:], after[12:])


def test_padded_batches_still_honour_the_attention_mask() -> None:
    """Evaluation code may keep padding: under the packed implementation it gives SDPA's results."""
    reference, model = tiny_llama(), tiny_llama()
    enable_packed_attention(model)
    input_ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(3))
    attention_mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])

    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).logits
        got = model(input_ids=input_ids, attention_mask=attention_mask).logits

    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1, :5], expected[1, :5])


def test_enable_packed_attention_reaches_through_a_lora_wrapper() -> None:
    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))

    assert enable_packed_attention(model) == AttentionChoice(VARLEN_SDPA)
    assert lora_base_model(model).config._attn_implementation == VARLEN_SDPA


def test_enable_packed_attention_rejects_what_is_not_a_transformers_model() -> None:
    with pytest.raises(ConfigurationError, match="expected a transformers PreTrainedModel"):
        enable_packed_attention(torch.nn.Linear(2, 2))


def test_inconsistent_cu_seqlens_are_refused() -> None:
    model = tiny_llama()
    enable_packed_attention(model)
    batch = pack(random_examples([5, 5]))
    inputs = {**batch.model_inputs(), "cu_seq_lens_q": torch.tensor([0, 4, 9], dtype=torch.int32)}

    with pytest.raises(ConfigurationError, match="row length 10"):
        model(**inputs)


def test_sliding_window_models_fall_back_to_sdpa_with_the_packed_mask() -> None:
    """Per-segment attention has no sliding window: such models use transformers' own packed mask."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=4,
    )
    model = MistralForCausalLM(config).eval()
    choice = enable_packed_attention(model)
    assert choice.implementation == "sdpa"
    assert choice.describe() == (
        f"attention sdpa: MistralForCausalLM uses sliding-window attention, which {VARLEN_SDPA} does not implement; "
        "transformers' sdpa with a block-diagonal mask for packed rows"
    )
    examples = random_examples([9, 6])
    batch = pack(examples)

    logits = packed_logits(model, batch, with_cu_seqlens=False)

    with torch.no_grad():
        second_alone = model(input_ids=torch.tensor([examples[1].input_ids])).logits[0]
    torch.testing.assert_close(logits[9:], second_alone, rtol=1e-5, atol=1e-5)


def tiny_gemma2(seed: int = 0) -> Gemma2ForCausalLM:
    """Gemma 2 as it ships: soft-capped attention logits, every other layer a sliding window (of 4
    tokens here, so that it matters inside an example), and a class without sdpa support."""
    torch.manual_seed(seed)
    config = Gemma2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        sliding_window=4,
    )
    return Gemma2ForCausalLM(config).eval()


def test_gemma2_falls_back_to_eager_attention_says_why_and_keeps_examples_apart() -> None:
    base = tiny_gemma2()
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    choice = enable_packed_attention(model)

    assert choice == AttentionChoice(
        "eager",
        "Gemma2ForCausalLM does not support sdpa; transformers' eager attention with a block-diagonal mask for "
        "packed rows",
    )
    assert base.config._attn_implementation == "eager"
    examples = random_examples([9, 1, 17, 4])
    batch = pack(examples)
    with torch.no_grad():
        logits = model(**batch.model_inputs()).logits[0]
        for example, start in zip(examples, batch.cu_seqlens.tolist(), strict=False):
            alone = model(input_ids=torch.tensor([example.input_ids])).logits[0]
            torch.testing.assert_close(logits[start : start + len(example.input_ids)], alone, rtol=1e-5, atol=1e-5)


def attention_of(
    *, sdpa: bool = True, flash: bool = True, sliding_window: bool = False, softcap: bool = False
) -> ModelAttention:
    return ModelAttention(
        model="TinyForCausalLM",
        supports_sdpa=sdpa,
        supports_flash=flash,
        sliding_window=sliding_window,
        softcap=softcap,
    )


def test_what_a_model_class_and_config_say_about_attention() -> None:
    assert ModelAttention.of(tiny_llama()) == ModelAttention("LlamaForCausalLM", True, True, False, False)
    assert ModelAttention.of(tiny_gemma2()) == ModelAttention("Gemma2ForCausalLM", False, True, True, True)


@pytest.mark.parametrize(
    ("device_type", "compute_dtype", "flash_installed", "model", "expected"),
    [
        # Flash varlen on CUDA when attention computes in half precision, weights or autocast alike;
        # it computes sliding windows and soft-capping itself.
        ("cuda", torch.bfloat16, True, attention_of(), "flash_attention_2"),
        ("cuda", torch.float16, True, attention_of(sliding_window=True), "flash_attention_2"),
        ("cuda", torch.bfloat16, True, attention_of(sdpa=False, softcap=True), "flash_attention_2"),
        # Not on CPU, not in fp32, not without the package, not for a class without flash support.
        ("cpu", torch.bfloat16, True, attention_of(), VARLEN_SDPA),
        ("cuda", torch.float32, True, attention_of(), VARLEN_SDPA),
        ("cuda", torch.bfloat16, False, attention_of(), VARLEN_SDPA),
        ("cuda", torch.bfloat16, True, attention_of(flash=False), VARLEN_SDPA),
        # Per-segment SDPA has no sliding window: transformers' own packed mask instead.
        ("cuda", torch.float32, True, attention_of(sliding_window=True), "sdpa"),
        ("cpu", torch.float32, False, attention_of(sliding_window=True), "sdpa"),
        # No soft-capping in SDPA, and a class without sdpa: eager, with the same packed mask.
        ("cpu", torch.float32, False, attention_of(softcap=True), "eager"),
        ("cpu", torch.float32, False, attention_of(sdpa=False), "eager"),
        ("cuda", torch.bfloat16, True, attention_of(sdpa=False, flash=False, sliding_window=True), "eager"),
    ],
)
def test_the_attention_chosen_for_packing(
    device_type: str, compute_dtype: torch.dtype, flash_installed: bool, model: ModelAttention, expected: str
) -> None:
    chosen = choose_attention(
        model, device_type=device_type, compute_dtype=compute_dtype, flash_installed=flash_installed
    )
    assert chosen.implementation == expected
    packed_kernel = expected in {"flash_attention_2", VARLEN_SDPA}
    assert (chosen.fallback is None) == packed_kernel, chosen


def test_a_fallback_on_a_gpu_names_what_would_give_flash_attention() -> None:
    chosen = choose_attention(
        attention_of(sdpa=False), device_type="cuda", compute_dtype=torch.bfloat16, flash_installed=False
    )
    assert chosen.describe() == (
        "attention eager: TinyForCausalLM does not support sdpa; transformers' eager attention with a "
        "block-diagonal mask for packed rows (install flash-attn for flash_attention_2)"
    )


def reference_varlen_kernel(  # noqa: PLR0917 - the kernel's signature
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor | None,
    max_q: int,
    max_k: int,
    *,
    scale: float | None = None,
    window_size: tuple[int, int] = (-1, -1),
    enable_gqa: bool = False,
) -> torch.Tensor:
    """What torch.nn.attention.varlen.varlen_attn computes (CUDA only), written with SDPA for the CPU:
    [tokens, heads, dim] in and out, causal within each segment for window_size (-1, 0)."""
    assert cu_seq_k is not None and torch.equal(cu_seq_q, cu_seq_k) and max_q == max_k
    assert window_size == (-1, 0), "the caller must ask for causal attention"
    bounds = cu_seq_q.tolist()
    assert max(b - a for a, b in itertools.pairwise(bounds)) == max_q
    segments = [
        torch.nn.functional.scaled_dot_product_attention(
            query[a:b].transpose(0, 1),
            key[a:b].transpose(0, 1),
            value[a:b].transpose(0, 1),
            is_causal=True,
            scale=scale,
            enable_gqa=enable_gqa,
        ).transpose(0, 1)
        for a, b in itertools.pairwise(bounds)
    ]
    return torch.cat(segments)


def test_the_varlen_kernel_path_matches_per_segment_attention_with_grouped_heads() -> None:
    """The layout plumbing around PyTorch's varlen flash kernel (which needs a CUDA GPU): the
    transformers layout in, grouped key/value heads, causal segments, the transformers layout out."""
    torch.manual_seed(0)
    heads, kv_heads, dim = 4, 2, 8
    lengths = [5, 1, 9, 3]
    total = sum(lengths)
    query = torch.randn(1, heads, total, dim)
    key = torch.randn(1, kv_heads, total, dim)
    value = torch.randn(1, kv_heads, total, dim)
    cu_seqlens = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)

    got = attend_with_varlen_kernel(
        query, key, value, cu_seqlens, max(lengths), dim**-0.5, kernel=reference_varlen_kernel
    )

    module = torch.nn.Module()
    module.num_key_value_groups = heads // kv_heads  # type: ignore[assignment]  # what transformers' attention modules carry
    expected, _ = varlen_sdpa_attention(
        module, query, key, value, None, scaling=dim**-0.5, cu_seq_lens_q=cu_seqlens, max_length_q=max(lengths)
    )
    assert got.shape == expected.shape == (1, total, heads, dim)
    torch.testing.assert_close(got, expected)


def test_the_varlen_kernel_is_only_used_where_it_runs() -> None:
    # On this CPU the per-segment path runs; dropout would also rule the kernel out (it has none).
    assert not torch_varlen_usable(torch.zeros(1, 2, 3, 4, dtype=torch.bfloat16), 0.0)
    with pytest.raises(ConfigurationError, match=r"torch\.nn\.attention\.varlen"):
        attend_with_varlen_kernel(
            torch.zeros(1, 1, 2, 2),
            torch.zeros(1, 1, 2, 2),
            torch.zeros(1, 1, 2, 2),
            torch.tensor([0, 2]),
            2,
            None,
            kernel=None,
        )
