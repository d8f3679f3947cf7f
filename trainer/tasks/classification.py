"""The image classification task (modelType vision, a Dataset of classes): a transformers image
classifier trained on every weight with the cross-entropy against the (MixUp-softened) classes,
evaluated by loss, top-1 accuracy and, with more than 5 classes, top-5 accuracy.

Images are read and checked once (``trainer.data.images``); each batch decodes its images again
and prepares them (``trainer.data.augmentation``) in a few threads, each image with its own seeded
random numbers, so a batch is the same whichever thread prepares which image. A training batch's
seed is drawn from torch's generator, whose state every checkpoint keeps: a resumed run augments
the same images the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tensorone.api.resolved import ResolvedJob
from tensorone.errors import ConfigurationError
from trainer import classifier, distributed
from trainer.data.augmentation import draws_for, mixup_partner, pixels
from trainer.data.images import DECODE_THREADS, ImageData, ImageExample, load_image, read_images
from trainer.data.plan import eval_batches
from trainer.distributed import Topology
from trainer.tasks import TaskData

log = logging.getLogger("trainer")

TOP_K = 5  # top-5 accuracy is reported when there are more classes than this


@dataclass(frozen=True)
class ImageBatch:
    """A micro-batch: the images, their target distributions over the classes (one-hot, or two
    classes mixed by MixUp), and their classes (for accuracy)."""

    pixel_values: torch.Tensor  # [batch, 3, height, width], float32
    targets: torch.Tensor  # [batch, classes], float32, rows sum to 1
    labels: torch.Tensor  # [batch], int64

    def to(self, device: torch.device) -> ImageBatch:
        return ImageBatch(self.pixel_values.to(device), self.targets.to(device), self.labels.to(device))


class ClassificationTask:
    """Model, data and loss of an image classifier."""

    def __init__(self, job: ResolvedJob) -> None:
        self.job = job
        self.data: ImageData | None = None
        self.family = classifier.family_of(job)
        self.normalisation, self._notices = classifier.normalisation_for(job, self.family)
        self.forward_options: dict[str, Any] = {}
        self._objective: ClassificationLoss | None = None
        self._threads = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="images")

    def load_data(self) -> TaskData:
        data = read_images(self.job, num_classes=self.job.config.num_classes)
        self.data = data
        read = f"{data.layout}, {len(data.classes)} classes"
        return TaskData.counted(data.train, data.eval, data.bad_rows, read=read, unit="images")

    def classes(self) -> list[str]:
        if self.data is None:
            raise RuntimeError("ClassificationTask.load_data finds the classes: call it before load_model")
        return self.data.classes

    def load_model(self, device: torch.device) -> torch.nn.Module:
        if self.job.config.optimization.compile:
            raise ConfigurationError(
                "compiling applies to the decoder layers of llm jobs; vision jobs train uncompiled: set it to false",
                field="config.optimization.compile",
            )
        model, notices = classifier.load_classifier(self.job, self.classes(), self.normalisation, device)
        for notice in notices:
            log.info("%s", notice)
        self._notices.extend(notices)
        if self.family == "vit":
            configured = model.config.image_size
            size = tuple(configured) if isinstance(configured, (list, tuple)) else (configured, configured)
            if size != (self.normalisation.height, self.normalisation.width):
                # A base ViT trained at another size: its position embeddings are interpolated.
                self.forward_options = {"interpolate_pos_encoding": True}
        log.info(
            "inputs %dx%d, mean %s, std %s",
            self.normalisation.height,
            self.normalisation.width,
            self.normalisation.mean,
            self.normalisation.std,
        )
        result: torch.nn.Module = model
        return result

    def notices(self) -> list[str]:
        return list(self._notices)

    def objective(self, model: torch.nn.Module) -> torch.nn.Module:
        self._objective = ClassificationLoss(model, self.forward_options)
        return self._objective

    def eval_metrics(
        self, model: torch.nn.Module, examples: Sequence[ImageExample], topology: Topology
    ) -> dict[str, float]:
        """Top-1 (and, with more than five classes, top-5) accuracy over the evaluation images,
        every process's share counted."""
        objective = ClassificationLoss(model, self.forward_options)
        evaluation = ClassificationEvaluation(objective, num_classes=len(self.classes()))
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for indices in eval_batches(
                len(examples), self.job.config.training.batch_size, topology.rank, topology.world_size
            ):
                evaluation.add(self.prepare([examples[i] for i in indices], None).to(device))
        model.train(was_training)
        return evaluation.metrics(topology)

    def collate(self, examples: Sequence[ImageExample]) -> ImageBatch:
        """The micro-batch: augmented while the objective trains (the loop puts it in eval mode
        for evaluation), from a seed drawn from torch's generator."""
        training = self._objective is not None and self._objective.training
        return self.prepare(examples, int(torch.randint(0, 2**62, ())) if training else None)

    def prepare(self, examples: Sequence[ImageExample], seed: int | None) -> ImageBatch:
        """The examples as a batch: augmented with random numbers from ``seed`` (each image its
        own stream), or, without one, only resized and normalised."""
        if not examples:
            raise ValueError("a micro-batch needs at least one example")
        augmentation = self.job.config.augmentation if seed is not None else None
        draws = [draws_for(seed, position) if seed is not None else None for position in range(len(examples))]

        def prepare(position: int) -> np.ndarray:
            image = load_image(examples[position].path)
            return pixels(image, self.normalisation, augmentation, draws[position])

        images = np.stack(list(self._threads.map(prepare, range(len(examples)))))
        num_classes = len(self.classes())
        labels = np.asarray([example.label for example in examples], dtype=np.int64)
        targets = np.eye(num_classes, dtype=np.float32)[labels]
        if seed is not None:
            images, targets = _mixed(images, targets, augmentation, draws)
        return ImageBatch(torch.from_numpy(images), torch.from_numpy(targets), torch.from_numpy(labels))

    def save_weights(self, model: torch.nn.Module, directory: Path) -> None:
        model.save_pretrained(directory)  # type: ignore[operator]

    def load_weights(self, model: torch.nn.Module, directory: Path) -> None:
        state: dict[str, torch.Tensor] = {}
        for file in sorted(directory.glob("*.safetensors")):
            state.update(load_file(file))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigurationError(
                f"the checkpoint's weights do not fit this model (missing {list(missing)[:3]}, unexpected "
                f"{list(unexpected)[:3]})",
                field="resumeFrom",
            )

    def save_final(self, model: torch.nn.Module, directory: Path, *, merge: bool) -> list[Path]:
        classifier.save_classifier(model, self.normalisation, directory)
        return [directory]


