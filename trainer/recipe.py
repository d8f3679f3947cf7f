"""The trainer as a recipe: each step of setting up a training run, as a small function.

Every step takes the resolved job and what the steps before it made: the process joins the others,
the checkpoints are found, the task reads the data and loads the model, the data is planned, the
optimizer is built, and a ``TrainingRun`` is put together, restored from a checkpoint when it
resumes and shared between processes when there are several. ``trainer.run`` calls them in that
order and hands the run to the loop; ``bench/trainer_speed.py`` builds its side with the same
functions.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tensorone.api.resolved import ResolvedJob
from tensorone.reporting.client import Reporter
from trainer import distributed
from trainer.checkpoint import CheckpointManifest, CheckpointStore, set_rng_state
from trainer.data.plan import DataPlan, Example
from trainer.distributed import Topology
from trainer.loop import TrainingRun
from trainer.model import base_model_of
from trainer.optimization import build_optimizer, build_schedule
from trainer.precision import Precision
from trainer.signals import StopSignal
from trainer.tasks import Task, TaskData

log = logging.getLogger("trainer")


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


def setup_checkpoints(job: ResolvedJob, topology: Topology) -> tuple[CheckpointStore, CheckpointManifest | None]:
    """The checkpoint store, cleared of torn checkpoints, and the checkpoint to resume from, if any."""
    store = CheckpointStore(Path(job.checkpoint_dir), topology)
    store.clean_up()
    distributed.barrier(topology)
    # Every process looks (so a missing id fails everywhere alike), then rank 0's choice is taken,
    # in case their views of the shared folder differ for a moment.
    found = store.find(job.resume_from)
    chosen = distributed.broadcast(found.id if found is not None else None, topology)
    return store, store.find(chosen) if chosen is not None else None


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
    )


def resume(run: TrainingRun, checkpoint: CheckpointManifest) -> None:
    """Put the run back where ``checkpoint`` left it: weights, optimizer, schedule, scaler, random
    streams, data position and the report's history."""
    state = run.store.load(checkpoint, strategy=str(run.job.config.strategy), base_model=base_model_of(run.job))
    run.task.load_weights(run.model, run.store.model_dir(checkpoint))
    run.optimizer.load_state_dict(state.optimizer)
    run.schedule.load_state_dict(state.schedule)
    run.precision.scaler.load_state_dict(state.scaler)
    set_rng_state(state.rng)
    run.step, run.position, run.last_checkpoint = checkpoint.step, checkpoint.position, checkpoint
    epoch = min(checkpoint.position.epoch + 1, run.total_epochs)
    run.reporter.tracker.load_state_dict(state.trainer, step=run.step, epoch=epoch)
    run.reporter.checkpoints([m.to_report() for m in run.store.checkpoints()])
    log.info("resuming from %s (step %d)", checkpoint.id, run.step)


def share_between_processes(run: TrainingRun) -> None:
    """With several processes, forward and backward go through DistributedDataParallel, which
    averages the gradients; it wraps the objective, whose forward is what the loop runs."""
    if run.topology.is_distributed:
        device = run.device
        run.replica = torch.nn.parallel.DistributedDataParallel(
            run.objective, device_ids=[device.index] if device.type == "cuda" else None
        )
