"""Examples of a micro-batch stacked into tensors.

Padding to the longest example, on the right, with an attention mask; labels are IGNORE_INDEX on
padding. This is the one place that decides the tensor layout of a batch, so a padding-free
packing collator (all examples of a micro-batch in one row, with per-example positions) can take
its place without the loop changing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.data.examples import IGNORE_INDEX, Example


@dataclass(frozen=True)
class TextBatch:
    """A micro-batch of token sequences."""

    input_ids: torch.Tensor  # (batch, length)
    attention_mask: torch.Tensor  # (batch, length), 1 on real tokens
    labels: torch.Tensor  # (batch, length), IGNORE_INDEX where no loss is taken

    def to(self, device: torch.device) -> TextBatch:
        return TextBatch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            attention_mask=self.attention_mask.to(device, non_blocking=True),
            labels=self.labels.to(device, non_blocking=True),
        )


def pad_batch(examples: Sequence[Example], pad_token_id: int) -> TextBatch:
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
    return TextBatch(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
