"""The detection task: an RT-DETR detector from transformers trained on a COCO Dataset.

The model is built from ``config.architecture`` (``tensorone.api.trainable.VISION_ARCHITECTURES``,
randomly initialised) or loaded with ``from_pretrained`` from ``config.baseModel`` (a hub id or a
folder) and given a new classification head for the Dataset's categories. Images are augmented
(``trainer.data.box_augmentation``) while training, resized to ``config.inputSize`` and scaled to
[0, 1] (normalised too when the model's image processor says so). The loss is the model's own:
Hungarian matching, varifocal classification, L1 and GIoU box terms, denoising; as the model
averages it over the batch's images, the objective returns it times their number, and the loop
divides by the step's images. mAP@[.5:.95] and mAP@.5 are measured on the evaluation split at
every evaluation (``trainer.mean_average_precision``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from tensorone.api.resolved import ResolvedJob
from tensorone.api.trainable import VISION_ARCHITECTURES, VisionTask
from tensorone.errors import ConfigurationError
from trainer import distributed
from trainer.data.box_augmentation import Sample, augment, is_active, refuse_unsupported, resize
from trainer.data.coco import DetectionExample, read_coco
from trainer.data.plan import eval_batches
from trainer.distributed import Topology
from trainer.mean_average_precision import MAX_DETECTIONS, Detection, ImageTruth, mean_average_precision
from trainer.model import hub_options, load_weights
from trainer.tasks import TaskData

log = logging.getLogger("trainer")

# The transformers model families the task trains: RT-DETR and RT-DETRv2 share the outputs (sigmoid
# class scores per query, normalised centre boxes) and the loss.
DETECTOR_FAMILIES = ("rt_detr", "rt_detr_v2")
DEFAULT_INPUT_SIZE = (640, 640)
STRIDE = 32  # the coarsest feature map's stride: the input's height and width must be multiples of it


@dataclass
class DetectionBatch:
    """Images scaled and resized to the input size, and their targets as the model takes them:
    class ids and boxes as normalised (centre x, centre y, width, height)."""

    pixel_values: torch.Tensor
    labels: list[dict[str, torch.Tensor]]

    def to(self, device: torch.device) -> DetectionBatch:
        return DetectionBatch(
            self.pixel_values.to(device), [{k: v.to(device) for k, v in t.items()} for t in self.labels]
        )


# The predictions the detector's loss matches against the boxes (every decoder layer's and the
# encoder's proposals), by their names in the RT-DETR model's output.
PREDICTIONS = ("intermediate_logits", "intermediate_reference_points", "enc_topk_logits", "enc_topk_bboxes")


class NonFinitePredictions(Exception):
    """The detector predicted boxes or scores that are not finite numbers."""


class DetectionObjective(torch.nn.Module):
    """The detector's loss summed over the batch's images (the model gives their mean).

    A diverging run's predictions overflow to infinities and NaN, and the model's loss does not
    return a non-finite loss for them: its matcher rejects the boxes with a ValueError (they are
    not corners). So the predictions are checked before the loss, and when they are not finite the
    loss is NaN, which the loop reports as a divergence (exit code 4, the last good checkpoint
    kept) rather than an unexpected error that would be retried.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: DetectionBatch) -> torch.Tensor:
        check = cast(Any, self.model).model.register_forward_hook(_refuse_non_finite)
        try:
            loss: torch.Tensor = self.model(pixel_values=batch.pixel_values, labels=batch.labels).loss
        except NonFinitePredictions:
            # Tied to every trained weight, so that a backward (which DistributedDataParallel
            # needs on every process) reaches each of them; the loop drops the update.
            trained = [p.sum() for p in self.model.parameters() if p.requires_grad]
            return torch.stack(trained).sum() * float("nan")
        finally:
            check.remove()
        return loss.float() * len(batch.labels)


