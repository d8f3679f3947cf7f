"""The multimodal task: a vision-language model fine-tuned on chat conversations with images.

The model is a transformers image-text-to-text model (``AutoModelForImageTextToText``: LLaVA,
Qwen2-VL, SmolVLM/Idefics3, PaliGemma, ... ; the tests train a tiny LLaVA) with its own processor
(``AutoProcessor``) and chat template. Strategies are the llm task's (``trainer.model``): LoRA on
the frozen model, QLoRA on a GPU, or full training. Data: ``trainer.data.chat_images``.

The loss runs the model's multimodal body (``model.model``: the vision tower, the projector and the
language model, which puts the image features in place of the image tokens) and projects onto the
vocabulary only the positions whose next token is learned, the assistant turns; the sum is the
cross-entropy the model's own forward would give over those tokens.

Images are processed by the model's image processor with the Pillow backend (``backend="pil"``):
the same pixels on every machine, with or without torchvision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tensorone.api.resolved import ResolvedJob
from tensorone.errors import ConfigurationError
from trainer import model as causal_lm
from trainer.attention import base_transformers_model
from trainer.data.chat_images import ChatImageBatch, ChatImageExample, build_chat_image_examples, collate_chat_images
from trainer.data.records import read_rows
from trainer.distributed import Topology
from trainer.supervised_loss import unsupported_reason
from trainer.tasks import TaskData

log = logging.getLogger("trainer")

# The image processors' backend: Pillow and numpy, which need no torchvision and give the same
# pixels everywhere (the torchvision backend differs in the last bits of a resize).
IMAGE_BACKEND = "pil"


class MultimodalTask:
    """Model, data and loss of a vision-language model."""

    def __init__(self, job: ResolvedJob) -> None:
        self.job = job
        self.processor: Any = None

    def _processor(self) -> Any:
        if self.processor is None:
            self.processor = load_processor(self.job)
        return self.processor

    def load_data(self) -> TaskData:
        training = self.job.config.training
        mount = Path(self.job.dataset_mount_path)
        rows = read_rows(self.job.dataset, mount_path=mount, cache_dir=self.job.cache_dir)
        data = build_chat_image_examples(
            rows,
            self._processor(),
            mapping=self.job.dataset.columns,
            claim=mount if self.job.dataset.source.pvc is not None else None,
            max_seq_length=training.max_seq_length,
            max_bad_rows=training.max_bad_rows,
            eval_split=training.eval_split,
            seed=training.seed,
        )
        return TaskData.counted(data.train, data.eval, data.bad_rows, read=f"chat with {data.images} images")

    def load_model(self, device: torch.device) -> torch.nn.Module:
        from transformers import AutoModelForImageTextToText

        model = causal_lm.load_model(self.job, device, auto_class=AutoModelForImageTextToText)
        check_supported(model)
        if self.job.config.optimization.compile:
            causal_lm.compile_layers(model)
        log.info("padded batches with their images, loss on the assistant turns only")
        return model

    def notices(self) -> list[str]:
        return []

    def objective(self, model: torch.nn.Module) -> torch.nn.Module:
        return VisionLanguageLoss(model)

    def eval_metrics(
        self, model: torch.nn.Module, examples: Sequence[ChatImageExample], topology: Topology
    ) -> dict[str, float]:
        return {}  # the evaluation loss on the assistant turns is the measure

    def collate(self, examples: Sequence[ChatImageExample]) -> ChatImageBatch:
        processor = self._processor()
        return collate_chat_images(examples, processor, processor.tokenizer.pad_token_id)

    def save_weights(self, model: torch.nn.Module, directory: Path) -> None:
        causal_lm.save_weights(model, directory)

    def load_weights(self, model: torch.nn.Module, directory: Path) -> None:
        causal_lm.load_weights(model, directory, self.job.config.strategy)

    def save_final(self, model: torch.nn.Module, directory: Path, *, merge: bool) -> list[Path]:
        # The processor (tokenizer, image processor, chat template) goes beside the weights.
        return causal_lm.save_final(model, self._processor(), directory, self.job.config.strategy, merge=merge)


def load_processor(job: ResolvedJob) -> Any:
    """The base model's processor: a tokenizer with a chat template and an image processor."""
    from transformers import AutoProcessor

    base_model = causal_lm.base_model_of(job)
    try:
        processor = AutoProcessor.from_pretrained(base_model, backend=IMAGE_BACKEND, **causal_lm.hub_options(job))
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"cannot load the processor of {base_model}: {error}", field="config.baseModel"
        ) from error
    if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        raise ConfigurationError(
            f"{base_model} has no processor with an image processor and a tokenizer ({type(processor).__name__}); "
            "modelType multimodal trains vision-language models (image-text-to-text); use modelType llm for a "
            "text model",
            field="config.baseModel",
        )
    if not getattr(processor, "chat_template", None):
        raise ConfigurationError(
            f"the processor of {base_model} has no chat template, which chat messages need; use a chat "
            "(instruction-tuned) vision-language model",
            field="config.baseModel",
        )
    if not processor.tokenizer.is_fast:
        raise ConfigurationError(
            "chat messages need a fast tokenizer (offsets locate the assistant turns)", field="config.baseModel"
        )
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return processor


def check_supported(model: torch.nn.Module) -> None:
    """Refuse a model whose loss :class:`VisionLanguageLoss` cannot compute as its own forward would."""
    unsupported = unsupported_reason(model)
    if unsupported is not None:
        raise ConfigurationError(unsupported.message, field=unsupported.field)
    base = base_transformers_model(model)
    if not isinstance(getattr(base, "model", None), torch.nn.Module):
        raise ConfigurationError(
            f"{type(base).__name__} has no multimodal body (model.model) to run before its LM head",
            field="config.baseModel",
        )


class VisionLanguageLoss(torch.nn.Module):
    """The summed cross-entropy over a batch's learned tokens: what DistributedDataParallel wraps.

    It holds ``model`` (nothing is copied): the body runs on the tokens and the images, and only
    the hidden states of learned positions go through the LM head, in fp32 for the loss. The loop
    divides the sum by the learned tokens of the whole optimizer step, over every process.
    """

    # A batch without images leaves the vision tower out of the graph, and a model may never use
    # some of it (LLaVA-1.5 takes the features of the next-to-last layer): DistributedDataParallel
    # must look for unused parameters (trainer.recipe.share_between_processes).
    leaves_parameters_unused = True

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: ChatImageBatch) -> torch.Tensor:
        base = base_transformers_model(self.model)
        hidden = base.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False, **batch.image_inputs
        ).last_hidden_state
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.supervised_positions)
        logits = base.get_output_embeddings()(rows).float()
        softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        return F.cross_entropy(logits, batch.targets, reduction="sum")
