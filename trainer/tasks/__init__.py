"""The task seam: what differs between an LLM, a vision and a multimodal job.

A task supplies the model, the examples, how examples become a batch, the loss, and how the
trained weights are saved. The loop, checkpoints, reporting, signals and distributed set-up are
the same for every task. ``tensorone.api.trainable`` lists the model types with a task; the
operator and ``trainer.capabilities`` refuse the others by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from tensorone.api.resolved import ResolvedJob
from tensorone.api.trainable import TRAINED_MODEL_TYPES, TRAINED_VISION_TASKS, VisionTask, vision_task_of
from tensorone.api.v1alpha1.dataset import DatasetFormat
from tensorone.api.v1alpha1.trainingjob import ModelType
from tensorone.errors import ConfigurationError, NotImplementedByTrainer
from trainer.data.examples import BadRows
from trainer.data.plan import Example
from trainer.distributed import Topology


class Batch(Protocol):
    def to(self, device: torch.device) -> Any: ...


@dataclass(frozen=True)
class TaskData:
    """The examples of a run, after reading and bad-row accounting."""

    train: Sequence[Example]
    eval: Sequence[Example]
    bad_rows: int
    total_rows: int
    first_bad_rows: list[str]  # where and why, for the first few
    description: str  # one line for the log, such as "prompt-completion, 58 rows"

    @classmethod
    def counted(
        cls, train: Sequence[Example], eval: Sequence[Example], bad_rows: BadRows, *, read: str, unit: str = "rows"
    ) -> TaskData:
        """The examples with their bad-row accounting; ``read`` opens the log line (the layout)."""
        return cls(
            train=train,
            eval=eval,
            bad_rows=bad_rows.count,
            total_rows=bad_rows.total,
            first_bad_rows=bad_rows.first,
            description=f"{read}, {bad_rows.total} {unit} ({bad_rows.count} bad), {len(train)} for training, "
            f"{len(eval)} for evaluation",
        )


class Task(Protocol):
    """What a model type contributes to the training loop."""

    def load_data(self) -> TaskData:
        """Read and prepare the Dataset (called once per process)."""
        ...

    def load_model(self, device: torch.device) -> torch.nn.Module:
        """The model to train, on the device, in training mode."""
        ...

    def notices(self) -> list[str]:
        """What this run does differently from the usual path, for the user to know (an attention
        implementation the model needed instead of the packed kernel, for instance); the report's
        message carries them while the run goes on. Empty until load_model."""
        ...

    def objective(self, model: torch.nn.Module) -> torch.nn.Module:
        """A module whose ``forward(batch)`` is the loss summed over the batch's targets.

        It holds ``model`` (no parameter is copied), so it is what DistributedDataParallel wraps:
        DDP synchronises the gradients of a forward that goes through the wrapper. The loop divides
        the sum by the optimizer step's targets over every process.
        """
        ...

    def eval_metrics(self, model: torch.nn.Module, examples: Sequence[Any], topology: Topology) -> dict[str, float]:
        """The task's own measures on the evaluation examples (mAP for detection), by name, the same
        on every process; empty when the evaluation loss says it all."""
        ...

    def collate(self, examples: Sequence[Any]) -> Batch:
        """Examples of one micro-batch as tensors, in the layout the objective takes."""
        ...

    def save_weights(self, model: torch.nn.Module, directory: Path) -> None:
        """The trained weights, loadable with from_pretrained."""
        ...

    def load_weights(self, model: torch.nn.Module, directory: Path) -> None:
        """Weights written by save_weights, back into the same model, exactly."""
        ...

    def save_final(self, model: torch.nn.Module, directory: Path, *, merge: bool) -> list[Path]:
        """The final artifacts; returns the folders written."""
        ...


def task_for(job: ResolvedJob) -> Task:
    """The task of the job's modelType."""
    if job.model_type == ModelType.llm:
        from trainer.tasks.llm import LlmTask

        return LlmTask(job)
    if job.model_type == ModelType.vision:
        return _vision_task(job)
    if job.model_type == ModelType.multimodal:
        from trainer.tasks.multimodal import MultimodalTask

        return MultimodalTask(job)
    raise ConfigurationError(
        f"no trainer task for modelType {job.model_type}; allowed: {', '.join(TRAINED_MODEL_TYPES)}", field="modelType"
    )


def _vision_task(job: ResolvedJob) -> Task:
    """The vision task its Dataset's format asks for (coco: detection, else classification)."""
    task = vision_task_of(DatasetFormat(job.dataset.format))
    if task == VisionTask.detection:
        from trainer.tasks.detection import DetectionTask

        return DetectionTask(job)
    if task == VisionTask.classification:
        from trainer.tasks.classification import ClassificationTask

        return ClassificationTask(job)
    raise NotImplementedByTrainer(
        f"a vision job on a {job.dataset.format} Dataset is {task}, which this trainer does not implement; "
        f"it trains: {', '.join(TRAINED_VISION_TASKS)} (Dataset format coco)",
        field="dataset.format",
    )
