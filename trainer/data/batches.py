"""What goes into a batch: the examples of one micro-batch laid out as tensors.

Two layouts, chosen by the task from what the model supports:

- **packed** (:func:`pack`): the ``n`` examples of a micro-batch become ONE row of
  ``T = sum(len_i)`` tokens, so no padding token is ever embedded, attended, projected or
  back-propagated. ``position_ids`` restart at 0 for every example, so rotary embeddings see the
  positions a padded row would give them, and labels are shifted *per example*: the last token of
  an example predicts nothing, never the first token of the next one. ``cu_seqlens`` marks where
  each example starts; the attention in ``trainer.attention`` reads it so that attention never
  crosses examples.
- **padded** (:func:`pad_batch`): right-padded to the longest example, with an attention mask, for
  models that train with their own logits.

Typical use in a training loop (see docs/performance.md)::

    enable_packed_attention(model)                  # trainer.attention: once, after LoRA is added
    batch = pack(micro_batch_examples).to(device)   # in the collate function
    loss_sum, n = causal_lm_loss(model, batch)      # trainer.supervised_loss
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from tensorone.errors import ConfigurationError
from trainer.data.examples import IGNORE_INDEX, Example


class TokenizedExample(Protocol):
    """What :func:`pack` needs from a sample: token ids and same-length labels (``-100`` = not supervised).

    Labels are aligned with ``input_ids`` as in Hugging Face (``labels[i]`` is token ``i`` itself or
    ``-100``); the shift to next-token targets happens in :func:`pack`.
    """

    @property
    def input_ids(self) -> Sequence[int]: ...

    @property
    def labels(self) -> Sequence[int]: ...


@dataclass(frozen=True)
class PackedBatch:
    """One micro-batch packed into a single row of ``num_tokens`` tokens.

    ``shift_labels[0, t]`` is the target of the prediction made at token ``t`` (the next token of
    the same sample) or ``-100``; ``supervised_positions`` lists the ``t`` where it is not ``-100``,
    computed on the CPU at collate time so the loss needs no device sync to find them.
    """

    input_ids: torch.Tensor  # int64 [1, T]
    position_ids: torch.Tensor  # int64 [1, T], 0..len_i-1 for each sample
    shift_labels: torch.Tensor  # int64 [1, T]
    supervised_positions: torch.Tensor  # int64 [N]
    cu_seqlens: torch.Tensor  # int32 [n + 1]: 0, len_0, len_0 + len_1, ..., T
    max_seqlen: int
    num_supervised: int  # N, a Python int: the loss normaliser needs no device sync

    @property
    def num_tokens(self) -> int:
        """Real tokens in the row (there is no padding)."""
        return int(self.input_ids.shape[1])

    @property
    def num_samples(self) -> int:
        """Samples packed into the row."""
        return int(self.cu_seqlens.shape[0]) - 1

    def to(self, device: torch.device | str) -> PackedBatch:
        """The same batch with every tensor on ``device`` (non-blocking when the source is pinned)."""
        return PackedBatch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            position_ids=self.position_ids.to(device, non_blocking=True),
            shift_labels=self.shift_labels.to(device, non_blocking=True),
            supervised_positions=self.supervised_positions.to(device, non_blocking=True),
            cu_seqlens=self.cu_seqlens.to(device, non_blocking=True),
            max_seqlen=self.max_seqlen,
            num_supervised=self.num_supervised,
        )

    def model_inputs(self) -> dict[str, Any]:
        """Keyword arguments for a transformers decoder (or a full ``...ForCausalLM``) forward.

        The ``cu_seq_lens_*`` / ``max_length_*`` names are transformers' own flash-attention
        keywords: varlen flash attention and ``trainer.attention.VARLEN_SDPA`` both read them. ``use_cache=False``:
        training needs no key/value cache, and with one transformers would not treat the restarting
        ``position_ids`` as sample boundaries when it builds masks (the ``sdpa`` fallback needs that).
        """
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "cu_seq_lens_q": self.cu_seqlens,
            "cu_seq_lens_k": self.cu_seqlens,
            "max_length_q": self.max_seqlen,
            "max_length_k": self.max_seqlen,
            "use_cache": False,
        }


def pack(examples: Sequence[TokenizedExample], max_tokens: int | None = None) -> PackedBatch:
    """Pack ``examples`` (one micro-batch) into one padding-free row.

    ``max_tokens``, when given, bounds the packed length: a batch longer than that raises instead
    of allocating more than the caller planned for. Every example keeps all of its tokens (truncation
    is the data pipeline's job, before packing).
    """
    if not examples:
        raise ConfigurationError("cannot pack an empty micro-batch: it needs at least one example", field="examples")
    ids: list[int] = []
    positions: list[int] = []
    shifted: list[int] = []
    cu_seqlens = [0]
    for index, example in enumerate(examples):
        input_ids, labels = list(example.input_ids), list(example.labels)
        if not input_ids:
            raise ConfigurationError(
                "has no tokens; every packed example needs at least one", field=f"examples[{index}].input_ids"
            )
        if len(labels) != len(input_ids):
            raise ConfigurationError(
                f"has {len(labels)} entries but input_ids has {len(input_ids)}; they must be the same length",
                field=f"examples[{index}].labels",
            )
        ids.extend(input_ids)
        positions.extend(range(len(input_ids)))
        # Next-token targets within the sample; the sample's last token has none (HF pads with -100
        # in the same place when it shifts a padded row).
        shifted.extend(labels[1:])
        shifted.append(IGNORE_INDEX)
        cu_seqlens.append(cu_seqlens[-1] + len(input_ids))
    if max_tokens is not None and cu_seqlens[-1] > max_tokens:
        raise ConfigurationError(
            f"the micro-batch packs to {cu_seqlens[-1]} tokens, more than max_tokens={max_tokens}; "
            "lower the batch size or the maximum sequence length",
            field="max_tokens",
        )
    shift_labels = torch.tensor(shifted, dtype=torch.long)
    supervised = torch.nonzero(shift_labels != IGNORE_INDEX).flatten()
    lengths = [b - a for a, b in itertools.pairwise(cu_seqlens)]
    return PackedBatch(
        input_ids=torch.tensor(ids, dtype=torch.long).unsqueeze(0),
        position_ids=torch.tensor(positions, dtype=torch.long).unsqueeze(0),
        shift_labels=shift_labels.unsqueeze(0),
        supervised_positions=supervised,
        cu_seqlens=torch.tensor(cu_seqlens, dtype=torch.int32),
        max_seqlen=max(lengths),
        num_supervised=int(supervised.numel()),
    )


@dataclass(frozen=True)
class PaddedBatch:
    """A micro-batch of token sequences, right-padded to the longest one."""

    input_ids: torch.Tensor  # (batch, length)
    attention_mask: torch.Tensor  # (batch, length), 1 on real tokens
    labels: torch.Tensor  # (batch, length), IGNORE_INDEX where no loss is taken

    def to(self, device: torch.device) -> PaddedBatch:
        """The same batch with every tensor on ``device``."""
        return PaddedBatch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            attention_mask=self.attention_mask.to(device, non_blocking=True),
            labels=self.labels.to(device, non_blocking=True),
        )


def pad_batch(examples: Sequence[Example], pad_token_id: int) -> PaddedBatch:
    """Right-pad the examples to the longest one."""
    length = max(e.num_tokens for e in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        n = example.num_tokens
        input_ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(example.labels, dtype=torch.long)
        attention_mask[row, :n] = 1
    return PaddedBatch(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
