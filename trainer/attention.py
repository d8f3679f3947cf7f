"""Attention that never crosses the examples of a packed row (``trainer.data.batches.pack``).

:func:`enable_packed_attention` picks the implementation for a model: transformers' varlen flash
attention on CUDA when ``flash_attn`` is installed, the model supports it and attention computes in
fp16/bf16 (half weights, or bf16/fp16 autocast), otherwise :data:`VARLEN_SDPA`, registered here in
transformers' ``AttentionInterface``. On a CUDA GPU that computes in fp16/bf16 it runs PyTorch's own
varlen flash kernel over the whole row; elsewhere it splits the row by ``cu_seqlens`` and runs
causal SDPA on each segment, so the cross-example blocks a block-diagonal mask would compute and
throw away are never computed. Both read the boundaries from the keywords of
``PackedBatch.model_inputs()``.

A model :data:`VARLEN_SDPA` cannot run (sliding windows, soft-capped attention logits, a class
without sdpa support such as Gemma 2) falls back to an implementation it supports, where
transformers masks packed rows itself, and the choice says why.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from tensorone.errors import ConfigurationError

VARLEN_SDPA = "tensorone_varlen_sdpa"
"""Name of the per-segment SDPA attention in transformers' attention registry."""

FLASH_VARLEN = "flash_attention_2"

HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class ModelAttention:
    """What a model's attention computes, and which implementations its class supports."""

    model: str  # the class name, for messages
    supports_sdpa: bool
    supports_flash: bool
    sliding_window: bool
    softcap: bool

    @classmethod
    def of(cls, model: PreTrainedModel) -> ModelAttention:
        config = model.config
        return cls(
            model=type(model).__name__,
            supports_sdpa=bool(getattr(model, "_supports_sdpa", False)),
            supports_flash=bool(getattr(model, "_supports_flash_attn", False)),
            sliding_window=bool(
                getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
            ),
            softcap=getattr(config, "attn_logit_softcapping", None) is not None,
        )


@dataclass(frozen=True)
class AttentionChoice:
    """The attention implementation a model trains with, and why it is not the usual packed kernel."""

    implementation: str
    fallback: str | None = None  # None for the packed kernels (flash varlen, VARLEN_SDPA)

    def describe(self) -> str:
        """One line for the log and the report's message."""
        if self.fallback is None:
            return f"attention {self.implementation}"
        return f"attention {self.implementation}: {self.fallback}"


def choose_attention(
    model: ModelAttention, *, device_type: str, compute_dtype: torch.dtype, flash_installed: bool
) -> AttentionChoice:
    """The packing-safe attention for a model, from what it runs on (a pure function of its inputs).

    ``compute_dtype`` is the dtype attention computes in: the weights' dtype, or the autocast dtype
    under mixed precision (fp32 weights under bf16 autocast compute attention in bf16, which is what
    flash-attention needs). Flash varlen computes sliding windows and soft-capping itself;
    :data:`VARLEN_SDPA` computes neither, so such models take ``sdpa`` (sliding windows) or ``eager``
    (soft-capping, or a class without sdpa), where transformers masks a packed row block-diagonally
    from its restarting ``position_ids``: the same result, with the cross-example blocks computed.
    """
    if device_type == "cuda" and compute_dtype in HALF_DTYPES and flash_installed and model.supports_flash:
        return AttentionChoice(FLASH_VARLEN)
    if not model.supports_sdpa:
        why = f"{model.model} does not support sdpa"
    elif model.softcap:
        why = f"{model.model} soft-caps its attention logits, which sdpa does not compute"
    elif model.sliding_window:
        why = f"{model.model} uses sliding-window attention, which {VARLEN_SDPA} does not implement"
        return AttentionChoice("sdpa", f"{why}; transformers' sdpa with a block-diagonal mask for packed rows")
    else:
        return AttentionChoice(VARLEN_SDPA)
    hint = ""
    if device_type == "cuda" and compute_dtype in HALF_DTYPES and model.supports_flash:
        hint = " (install flash-attn for flash_attention_2)"
    return AttentionChoice(
        "eager", f"{why}; transformers' eager attention with a block-diagonal mask for packed rows{hint}"
    )