def _refuse_non_finite(module: torch.nn.Module, inputs: Any, output: Any) -> None:
    """A forward hook on the detector's body: raise NonFinitePredictions when what the loss takes
    is not finite (one device synchronisation, as the matcher makes anyway)."""
    predictions = [getattr(output, name, None) for name in PREDICTIONS]
    finite = [torch.isfinite(p).all() for p in predictions if isinstance(p, torch.Tensor)]
    if finite and not bool(torch.stack(finite).all()):
        raise NonFinitePredictions


class DetectionTask:
    """Model, data, augmentation, loss and mAP of an object detector."""

    def __init__(self, job: ResolvedJob) -> None:
        self.job = job
        config = job.config
        refuse_unsupported(config.augmentation)
        self.input_size = _input_size(config.input_size)
        self.class_names: list[str] = []
        self.train_examples: list[DetectionExample] = []
        self.mean: np.ndarray | None = None  # normalisation of the model's image processor, if any
        self.std: np.ndarray | None = None
        self._objective: DetectionObjective | None = None

    def load_data(self) -> TaskData:
        training = self.job.config.training
        data = read_coco(
            self.job.dataset,
            mount_path=Path(self.job.dataset_mount_path),
            num_classes=self.job.config.num_classes,
            max_bad_rows=training.max_bad_rows,
            eval_split=training.eval_split,
            seed=training.seed,
        )
        self.class_names = data.class_names
        self.train_examples = data.train
        boxes = sum(len(e.boxes) for e in data.train)
        return TaskData(
            train=data.train,
            eval=data.eval,
            bad_rows=data.bad_entries,
            total_rows=data.entries,
            first_bad_rows=data.first_bad,
            description=f"COCO {data.annotations_file.name}, {len(data.class_names)} classes, {data.entries} entries "
            f"({data.bad_entries} bad), {len(data.train)} images ({boxes} boxes) for training, "
            f"{len(data.eval)} for evaluation",
        )

    def load_model(self, device: torch.device) -> torch.nn.Module:
        if not self.class_names:
            raise RuntimeError("DetectionTask.load_data gives the classes: call it before load_model")
        model = load_detector(self.job, self.class_names)
        self._read_normalisation()
        log.info(
            "detector %s (%s), %d classes, input %dx%d, %.1fM parameters",
            self.job.config.architecture or self.job.config.base_model,
            model.config.model_type,
            len(self.class_names),
            *self.input_size,
            sum(p.numel() for p in model.parameters()) / 1e6,
        )
        model.to(device)
        model.train()
        return model

    def _read_normalisation(self) -> None:
        """The mean and standard deviation of the base model's image processor, when it normalises."""
        base_model = self.job.config.base_model
        if base_model is None:
            return
        from transformers import AutoImageProcessor

        try:
            processor = AutoImageProcessor.from_pretrained(base_model, **hub_options(self.job))
        except (OSError, ValueError):
            return  # a detector saved without a processor: scaled to [0, 1], as RT-DETR's own processor does
        if getattr(processor, "do_normalize", False):
            self.mean = np.asarray(processor.image_mean, dtype=np.float32)
            self.std = np.asarray(processor.image_std, dtype=np.float32)

    def notices(self) -> list[str]:
        return []

    def objective(self, model: torch.nn.Module) -> torch.nn.Module:
        self._objective = DetectionObjective(model)
        return self._objective

    def collate(self, examples: Sequence[DetectionExample]) -> DetectionBatch:
        """The micro-batch's images and targets; augmented while the objective trains (the loop
        puts it in eval mode for evaluation). The augmentations draw from a generator seeded by
        torch's, whose state every checkpoint keeps: a resumed run draws the same ones."""
        augmentation = self.job.config.augmentation
        training = self._objective is not None and self._objective.training and is_active(augmentation)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())) if training else 0)
        samples = []
        for example in examples:
            sample = _sample(example)
            if training:
                assert augmentation is not None

                def partner() -> Sample:
                    return _sample(self.train_examples[int(rng.integers(len(self.train_examples)))])

                sample = augment(sample, augmentation, rng, partner)
            samples.append(sample)
        return self._batch(samples)

    def _batch(self, samples: Sequence[Sample]) -> DetectionBatch:
        height, width = self.input_size
        images, targets = [], []
        for sample in samples:
            sized = resize(sample, width, height)
            pixels = sized.image.astype(np.float32) / 255.0
            if self.mean is not None and self.std is not None:
                pixels = (pixels - self.mean) / self.std
            images.append(pixels)
            boxes = sized.boxes.reshape(-1, 4)
            centres = np.stack(
                [
                    (boxes[:, 0] + boxes[:, 2] / 2) / width,
                    (boxes[:, 1] + boxes[:, 3] / 2) / height,
                    boxes[:, 2] / width,
                    boxes[:, 3] / height,
                ],
                axis=1,
            )
            targets.append(
                {
                    "class_labels": torch.as_tensor(sized.labels, dtype=torch.long),
                    "boxes": torch.as_tensor(centres, dtype=torch.float32).reshape(-1, 4),
                }
            )
        # Channels-last memory (batch, height, width, channel; seen as batch, channel, height, width): the
        # layout the CPU's convolution kernels are fastest on, a third faster than contiguous at 256 x 256
        # (bench/vision_detection.py). The values are the same; the sums are made in another order.
        return DetectionBatch(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), targets)

    def eval_metrics(
        self, model: torch.nn.Module, examples: Sequence[DetectionExample], topology: Topology
    ) -> dict[str, float]:
        """mAP and mAP50 over the evaluation images: each process predicts its share, rank 0's
        pycocotools scores them all, and every process gets the figures."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        detections: list[Detection] = []
        with torch.no_grad():
            for indices in eval_batches(
                len(examples), self.job.config.training.batch_size, topology.rank, topology.world_size
            ):
                batch = self._batch([_sample(examples[i]) for i in indices]).to(device)
                outputs = model(pixel_values=batch.pixel_values)
                detections.extend(_detections(outputs, [examples[i] for i in indices], indices))
        model.train(was_training)
        gathered = distributed.gather_to_main(detections, topology)
        metrics: dict[str, float] | None = None
        if topology.is_main:
            assert gathered is not None
            truths = [ImageTruth(e.width, e.height, e.boxes, e.labels) for e in examples]
            metrics = mean_average_precision(truths, [d for part in gathered for d in part], len(self.class_names))
        return distributed.broadcast(metrics, topology) or {}

    def save_weights(self, model: torch.nn.Module, directory: Path) -> None:
        """The state dict as the model holds it (save_pretrained renames RT-DETR's encoder keys on
        the way out, which a plain load_state_dict would not undo), with the config beside it."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / "model.safetensors")
        cast(Any, model).config.save_pretrained(directory)

    def load_weights(self, model: torch.nn.Module, directory: Path) -> None:
        load_weights(model, directory, None)

    def save_final(self, model: torch.nn.Module, directory: Path, *, merge: bool) -> list[Path]:
        """The detector and an image processor for its input size: ``AutoModelForObjectDetection``
        and ``AutoImageProcessor.from_pretrained(directory)`` run it on new images."""
        from transformers import RTDetrImageProcessorPil

        model.save_pretrained(directory)  # type: ignore[operator]
        height, width = self.input_size
        processor = RTDetrImageProcessorPil(
            size={"height": height, "width": width},
            do_normalize=self.mean is not None,
            image_mean=None if self.mean is None else self.mean.tolist(),
            image_std=None if self.std is None else self.std.tolist(),
        )
        processor.save_pretrained(directory)
        return [directory]


