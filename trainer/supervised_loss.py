"""Causal-LM loss that projects onto the vocabulary only the tokens that are supervised.

A ``...ForCausalLM`` forward multiplies EVERY position's hidden state by the ``[vocab, hidden]``
LM head, then the loss throws away the prompt and padding positions (label ``-100``). With a 32k
vocabulary and a small model that projection is most of the compute. :func:`causal_lm_loss` runs
the decoder only, gathers the hidden states of the supervised positions, and computes the
projection and the cross-entropy in chunks with a fused kernel (:class:`_ChunkedLinearCrossEntropy`)
that produces the gradients during the forward pass, so no ``[tokens, vocab]`` logits tensor ever
outlives its chunk.

Normalisation (what the caller divides by) follows Hugging Face's Trainer in transformers >= 4.46,
see docs/performance.md: the sum of token losses over all micro-batches of an optimizer step and
all ranks, divided by the number of supervised tokens in that same set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tensorone.errors import ConfigurationError
from trainer.attention import base_transformers_model
from trainer.data.batches import PackedBatch

LOGITS_PER_CHUNK = 1 << 25
"""Elements of one chunk of logits (128 MiB in fp32): 1024 tokens of a 32k vocabulary."""


def causal_lm_loss(model: nn.Module, batch: PackedBatch, chunk_tokens: int | None = None) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the supervised tokens of ``batch``, and their count.

    ``model`` is a transformers ``...ForCausalLM`` (Llama, Mistral, Qwen, ... : a decoder followed
    by a linear LM head), optionally wrapped by a peft LoRA model; its attention should come from
    :func:`trainer.attention.enable_packed_attention`. ``chunk_tokens`` bounds how many tokens are
    projected at once (default: :data:`LOGITS_PER_CHUNK` logits). The loss is fp32 and summed, not
    averaged: the caller divides by the step's supervised-token count (see the module docstring).
    A batch with no supervised token returns a zero loss that still back-propagates (zeros).
    """
    _check(model, chunk_tokens)
    return _loss_sum(model, batch, chunk_tokens), batch.num_supervised


def _check(model: nn.Module, chunk_tokens: int | None) -> None:
    """Refuse what :func:`causal_lm_loss` cannot compute exactly, naming the field."""
    if chunk_tokens is not None and chunk_tokens < 1:
        raise ConfigurationError(f"must be a positive number of tokens, got {chunk_tokens}", field="chunk_tokens")
    unsupported = unsupported_reason(model)
    if unsupported is not None:
        raise ConfigurationError(unsupported.message, field=unsupported.field)