def enable_packed_attention(model: nn.Module, autocast_dtype: torch.dtype | None = None) -> AttentionChoice:
    """Switch ``model`` (a transformers model, possibly inside a peft wrapper) to packing-safe attention.

    Call it after the model has its final device and dtype; ``autocast_dtype`` is the mixed-precision
    dtype the training step runs under, if any. Returns what :func:`choose_attention` chose, with the
    reason for a fallback. Padded batches (``attention_mask`` given) keep working with every choice,
    so evaluation code needs no change.
    """
    base = base_transformers_model(model)
    parameter = next(base.parameters(), None)
    choice = choose_attention(
        ModelAttention.of(base),
        device_type=parameter.device.type if parameter is not None else "cpu",
        compute_dtype=autocast_dtype or (parameter.dtype if parameter is not None else torch.float32),
        flash_installed=importlib.util.find_spec("flash_attn") is not None,
    )
    base.set_attn_implementation(choice.implementation)
    return choice


def base_transformers_model(model: nn.Module) -> PreTrainedModel:
    """The transformers model inside ``model``: ``model`` itself, or what a peft wrapper wraps."""
    get_base_model = getattr(model, "get_base_model", None)
    base = get_base_model() if callable(get_base_model) else model
    if not isinstance(base, PreTrainedModel):
        raise ConfigurationError(
            f"expected a transformers PreTrainedModel (optionally wrapped by peft), got {type(base).__name__}",
            field="model",
        )
    return base


