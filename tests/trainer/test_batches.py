"""Packing: positions restart and labels shift within each sample; bad examples refused by field."""

from __future__ import annotations

import pytest
import torch

from tensorone.errors import ConfigurationError
from tests.trainer.test_attention import Example, random_examples
from trainer.data.batches import pack


def test_pack_restarts_positions_and_shifts_labels_within_each_sample() -> None:
    batch = pack([Example([5, 6, 7], [-100, 6, 7]), Example([8, 9], [8, 9])])

    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    # Token 7 ends sample 0: it predicts nothing, in particular not token 8 of sample 1.
    assert batch.shift_labels.tolist() == [[6, 7, -100, 9, -100]]
    assert batch.supervised_positions.tolist() == [0, 1, 3]
    assert batch.cu_seqlens.tolist() == [0, 3, 5]
    assert batch.cu_seqlens.dtype == torch.int32
    assert (batch.max_seqlen, batch.num_supervised, batch.num_tokens, batch.num_samples) == (3, 3, 5, 2)


@pytest.mark.parametrize(
    ("examples", "field"),
    [
        ([], "examples"),
        ([Example([1, 2], [1, 2]), Example([], [])], "examples[1].input_ids"),
        ([Example([1, 2, 3], [1, 2])], "examples[0].labels"),
    ],
)
def test_pack_rejects_bad_examples_naming_the_field(examples: list[Example], field: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        pack(examples)
    assert error.value.field == field


def test_pack_refuses_more_tokens_than_the_budget() -> None:
    examples = random_examples([10, 7])
    assert pack(examples, max_tokens=17).num_tokens == 17
    with pytest.raises(ConfigurationError, match="17 tokens, more than max_tokens=16"):
        pack(examples, max_tokens=16)