def _loss_sum(model: nn.Module, batch: PackedBatch, chunk_tokens: int | None) -> torch.Tensor:
    """The computation of :func:`causal_lm_loss`, for a model :func:`_check` accepted."""
    base = base_transformers_model(model)
    head = base.get_output_embeddings()
    decoder = base.get_decoder()
    hidden = decoder(**batch.model_inputs()).last_hidden_state[0]
    positions = batch.supervised_positions.to(hidden.device)
    supervised = _SupervisedRows.apply(hidden, positions)
    targets = batch.shift_labels[0].to(hidden.device).index_select(0, positions)
    chunk = (
        chunk_tokens
        if chunk_tokens is not None
        else max(1, LOGITS_PER_CHUNK // int(base.config.get_text_config().vocab_size))
    )
    softcap = getattr(base.config, "final_logit_softcapping", None)
    if type(head) is nn.Linear and softcap is None:
        loss_sum = _ChunkedLinearCrossEntropy.apply(supervised, head.weight, head.bias, targets, chunk)
    else:
        # A LoRA-adapted or otherwise wrapped head, or soft-capped logits: the module's own forward,
        # chunk by chunk (autograd keeps each chunk's logits for the backward pass).
        loss_sum = supervised.new_zeros((), dtype=torch.float32)
        for rows, labels in zip(supervised.split(chunk), targets.split(chunk), strict=True):
            logits = head(rows).float()
            if softcap is not None:
                logits = softcap * torch.tanh(logits / softcap)
            loss_sum = loss_sum + nn.functional.cross_entropy(logits, labels, reduction="sum")
    return loss_sum


@dataclass(frozen=True)
class Unsupported:
    """Why :func:`causal_lm_loss` cannot compute a model's loss, and the field to blame."""

    message: str
    field: str


def unsupported_reason(model: nn.Module) -> Unsupported | None:
    """None when :func:`causal_lm_loss` computes exactly what ``model``'s own forward and loss would.

    It needs a transformers model (plain or under a peft LoRA wrapper) whose logits are a linear LM
    head over the decoder's last hidden state, optionally soft-capped: not a prompt-learning
    adapter (it changes the inputs), not a model that scales its logits (Cohere's ``logit_scale``).
    """
    try:
        base = base_transformers_model(model)
    except ConfigurationError as error:
        return Unsupported(error.message, error.field or "model")
    peft_config = getattr(model, "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):
        return Unsupported(
            "prompt-learning adapters change the model's inputs and are not supported; use LoRA or full fine-tuning",
            "strategy",
        )
    if getattr(base.config, "logit_scale", None) is not None:
        return Unsupported(
            f"{type(base).__name__} scales its logits; the supervised-only loss supports plain linear LM heads",
            "model",
        )
    if not isinstance(base.get_output_embeddings(), nn.Module):
        return Unsupported(f"{type(base).__name__} has no output projection (LM head)", "model")
    try:
        base.get_decoder()
    except (AttributeError, NotImplementedError):
        return Unsupported(f"{type(base).__name__} has no separate decoder to run before its LM head", "model")
    return None


class SupervisedCausalLM(nn.Module):
    """``model`` as a module whose forward is :func:`causal_lm_loss`: what DistributedDataParallel wraps.

    DDP only synchronises gradients of a forward that went through the DDP wrapper, and
    :func:`causal_lm_loss` calls the decoder inside ``model`` directly. So under DDP wrap this
    module, not ``model``: ``DDP(SupervisedCausalLM(model))(batch)`` returns the loss sum. The
    parameters are ``model``'s own (nothing is copied), so saving ``model`` saves the training.
    """

    def __init__(self, model: nn.Module, chunk_tokens: int | None = None) -> None:
        super().__init__()
        _check(model, chunk_tokens)  # once, not on every micro-batch
        self.model = model
        self.chunk_tokens = chunk_tokens

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        """The summed loss over ``batch``'s supervised tokens (their count is ``batch.num_supervised``)."""
        return _loss_sum(self.model, batch, self.chunk_tokens)


class _SupervisedRows(torch.autograd.Function):
    """``hidden[positions]`` for distinct positions, with a scatter-free backward.

    ``index_select``'s backward accumulates with ``scatter_add`` (it must allow repeated indices),
    which is several times slower on CPU than writing each row once with ``index_put_``.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(positions)
        ctx.rows = hidden.shape[0]
        return hidden.index_select(0, positions)

    @staticmethod
    def backward(ctx: Any, grad_rows: torch.Tensor) -> tuple[torch.Tensor, None]:
        (positions,) = ctx.saved_tensors
        grad_hidden = grad_rows.new_zeros((ctx.rows, *grad_rows.shape[1:]))
        grad_hidden.index_put_((positions,), grad_rows)
        return grad_hidden, None


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """``sum_i CE(h_i @ W.T + b, y_i)`` with gradients computed chunk by chunk in the forward pass.

    For each chunk: logits (upcast to fp32, like transformers' loss), log-sum-exp, the loss, then
    ``dlogits = softmax - onehot`` and from it ``dh = dlogits @ W`` (and ``dW``, ``db`` only when
    the head is trained: a frozen LoRA base skips that matmul). Backward just scales the stored
    gradients by the incoming scalar. Peak extra memory: one chunk of logits plus ``dh``.
    """

    @staticmethod
    def forward(  # noqa: PLR0917 - autograd.Function.apply passes everything positionally
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk: int,
    ) -> torch.Tensor:
        need_hidden = hidden.requires_grad
        need_weight = weight.requires_grad
        need_bias = bias is not None and bias.requires_grad
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias and bias is not None else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            rows = hidden[start : start + chunk]
            labels = targets[start : start + chunk]
            logits = nn.functional.linear(rows, weight, bias).float()
            log_normaliser = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
            total += (log_normaliser - picked).sum()
            if not (need_hidden or need_weight or need_bias):
                continue
            # softmax in place, then subtract the one-hot target: d(loss)/d(logits).
            grad_logits = logits.sub_(log_normaliser.unsqueeze(1)).exp_()
            grad_logits[torch.arange(labels.shape[0], device=labels.device), labels] -= 1.0
            grad_logits = grad_logits.to(rows.dtype)
            if grad_hidden is not None:
                torch.matmul(grad_logits, weight.to(rows.dtype), out=grad_hidden[start : start + chunk])
            if grad_weight is not None:
                grad_weight.addmm_(grad_logits.t().float(), rows.float())
            if grad_bias is not None:
                grad_bias += grad_logits.float().sum(0)
        ctx.save_for_backward(
            *(g if g is not None else torch.empty(0) for g in (grad_hidden, grad_weight, grad_bias)),
        )
        ctx.has_grads = (grad_hidden is not None, grad_weight is not None, grad_bias is not None)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        has_hidden, has_weight, has_bias = ctx.has_grads
        scale = grad_output.float()
        return (
            grad_hidden * scale.to(grad_hidden.dtype) if has_hidden else None,
            (grad_weight * scale).to(ctx.weight_dtype) if has_weight else None,
            (grad_bias * scale).to(ctx.weight_dtype) if has_bias else None,
            None,
            None,
        )