def varlen_sdpa_attention(  # noqa: PLR0917 - transformers calls attention functions positionally
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention restricted to each packed sample: one SDPA call per segment.

    Segments come from ``cu_seq_lens_q`` or, when only ``position_ids`` are given (the flattening
    convention of transformers' ``DataCollatorWithFlattening``), from the positions that restart at
    0. A call with a real (padding) mask, or a single unpacked sequence, is plain SDPA.
    """
    for unsupported in ("sliding_window", "softcap", "s_aux"):
        if kwargs.get(unsupported) is not None:
            raise ConfigurationError(
                f"{VARLEN_SDPA} does not implement {unsupported!r}; enable_packed_attention chooses one that does "
                "for this model",
                field="attn_implementation",
            )
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if (
        attention_mask is None
        and cu_seqlens is not None
        and cu_seqlens.shape[0] > 2
        and query.shape[0] == 1
        and torch_varlen_usable(query, dropout)
    ):
        # One flash kernel for the whole row, and no device sync to read the boundaries.
        return attend_with_varlen_kernel(
            query, key, value, cu_seqlens, int(kwargs["max_length_q"]), scaling, kernel=_torch_varlen_attn()
        ), None
    boundaries = None if attention_mask is not None else _segment_boundaries(kwargs, query.shape[2])
    if boundaries is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if query.shape[0] != 1:
        raise ConfigurationError(
            f"packed attention takes one packed row, got a batch of {query.shape[0]}", field="input_ids"
        )
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    lengths = [end - start for start, end in itertools.pairwise(boundaries)]
    # Each segment is a complete causal sequence (query and key lengths equal), so is_causal=True is
    # exact and lets SDPA skip the upper triangle too.
    # Outputs go back to transformers' [batch, tokens, heads, head_dim] layout segment by segment,
    # so the concatenation is the one copy (no extra transpose-and-copy of the whole row).
    outputs = [
        nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True).transpose(
            1, 2
        )
        for q, k, v in zip(
            query.split(lengths, dim=2), key.split(lengths, dim=2), value.split(lengths, dim=2), strict=True
        )
    ]
    return torch.cat(outputs, dim=1), None


class VarlenKernel(Protocol):
    """The signature of ``torch.nn.attention.varlen.varlen_attn`` that :func:`attend_with_varlen_kernel` uses."""

    def __call__(  # noqa: PLR0917 - torch's signature
        self,
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
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


@functools.cache
def _torch_varlen_attn() -> VarlenKernel | None:
    """PyTorch's own varlen flash attention (``torch.nn.attention.varlen``, torch >= 2.10), if present."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    kernel: VarlenKernel = varlen_attn
    return kernel


def torch_varlen_usable(query: torch.Tensor, dropout: float) -> bool:
    """Whether PyTorch's varlen flash kernel can run this attention: CUDA with flash-attention's
    hardware (compute capability 8.0+), fp16/bf16 activations (weights or autocast), no dropout
    (the kernel has none), and a torch that ships it."""
    return (
        query.is_cuda
        and query.dtype in HALF_DTYPES
        and dropout == 0.0
        and _flash_capable(query.device.index)
        and _torch_varlen_attn() is not None
    )


@functools.cache
def _flash_capable(device_index: int | None) -> bool:
    """Flash-attention kernels need compute capability 8.0 (Ampere) or newer; asked once per device."""
    return torch.cuda.get_device_capability(device_index) >= (8, 0)


def attend_with_varlen_kernel(  # noqa: PLR0917 - the attention call's own inputs
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    scaling: float | None,
    *,
    kernel: VarlenKernel | None,
) -> torch.Tensor:
    """Causal attention within each segment of one packed row through a varlen kernel.

    Takes transformers' ``[1, heads, tokens, head_dim]`` (key and value may have fewer heads: grouped
    query attention is the kernel's, no copy) and returns ``[1, tokens, heads, head_dim]``, the layout
    transformers expects back from an attention function.
    """
    if kernel is None:
        raise ConfigurationError("this torch has no torch.nn.attention.varlen", field="attn_implementation")
    output = kernel(
        query[0].transpose(0, 1).contiguous(),
        key[0].transpose(0, 1).contiguous(),
        value[0].transpose(0, 1).contiguous(),
        cu_seqlens,
        cu_seqlens,
        max_seqlen,
        max_seqlen,
        scale=scaling,
        window_size=(-1, 0),  # causal
        enable_gqa=key.shape[1] != query.shape[1],
    )
    assert isinstance(output, torch.Tensor)  # a tuple only when auxiliary outputs are asked for
    return output.unsqueeze(0)


def _segment_boundaries(kwargs: dict[str, Any], length: int) -> list[int] | None:
    """``[0, end_0, end_1, ..., length]`` for a packed row, or None when the row is one sequence."""
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is not None:
        boundaries = [int(b) for b in cu_seqlens.tolist()]
        if boundaries[0] != 0 or boundaries[-1] != length:
            raise ConfigurationError(
                f"cu_seq_lens_q must run from 0 to the row length {length}, got {boundaries[0]}..{boundaries[-1]}",
                field="cu_seq_lens_q",
            )
        return boundaries if len(boundaries) > 2 else None
    position_ids = kwargs.get("position_ids")
    if position_ids is None or position_ids.shape[0] != 1:
        return None
    starts = torch.nonzero(position_ids[0] == 0).flatten().tolist()
    if starts[:1] != [0] or len(starts) == 1:
        return None
    return [*starts, length]


def _padding_only_mask(**kwargs: Any) -> torch.Tensor | None:
    """Mask builder for :data:`VARLEN_SDPA`: no mask for packed rows, SDPA's own mask for padded batches.

    Without a padding mask there is nothing to build: causality and sample boundaries are applied
    per segment by :func:`varlen_sdpa_attention`, and skipping the ``[T, T]`` mask saves its memory.
    """
    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(**kwargs)


# Registration is global in transformers (a class-level mapping) and idempotent.
AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention)
AttentionMaskInterface.register(VARLEN_SDPA, _padding_only_mask)
