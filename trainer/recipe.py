"""The trainer as a recipe: each step of setting up a training run, as a small function.

Every step takes the resolved job and what the steps before it made: the process joins the others,
the checkpoints are found, the task reads the data and loads the model, the data is planned, the
optimizer is built, and a ``TrainingRun`` is put together, restored from a checkpoint when it
resumes and shared between processes when there are several. ``trainer.run`` calls them in that
order and hands the run to the loop; ``bench/trainer_speed.py`` and ``bench/vision_detection.py``
build their side with the same functions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tensorone.api.report import TrainerState
from tensorone.api.resolved import ResolvedJob
from tensorone.errors import DataError, TensorOneError
from tensorone.reporting.client import Reporter
from trainer import distributed
from trainer.checkpoint import (
    CheckpointDamaged,
    CheckpointManifest,
    CheckpointStore,
    DataFingerprint,
    ResumeChoice,
    set_rng_state,
)
from trainer.data.plan import DataPlan, Example
from trainer.distributed import Topology
from trainer.early_stopping import WATCH_STATE_KEY, watch_for
from trainer.loop import TrainingRun
from trainer.model import base_model_of
from trainer.optimization import build_optimizer, build_schedule
from trainer.precision import Precision
from trainer.signals import StopSignal
from trainer.tasks import Task, TaskData

log = logging.getLogger("trainer")

# Set to 1 to resume from a checkpoint although the training data changed since it was written
# (the resume is then not exact; a warning says what changed). A switch the operator can map.
ALLOW_DATA_CHANGE_ENV = "TENSORONE_ALLOW_DATA_CHANGE"


@dataclass(frozen=True)
class Placement:
    """Where this process trains: its place among the job's processes, and its device."""

    topology: Topology
    device: torch.device


@dataclass(frozen=True)
class RunLength:
    """How long the run is: optimizer steps, and the epochs they span."""

    total_steps: int
    total_epochs: int


@dataclass(frozen=True)
class WeightUpdates:
    """What updates the weights: the optimizer, its learning-rate schedule, and mixed precision
    (autocast and the gradient scaler)."""

    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    precision: Precision


def join_processes(job: ResolvedJob, topology: Topology) -> Placement:
    """This process's device, in the process group of the job's processes (none when alone)."""
    device = distributed.device_for(topology, job.use_gpu)
    distributed.start(topology, device)
    return Placement(topology, device)


def setup_checkpoints(job: ResolvedJob, topology: Topology, reporter: Reporter) -> tuple[CheckpointStore, ResumeChoice]:
    """The checkpoint store, cleared of torn checkpoints, and where to resume: a checkpoint that
    verifies, with those skipped on the way (logged), or none. The checkpoints on disk are in the
    report from here on, so a run that then fails (a damaged checkpoint, changed data) still lists
    them."""
    store = CheckpointStore(Path(job.checkpoint_dir), topology, start_id=job.start_id)
    store.clean_up()
    distributed.barrier(topology)
    reporter.checkpoints([m.to_report() for m in store.checkpoints()])
    # Rank 0 reads and verifies; every process then takes its choice, or fails with its error.
    chosen: ResumeChoice | TensorOneError | None = None
    if topology.is_main:
        try:
            chosen = store.choose(job.resume_from)
        except TensorOneError as error:
            chosen = error
    chosen = distributed.broadcast(chosen, topology)
    if isinstance(chosen, TensorOneError):
        raise chosen
    assert chosen is not None
    for skipped in chosen.skipped:
        log.warning("checkpoint %s skipped: %s", skipped.id, skipped.problem)
    if chosen.checkpoint is not None and chosen.unverified:
        log.warning(
            "checkpoint %s has no content digests (written before they existed): only the presence of its files "
            "was checked",
            chosen.checkpoint.id,
        )
    return store, chosen


