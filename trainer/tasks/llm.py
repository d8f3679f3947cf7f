"""The llm task: a causal language model fine-tuned on text, prompt/completion or chat data.

Batches are packed without padding (``trainer.data.batches``: one row per micro-batch, with
``trainer.attention`` keeping attention inside each example) and the loss projects only supervised
tokens onto the vocabulary (``trainer.supervised_loss``): the same loss as the padded computation,
at a fraction of the work (docs/performance.md). A model the supervised-only loss cannot compute exactly (one that scales its
logits, say) trains on padded batches with its own forward instead; the log says which.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tensorone.api.resolved import ResolvedJob
from trainer import model as causal_lm
from trainer.attention import enable_packed_attention
from trainer.data.batches import PackedBatch, PaddedBatch, pack, pad_batch
from trainer.data.examples import IGNORE_INDEX, Example, build_examples
from trainer.data.records import read_rows
from trainer.distributed import Topology
from trainer.precision import autocast_dtype
from trainer.supervised_loss import SupervisedCausalLM, unsupported_reason
from trainer.tasks import TaskData

log = logging.getLogger("trainer")


class LlmTask:
    """Model, data and loss of a causal language model."""

    def __init__(self, job: ResolvedJob) -> None:
        self.job = job
        self.tokenizer: Any = None
        self.packed: bool | None = None  # decided by load_model, from what the model is
        self._notices: list[str] = []

    def _tokenizer(self) -> Any:
        if self.tokenizer is None:
            self.tokenizer = causal_lm.load_tokenizer(self.job)
        return self.tokenizer

    def load_data(self) -> TaskData:
        training = self.job.config.training
        rows = read_rows(self.job.dataset, mount_path=Path(self.job.dataset_mount_path), cache_dir=self.job.cache_dir)
        data = build_examples(
            rows,
            self._tokenizer(),
            mapping=self.job.dataset.columns,
            max_seq_length=training.max_seq_length,
            max_bad_rows=training.max_bad_rows,
            eval_split=training.eval_split,
            seed=training.seed,
        )
        return TaskData.counted(data.train, data.eval, data.bad_rows, read=f"{data.columns.layout} layout")

    def load_model(self, device: torch.device) -> torch.nn.Module:
        model = causal_lm.load_model(self.job, device)
        unsupported = unsupported_reason(model)
        self.packed = unsupported is None
        if unsupported is None:
            attention = enable_packed_attention(model, autocast_dtype(self.job.config.optimization.mixed_precision))
            log.info("packed batches without padding (%s), loss on supervised tokens only", attention.describe())
            if attention.fallback is not None:
                self._notices.append(attention.describe())
        else:
            log.info("padded batches and the model's own logits: %s", unsupported.message)
        if self.job.config.optimization.compile:
            causal_lm.compile_layers(model)
        return model

    def notices(self) -> list[str]:
        return list(self._notices)

    def objective(self, model: torch.nn.Module) -> torch.nn.Module:
        return SupervisedCausalLM(model) if self._packed() else PaddedCausalLM(model)

    def eval_metrics(self, model: torch.nn.Module, examples: Sequence[Example], topology: Topology) -> dict[str, float]:
        return {}  # the evaluation loss is the measure

    def collate(self, examples: Sequence[Example]) -> PackedBatch | PaddedBatch:
        if self._packed():
            return pack(examples)
        return pad_batch(examples, self._tokenizer().pad_token_id)

    def _packed(self) -> bool:
        if self.packed is None:
            raise RuntimeError("LlmTask.load_model decides the batch layout: call it before collate or objective")
        return self.packed

    def save_weights(self, model: torch.nn.Module, directory: Path) -> None:
        causal_lm.save_weights(model, directory)

    def load_weights(self, model: torch.nn.Module, directory: Path) -> None:
        causal_lm.load_weights(model, directory, self.job.config.strategy)

    def save_final(self, model: torch.nn.Module, directory: Path, *, merge: bool) -> list[Path]:
        return causal_lm.save_final(model, self._tokenizer(), directory, self.job.config.strategy, merge=merge)


class PaddedCausalLM(torch.nn.Module):
    """The loss through the model's own forward on a padded batch: for models the supervised-only
    loss does not support. Labels are not passed to the model: the loss is summed here (in fp32) so
    that the loop can divide by the supervised tokens of the whole optimizer step, over every process.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: PaddedBatch) -> torch.Tensor:
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        shifted = logits[:, :-1, :].float()
        targets = batch.labels[:, 1:]
        return F.cross_entropy(
            shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
