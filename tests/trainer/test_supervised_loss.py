"""Supervised-only loss on packed batches against Hugging Face's padded computation."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from torch import nn
from transformers import DataCollatorForSeq2Seq, PreTrainedModel, PreTrainedTokenizerFast

from tensorone.errors import ConfigurationError
from tests.trainer.conftest import assert_gradients_close
from tests.trainer.test_attention import VOCAB, Example, random_examples, tiny_llama
from trainer.attention import enable_packed_attention
from trainer.data.batches import pack
from trainer.data.examples import IGNORE_INDEX
from trainer.supervised_loss import SupervisedCausalLM, causal_lm_loss

LENGTHS = [9, 23, 4, 16, 2]


def hf_collator() -> DataCollatorForSeq2Seq:
    """HF Trainer's usual dynamic padding for prompt/completion data (labels -100 on padding too).

    The tokenizer is a word-level one built in memory (token ``i`` is the word ``"i"``): the collator
    only needs its pad token and padding side.
    """
    vocab = {str(i): i for i in range(VOCAB)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="1")), pad_token="0")
    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")


def padded(examples: list[Example]) -> dict[str, torch.Tensor]:
    return hf_collator()([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])


def lora_pair() -> tuple[nn.Module, nn.Module]:
    """The same LoRA model twice: HF's padded reference (sdpa) and ours (packed attention)."""
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    torch.manual_seed(5)  # init_lora_weights=False draws random B too, so gradients reach every adapter matrix
    reference = get_peft_model(tiny_llama(), config)
    ours = get_peft_model(tiny_llama(), config)
    ours.load_state_dict(reference.state_dict())
    enable_packed_attention(ours)
    return reference, ours


def trainable_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_packed_supervised_loss_equals_the_padded_hf_loss_and_gradients() -> None:
    reference, ours = lora_pair()
    examples = random_examples(LENGTHS)

    expected = reference(**padded(examples)).loss
    expected.backward()
    loss_sum, count = causal_lm_loss(ours, pack(examples))
    (loss_sum / count).backward()

    assert count == sum(sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in examples)
    assert abs(loss_sum.item() / count - expected.item()) <= 1e-5 * abs(expected.item())
    expected_grads, got_grads = trainable_grads(reference), trainable_grads(ours)
    assert len(expected_grads) == 16
    assert_gradients_close(got_grads, expected_grads, rel=1e-5)


def test_chunked_projection_gives_the_same_loss_and_gradients() -> None:
    _, whole = lora_pair()
    _, chunked = lora_pair()
    batch = pack(random_examples(LENGTHS))

    whole_sum, _ = causal_lm_loss(whole, batch)
    chunked_sum, _ = causal_lm_loss(chunked, batch, chunk_tokens=3)
    whole_sum.backward()
    chunked_sum.backward()

    torch.testing.assert_close(chunked_sum, whole_sum)
    assert_gradients_close(trainable_grads(chunked), trainable_grads(whole), rel=1e-5)


def test_full_fine_tuning_gets_the_lm_head_and_embedding_gradients() -> None:
    """With every weight trained, the fused projection must produce dW for the head as autograd would."""
    reference, ours = tiny_llama(), tiny_llama()
    enable_packed_attention(ours)
    examples = random_examples(LENGTHS)

    reference(**padded(examples)).loss.backward()
    loss_sum, count = causal_lm_loss(ours, pack(examples))
    (loss_sum / count).backward()

    expected, got = trainable_grads(reference), trainable_grads(ours)
    assert len(expected) == len(list(reference.parameters()))
    assert_gradients_close(got, expected, rel=1e-5)


def test_a_lora_adapted_lm_head_takes_the_module_path_with_the_same_loss() -> None:
    config = LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False)
    torch.manual_seed(7)
    reference = get_peft_model(tiny_llama(), config)
    ours = get_peft_model(tiny_llama(), config)
    ours.load_state_dict(reference.state_dict())
    enable_packed_attention(ours)
    examples = random_examples(LENGTHS)

    expected = reference(**padded(examples)).loss
    loss_sum, count = causal_lm_loss(ours, pack(examples), chunk_tokens=5)

    assert abs(loss_sum.item() / count - expected.item()) <= 1e-5 * abs(expected.item())


def test_a_batch_without_supervised_tokens_gives_zero_and_back_propagates() -> None:
    _, ours = lora_pair()
    prompt_only = [Example(e.input_ids, [IGNORE_INDEX] * len(e.input_ids)) for e in random_examples([6, 3])]

    loss_sum, count = causal_lm_loss(ours, pack(prompt_only))
    loss_sum.backward()

    assert (loss_sum.item(), count) == (0.0, 0)
    assert all(float(g.abs().sum()) == 0.0 for g in trainable_grads(ours).values())


