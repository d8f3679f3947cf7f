"""The gateway's request and response bodies, as its OpenAPI document describes them.

The bodies are the reference API's (camelCase at the top, snake_case inside ``config``). The
handlers read and write plain JSON through ``tensorone.api.rest`` (one conversion for the gateway,
the SDK and ``t1 convert``); these models document that JSON and give its schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tensorone.api.events import JobEvent
from tensorone.api.rest import MAX_DISPLAY_NAME_LENGTH


class Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class CreateJobRequest(Body):
    """``POST /v2/training/jobs``: the reference's create parameters."""

    name: str = Field(
        min_length=1,
        max_length=MAX_DISPLAY_NAME_LENGTH,
        description="Human-readable name; the job's id is this name as a Kubernetes name (a slug when it is "
        "not one: 'My Job' -> 'my-job').",
    )
    model_type: str = Field(description="llm, vision, multimodal or custom.")
    dataset_id: str = Field(
        description="The Dataset to train on, in the job's namespace ('ds_123' names the Dataset 'ds-123')."
    )
    config: dict[str, Any] = Field(description="Training configuration; snake_case or camelCase keys.")
    description: str | None = None
    tags: list[str] | None = None
    gpu_type: str | None = Field(default=None, description="A key of the operator's GPU catalog; none: CPU only.")
    max_workers: int | None = Field(default=None, ge=1, le=32)
    priority: str | None = Field(default=None, description="high, normal or low.")


class StopRequest(Body):
    """``POST /v2/training/jobs/{id}/stop``."""

    save_checkpoint: bool = Field(default=True, description="A stop always saves a checkpoint; false is refused.")
    reason: str | None = Field(default=None, max_length=1024, description="Kept as an annotation of the job.")


class ResumeRequest(Body):
    """``POST /v2/training/jobs/{id}/resume``."""

    checkpoint_id: str | None = Field(default=None, description="A checkpoint of the job; default: the latest.")


class Progress(Body):
    current_epoch: int | None = None
    total_epochs: int | None = None
    current_step: int | None = None
    total_steps: int | None = None
    percentage: float | None = None
    elapsed_time: float | None = None
    remaining_time: float | None = None


class JobDetails(Body):
    """A job: ``GET /v2/training/jobs/{id}``, and the answer of create, stop, resume and cancel."""

    id: str = Field(description="The TrainingJob's name: what the other endpoints take.")
    name: str
    status: str = Field(description="pending, queued, running, stopping, stopped, completed, failed or cancelled.")
    model_type: str
    dataset_id: str
    config: dict[str, Any]
    description: str | None = None
    tags: list[str] | None = None
    gpu_type: str | None = None
    max_workers: int | None = None
    priority: str | None = None
    progress: Progress | None = None
    metrics: dict[str, Any] | None = None
    resource_allocation: dict[str, Any] | None = None
    estimated_cost: dict[str, Any] | None = None
    resource_usage: dict[str, Any] | None = None
    checkpoints: list[dict[str, Any]] | None = None
    message: str | None = None
    loss_history: list[dict[str, Any]] | None = Field(
        default=None,
        description="Training loss by step, at most 64 points (downsampled as the job grows); GET of one "
        "job only, not in lists. An extension of the reference API.",
    )
    eval_loss_history: list[dict[str, Any]] | None = Field(
        default=None, description="Evaluation loss by step, as lossHistory; GET of one job only."
    )
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    estimated_completion: str | None = None


class Pagination(Body):
    total: int
    limit: int
    offset: int
    has_more: bool


class JobList(Body):
    """``GET /v2/training/jobs``: one page; each job also carries ``metrics.loss`` (the current loss)."""

    jobs: list[JobDetails]
    pagination: Pagination


class EventList(Body):
    """``GET /v2/training/jobs/{id}/events``: the job's events, oldest first: its Kubernetes Events
    merged in time order with its metric events (reason TrainingStep: step, epoch, loss,
    learningRate, gradNorm, tokensPerSecond or samplesPerSecond; reason Evaluation: evalLoss);
    ``?metrics=false`` leaves the metric events out."""

    events: list[JobEvent]


class CheckpointList(Body):
    """``GET /v2/training/jobs/{id}/checkpoints``: newest first."""

    checkpoints: list[dict[str, Any]]


class Deleted(Body):
    """``DELETE /v2/training/jobs/{id}``: ``deleted``, or ``terminating`` while the operator cleans up."""

    id: str
    status: str


class ErrorBody(BaseModel):
    """Every error: the reference's ``{"error": CODE, "message": ..., "details": {...}}``."""

    error: str = Field(
        description="CONFIGURATION_ERROR, DATASET_NOT_FOUND, INSUFFICIENT_RESOURCES, JOB_NOT_FOUND, "
        "CHECKPOINT_NOT_FOUND, INVALID_JOB_STATE, ALREADY_EXISTS, UNAUTHENTICATED, FORBIDDEN, CONNECTION_ERROR "
        "or INTERNAL_ERROR."
    )
    message: str
    details: dict[str, Any]
