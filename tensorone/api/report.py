"""The contract between a running trainer and the operator: the progress report.

The rank-0 trainer (ours, or a custom image using ``tensorone.reporting.client``) serves the latest
``ProgressReport`` as JSON at ``GET /progress`` on the report port; the operator polls it and
mirrors it into the TrainingJob's status. When the pod ends, a compact form of the same report is
written to the pod's termination-message path (under 4 KB), so the last state (the checkpoint saved
on SIGTERM, the final loss) reaches the status even after the pod is gone.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from tensorone.api.v1alpha1.base import ApiModel

REPORT_SCHEMA_VERSION = 1
TERMINATION_MESSAGE_LIMIT = 4096
# One port on rank 0 serves /progress (JSON, the operator polls it) and /metrics (Prometheus); the
# operator gives the pods the job's port in REPORT_PORT_ENV.
DEFAULT_REPORT_PORT = 9400
REPORT_PORT_ENV = "TENSORONE_REPORT_PORT"
TERMINATION_LOG_ENV = "TENSORONE_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class TrainerState(StrEnum):
    """What the trainer process is doing."""

    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"  # ended on SIGTERM after saving a checkpoint
    completed = "completed"
    failed = "failed"
    diverged = "diverged"  # NaN or infinite loss; the last good checkpoint is kept


class CheckpointReport(ApiModel):
    """One checkpoint as the trainer reports it."""

    id: str = Field(description="Checkpoint id (ckpt-epoch-1, ckpt-step-500).")
    epoch: int = Field(description="Epochs completed.")
    step: int = Field(description="Optimizer steps completed.")
    loss: float | None = Field(default=None, description="Training loss when saved.")
    created_at: datetime = Field(description="When saved.")
    size_bytes: int = Field(description="Size on disk in bytes.")
    reason: str = Field(default="step", description="epoch, step, stop, final or diverged.")


class LossPoint(ApiModel):
    """A point of the loss curve."""

    step: int = Field(description="Optimizer step.")
    loss: float = Field(description="Loss at that step.")


class ProgressReport(ApiModel):
    """The snapshot served at /progress."""

    schema_version: int = Field(default=REPORT_SCHEMA_VERSION, description="Version of this format.")
    state: TrainerState = Field(description="What the trainer is doing.")
    reason: str | None = Field(default=None, description="Why it ended, for failed and diverged (CamelCase).")
    message: str | None = Field(default=None, description="Human-readable detail.")
    epoch: int = Field(default=0, description="Epoch in progress, 1-based (0 before the first).")
    total_epochs: int = Field(default=0, description="Epochs planned.")
    step: int = Field(default=0, description="Optimizer steps done.")
    total_steps: int = Field(default=0, description="Optimizer steps planned.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    best_loss: float | None = Field(default=None, description="Lowest training loss.")
    eval_loss: float | None = Field(default=None, description="Latest evaluation loss.")
    best_eval_loss: float | None = Field(default=None, description="Lowest evaluation loss.")
    learning_rate: float | None = Field(default=None, description="Current learning rate.")
    tokens_per_second: float | None = Field(default=None, description="Training tokens per second (all ranks).")
    samples_per_second: float | None = Field(default=None, description="Training samples per second (all ranks).")
    memory_bytes: int | None = Field(default=None, description="Peak accelerator memory (host RSS on CPU).")
    started_at: datetime | None = Field(default=None, description="When this process started training.")
    updated_at: datetime | None = Field(default=None, description="When this report was produced.")
    elapsed_seconds: float = Field(default=0.0, description="Wall-clock seconds since the run started.")
    step_seconds: float = Field(default=0.0, description="Seconds spent inside training steps (for efficiency).")
    resumed_from: str | None = Field(default=None, description="Checkpoint this run resumed from.")
    checkpoints: list[CheckpointReport] = Field(default_factory=list, description="Checkpoints kept, oldest first.")
    loss_history: list[LossPoint] = Field(
        default_factory=list, description="Downsampled training-loss curve (bounded)."
    )
    eval_history: list[LossPoint] = Field(default_factory=list, description="Evaluation-loss curve (bounded).")

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"))

    def termination_message(self) -> str:
        """The report shrunk to fit the termination-message limit: curves dropped, then older
        checkpoints, keeping the newest (the one saved on stop)."""
        slim = self.model_copy(update={"loss_history": [], "eval_history": []})
        text = slim.to_json()
        keep = len(slim.checkpoints)
        while len(text.encode()) > TERMINATION_MESSAGE_LIMIT - 96 and keep > 0:
            keep -= 1
            text = slim.model_copy(update={"checkpoints": slim.checkpoints[len(slim.checkpoints) - keep :]}).to_json()
        return text