def test_bad_inputs_are_refused_naming_the_field() -> None:
    _, ours = lora_pair()
    batch = pack(random_examples([4]))
    with pytest.raises(ConfigurationError) as error:
        causal_lm_loss(ours, batch, chunk_tokens=0)
    assert error.value.field == "chunk_tokens"
    with pytest.raises(ConfigurationError) as error:
        causal_lm_loss(nn.Linear(2, 2), batch)
    assert error.value.field == "model"
    # The module form checks once, when it is built, not on every micro-batch.
    with pytest.raises(ConfigurationError) as error:
        SupervisedCausalLM(nn.Linear(2, 2))
    assert error.value.field == "model"
    with pytest.raises(ConfigurationError) as error:
        SupervisedCausalLM(ours, chunk_tokens=0)
    assert error.value.field == "chunk_tokens"


def hf_trainer_one_step(model: PreTrainedModel, micro_batches: list[list[Example]]) -> None:
    """One real optimizer step of transformers' Trainer with gradient accumulation over ``micro_batches``."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    rows = [{"input_ids": e.input_ids, "labels": e.labels} for batch in micro_batches for e in batch]
    args = TrainingArguments(
        output_dir="/tmp/unused-by-this-test",
        per_device_train_batch_size=len(micro_batches[0]),
        gradient_accumulation_steps=len(micro_batches),
        max_steps=1,
        learning_rate=1.0,
        optim="sgd",  # an SGD update is the gradient itself: the normaliser shows in the weights
        lr_scheduler_type="constant",
        train_sampling_strategy="sequential",
        max_grad_norm=0.0,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
    )
    Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), data_collator=hf_collator()).train()


def test_gradient_accumulation_normalises_like_the_hf_trainer() -> None:
    """Sum over the step's micro-batches divided by the step's supervised tokens, as Trainer does.

    The micro-batches hold very different numbers of supervised tokens, so averaging per micro-batch
    (the pre-4.46 behaviour) would give a visibly different update.
    """
    reference, ours = lora_pair()
    micro_batches = [random_examples([30, 28], seed=11), random_examples([3, 2], seed=12)]

    hf_trainer_one_step(reference, micro_batches)  # type: ignore[arg-type]

    optimizer = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=1.0)
    packed = [pack(batch) for batch in micro_batches]
    step_tokens = sum(b.num_supervised for b in packed)
    for batch in packed:
        loss_sum, _ = causal_lm_loss(ours, batch)
        (loss_sum / step_tokens).backward()
    optimizer.step()

    expected = dict(reference.named_parameters())
    for name, parameter in ours.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_per_micro_batch_averaging_would_be_detected() -> None:
    """Guards the test above: the pre-4.46 normaliser really changes the gradient for these micro-batches."""
    _, right = lora_pair()
    _, wrong = lora_pair()
    micro_batches = [pack(random_examples([30, 28], seed=11)), pack(random_examples([3, 2], seed=12))]
    step_tokens = sum(b.num_supervised for b in micro_batches)
    for batch in micro_batches:
        loss_sum, _ = causal_lm_loss(right, batch)
        (loss_sum / step_tokens).backward()
        loss_sum, count = causal_lm_loss(wrong, batch)
        (loss_sum / count / len(micro_batches)).backward()
    right_grads, wrong_grads = trainable_grads(right), trainable_grads(wrong)
    assert any(not torch.allclose(right_grads[n], wrong_grads[n], rtol=1e-3) for n in right_grads)


def _ddp_rank(rank: int, world_size: int, port: int) -> None:
    """One rank of the DDP test: its own micro-batch, the step's token count reduced over ranks."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        # Ranks hold very different numbers of supervised tokens: a per-rank mean would be visibly off.
        shards = [random_examples([30, 28], seed=11), random_examples([3, 2], seed=12)]
        reference, ours = lora_pair()
        step_tokens = torch.tensor(pack(shards[rank]).num_supervised)
        dist.all_reduce(step_tokens)
        ddp = DistributedDataParallel(SupervisedCausalLM(ours))
        loss_sum = ddp(pack(shards[rank]))
        (loss_sum * world_size / int(step_tokens)).backward()

        # The same step on one process: every token of every rank, one normaliser.
        total = sum((causal_lm_loss(reference, pack(shard))[0] for shard in shards), torch.zeros(()))
        (total / int(step_tokens)).backward()
        assert_gradients_close(trainable_grads(ours), trainable_grads(reference), rel=1e-5)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_through_the_module_wrapper_averages_over_all_ranks_tokens() -> None:
    import socket

    import torch.multiprocessing as torch_mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch_mp.spawn(_ddp_rank, args=(2, port), nprocs=2, join=True)