def _mixed(
    images: np.ndarray, targets: np.ndarray, augmentation: Any, draws: Sequence[dict[str, float] | None]
) -> tuple[np.ndarray, np.ndarray]:
    """MixUp: each image drawn for it is blended with the next one of the micro-batch (as prepared,
    before any blending), pixels and targets alike."""
    mixed_images, mixed_targets = images.copy(), targets.copy()
    for position, draw in enumerate(draws):
        assert draw is not None
        partner = mixup_partner(augmentation, draw, len(draws), position)
        if partner is None:
            continue
        weight = np.float32(draw["mixup_weight"])
        mixed_images[position] = weight * images[position] + (1 - weight) * images[partner]
        mixed_targets[position] = weight * targets[position] + (1 - weight) * targets[partner]
    return mixed_images, mixed_targets


class ClassificationLoss(torch.nn.Module):
    """The cross-entropy against the batch's target distributions, summed over its images (in
    fp32); the loop divides by the images of the optimizer step over every process."""

    def __init__(self, model: torch.nn.Module, forward_options: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.forward_options = forward_options

    def logits(self, batch: ImageBatch) -> torch.Tensor:
        output = self.model(pixel_values=batch.pixel_values, **self.forward_options)
        logits: torch.Tensor = output.logits.float()
        return logits

    @staticmethod
    def loss(logits: torch.Tensor, batch: ImageBatch) -> torch.Tensor:
        return -(batch.targets * F.log_softmax(logits, dim=-1)).sum()

    def forward(self, batch: ImageBatch) -> torch.Tensor:
        return self.loss(self.logits(batch), batch)


class ClassificationEvaluation:
    """The evaluation loss, and the images whose class is the first (top-1) or among the first
    five (top-5) predictions."""

    def __init__(self, objective: ClassificationLoss, *, num_classes: int) -> None:
        self.objective = objective
        self.num_classes = num_classes
        self.counts = torch.zeros(3, dtype=torch.float64)  # top-1 right, top-5 right, images

    def add(self, batch: ImageBatch) -> torch.Tensor:
        logits = self.objective.logits(batch)
        ranked = logits.topk(min(TOP_K, self.num_classes), dim=-1).indices
        hits = ranked == batch.labels.unsqueeze(-1)
        self.counts = self.counts.to(logits.device)
        self.counts += torch.stack(
            [hits[:, 0].sum(), hits.any(dim=-1).sum(), torch.tensor(len(batch.labels), device=logits.device)]
        ).double()
        return ClassificationLoss.loss(logits, batch)

    def metrics(self, topology: Topology) -> dict[str, float]:
        totals = distributed.all_reduce_sum(self.counts, topology)
        top1, top5, images = totals.tolist()
        if images == 0:
            return {}
        metrics = {"accuracy": top1 / images}
        if self.num_classes > TOP_K:
            metrics["top5Accuracy"] = top5 / images
        return metrics