def _sample(example: DetectionExample) -> Sample:
    return Sample(
        example.read_image(),
        np.asarray(example.boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(example.labels, dtype=np.int64),
    )


def _detections(outputs: Any, examples: Sequence[DetectionExample], indices: Sequence[int]) -> list[Detection]:
    """The top-scoring (query, class) pairs of each image as boxes in the image's own pixels."""
    scores = outputs.logits.float().sigmoid()
    boxes = outputs.pred_boxes.float()
    num_classes = scores.shape[-1]
    found: list[Detection] = []
    for row, (example, index) in enumerate(zip(examples, indices, strict=True)):
        top, flat = scores[row].flatten().topk(min(MAX_DETECTIONS, scores[row].numel()))
        scale = torch.tensor([example.width, example.height] * 2, dtype=torch.float32, device=boxes.device)
        for score, position in zip(top.tolist(), flat.tolist(), strict=True):
            query, label = divmod(position, num_classes)
            cx, cy, w, h = (boxes[row, query] * scale).tolist()
            found.append(Detection(index, label, (cx - w / 2, cy - h / 2, w, h), score))
    return found


def _input_size(size: Sequence[int] | None) -> tuple[int, int]:
    """(height, width) from config.inputSize, each a multiple of STRIDE."""
    height, width = size if size is not None else DEFAULT_INPUT_SIZE
    if height % STRIDE or width % STRIDE:
        raise ConfigurationError(
            f"inputSize [{height}, {width}]: RT-DETR needs a height and width that are multiples of {STRIDE}, "
            f"such as [{max(STRIDE, round(height / STRIDE) * STRIDE)}, {max(STRIDE, round(width / STRIDE) * STRIDE)}]",
            field="config.inputSize",
        )
    return int(height), int(width)


def load_detector(job: ResolvedJob, class_names: Sequence[str]) -> Any:
    """The detector of ``config.baseModel`` (pretrained, re-headed for the classes) or of
    ``config.architecture`` (randomly initialised)."""
    from transformers import AutoModelForObjectDetection

    config = job.config
    labels = {
        "num_labels": len(class_names),
        "id2label": dict(enumerate(class_names)),
        "label2id": {name: i for i, name in enumerate(class_names)},
    }
    built = VISION_ARCHITECTURES.get(config.architecture) if config.architecture else None
    if config.architecture is not None and (built is None or built.task != VisionTask.detection):
        detection = [name for name, a in VISION_ARCHITECTURES.items() if a.task == VisionTask.detection]
        raise ConfigurationError(
            f"architecture {config.architecture} is not a detector this trainer builds; allowed: {', '.join(detection)}",
            field="config.architecture",
        )
    if config.base_model is None:
        assert config.architecture is not None and built is not None  # the CRD requires one of the two
        return AutoModelForObjectDetection.from_config(architecture_config(config.architecture, **labels))
    try:
        model = AutoModelForObjectDetection.from_pretrained(
            config.base_model, ignore_mismatched_sizes=True, dtype=torch.float32, **labels, **hub_options(job)
        )
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot load {config.base_model}: {error}", field="config.baseModel") from error
    family = model.config.model_type
    if family not in DETECTOR_FAMILIES:
        raise ConfigurationError(
            f"{config.base_model} is a {family} model; this trainer trains detectors of the families "
            f"{', '.join(DETECTOR_FAMILIES)}",
            field="config.baseModel",
        )
    if built is not None and built.family != family:
        raise ConfigurationError(
            f"architecture {config.architecture} is {built.family}, but {config.base_model} is {family}: "
            "leave architecture out to train the base model as it is",
            field="config.architecture",
        )
    return model


def architecture_config(name: str, **labels: Any) -> Any:
    """The transformers config an architecture name builds (the sizes of the published checkpoints)."""
    from transformers import RTDetrConfig, RTDetrResNetConfig, RTDetrV2Config

    family = VISION_ARCHITECTURES[name].family
    config_class = RTDetrV2Config if family == "rt_detr_v2" else RTDetrConfig
    if name.endswith("-r18"):
        backbone = cast(Any, RTDetrResNetConfig)(
            depths=[2, 2, 2, 2],
            hidden_sizes=[64, 128, 256, 512],
            layer_type="basic",
            out_features=["stage2", "stage3", "stage4"],
        )
        return config_class(
            backbone_config=backbone,
            encoder_in_channels=[128, 256, 512],
            hidden_expansion=0.5,
            decoder_layers=3,
            **labels,
        )
    return config_class(**labels)