def report_notices(reporter: Reporter, choice: ResumeChoice, notices: Sequence[str]) -> None:
    """Say in the report's message while the run goes on (served at /progress) and in the metrics
    log which checkpoints were skipped and why, and the task's notices (an attention fallback, for
    instance)."""
    parts: list[str] = []
    if choice.skipped:
        for skipped in choice.skipped:
            reporter.event("checkpointSkipped", id=skipped.id, problem=skipped.problem)
        resumed = choice.checkpoint.id if choice.checkpoint is not None else "none"
        parts.append(f"resumed from {resumed}; skipped damaged checkpoints: {'; '.join(map(str, choice.skipped))}")
    for notice in notices:
        reporter.event("notice", message=notice)
    parts.extend(notices)
    if parts:
        reporter.set_state(TrainerState.running, message="; ".join(parts))


def load_data(task: Task, reporter: Reporter) -> TaskData:
    """The task's examples, with the bad rows logged and reported."""
    data = task.load_data()
    log.info("data: %s", data.description)
    if data.bad_rows:
        log.warning("%d bad rows skipped; first: %s", data.bad_rows, "; ".join(data.first_bad_rows))
    reporter.event("data", rows=data.total_rows, badRows=data.bad_rows, firstBadRows=data.first_bad_rows)
    return data


def setup_model(job: ResolvedJob, task: Task, placement: Placement) -> torch.nn.Module:
    """The task's model on this process's device, initialised alike on every process."""
    seed = job.config.training.seed
    # The same seed on every process gives every process the same initial adapter weights.
    random.seed(seed)
    torch.manual_seed(seed)
    model = task.load_model(placement.device)
    # Then a different stream per process, so dropout masks differ between processes.
    torch.manual_seed(seed + placement.topology.rank)
    return model


def plan_data(job: ResolvedJob, examples: Sequence[Example], topology: Topology) -> DataPlan:
    """The order, sharding and batching of the training examples, epoch after epoch."""
    training = job.config.training
    return DataPlan(
        examples=list(examples),
        seed=training.seed,
        batch_size=training.batch_size,
        accumulation=training.gradient_accumulation_steps,
        rank=topology.rank,
        world_size=topology.world_size,
    )


def data_fingerprint(plan: DataPlan) -> DataFingerprint:
    """The training examples in the plan's index order (the order of every epoch is a function of
    the seed and their number): their number, tokens and content digest."""
    digest = hashlib.sha256()
    for example in plan.examples:
        digest.update(example.content())
    return DataFingerprint(
        examples=len(plan.examples), tokens=sum(e.num_tokens for e in plan.examples), sha256=digest.hexdigest()
    )


def run_length(job: ResolvedJob, plan: DataPlan) -> RunLength:
    """``maxSteps`` when set, else every step of ``epochs`` epochs."""
    training = job.config.training
    total_steps = training.max_steps or training.epochs * plan.steps_per_epoch
    return RunLength(total_steps=total_steps, total_epochs=-(-total_steps // plan.steps_per_epoch))


def setup_optimizer(job: ResolvedJob, model: torch.nn.Module, device: torch.device, total_steps: int) -> WeightUpdates:
    """The optimizer over the trainable parameters, its schedule over ``total_steps``, and precision."""
    training = job.config.training
    optimizer = build_optimizer((p for p in model.parameters() if p.requires_grad), training)
    return WeightUpdates(
        optimizer=optimizer,
        schedule=build_schedule(optimizer, training, total_steps),
        precision=Precision(job.config.optimization.mixed_precision, device),
    )


def training_run(
    job: ResolvedJob,
    *,
    placement: Placement,
    task: Task,
    model: torch.nn.Module,
    updates: WeightUpdates,
    plan: DataPlan,
    eval_examples: Sequence[Example],
    store: CheckpointStore,
    reporter: Reporter,
    stop: StopSignal,
    length: RunLength,
    merge_adapter: bool = False,
) -> TrainingRun:
    """The run at its first step, on one process; ``share_between_processes`` adds the others."""
    objective = task.objective(model)
    return TrainingRun(
        job=job,
        topology=placement.topology,
        device=placement.device,
        task=task,
        model=model,
        objective=objective,
        replica=objective,
        optimizer=updates.optimizer,
        schedule=updates.schedule,
        precision=updates.precision,
        plan=plan,
        eval_examples=list(eval_examples),
        store=store,
        reporter=reporter,
        stop=stop,
        total_epochs=length.total_epochs,
        total_steps=length.total_steps,
        merge_adapter=merge_adapter,
        data=data_fingerprint(plan),
        watch=watch_for(job.config),
    )


def check_same_data(run: TrainingRun, checkpoint: CheckpointManifest) -> None:
    """Refuse to resume on data other than the checkpoint's, unless TENSORONE_ALLOW_DATA_CHANGE=1."""
    if checkpoint.data is None:
        log.warning("checkpoint %s records no data fingerprint: the data cannot be checked", checkpoint.id)
        return
    if run.data is None or checkpoint.data == run.data:
        return
    change = (
        f"the training data changed since checkpoint {checkpoint.id} was written: then "
        f"{checkpoint.data.describe()}, now {run.data.describe()}"
    )
    if os.environ.get(ALLOW_DATA_CHANGE_ENV) == "1":
        log.warning("%s; resuming anyway (%s=1): the resume is not exact", change, ALLOW_DATA_CHANGE_ENV)
        return
    raise DataError(
        f"{change}. The data order and position depend on it, so the resume would not be exact: restore the "
        f"data, set resumeFrom: none to start over, or set {ALLOW_DATA_CHANGE_ENV}=1 to resume anyway",
        field="resumeFrom",
    )


def resume(run: TrainingRun, checkpoint: CheckpointManifest) -> None:
    """Put the run back where ``checkpoint`` left it: weights, optimizer, schedule, scaler, random
    streams, data position and the report's history."""
    check_same_data(run, checkpoint)
    state = run.store.load(checkpoint, strategy=str(run.job.config.strategy), base_model=base_model_of(run.job))
    try:
        run.task.load_weights(run.model, run.store.model_dir(checkpoint))
    except Exception as error:
        raise CheckpointDamaged(
            f"checkpoint {checkpoint.id}: the weights in {run.store.model_dir(checkpoint)} cannot be loaded "
            f"({type(error).__name__}: {str(error).strip()[:300]}); choose another checkpoint, or set "
            "resumeFrom: none to start over",
            field="resumeFrom",
        ) from error
    run.optimizer.load_state_dict(state.optimizer)
    run.schedule.load_state_dict(state.schedule)
    run.precision.scaler.load_state_dict(state.scaler)
    set_rng_state(state.rng)
    run.step, run.position, run.last_checkpoint = checkpoint.step, checkpoint.position, checkpoint
    epoch = min(checkpoint.position.epoch + 1, run.total_epochs)
    run.reporter.tracker.load_state_dict(state.trainer, step=run.step, epoch=epoch)
    if run.watch is not None:
        run.watch.load_state_dict(state.trainer.get(WATCH_STATE_KEY))
        run.reporter.best_checkpoint(run.watch.best_checkpoint)
    log.info("resuming from %s (step %d)", checkpoint.id, run.step)


def share_between_processes(run: TrainingRun) -> None:
    """With several processes, forward and backward go through DistributedDataParallel, which
    averages the gradients; it wraps the objective, whose forward is what the loop runs.

    An objective whose batches may leave trained parameters out of the graph (a vision tower on a
    batch without images) says so with ``leaves_parameters_unused = True``: DDP then finds them
    each step instead of waiting for their gradients forever."""
    if run.topology.is_distributed:
        device = run.device
        run.replica = torch.nn.parallel.DistributedDataParallel(
            run.objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(getattr(run.objective, "leaves_parameters_unused", False)),
        )
