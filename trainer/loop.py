"""The training loop: one optimizer step after another, from the data position to the last step.

Everything the loop uses is built beforehand (run.py) and handed over in ``Training``; the loop
itself decides only what happens when: forward and backward over the step's micro-batches, one
collective call that sums the loss and agrees on stopping, the divergence check, the optimizer
step, the report, evaluation, checkpoints, and the final artifacts.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tensorone.api.report import TrainerState
from tensorone.reporting.client import Reporter
from trainer import distributed
from trainer.checkpoint import CheckpointManifest, CheckpointStore, DataPosition, TrainingState
from trainer.data.plan import DataPlan, Example, PlannedStep, eval_batches
from trainer.distributed import Topology
from trainer.precision import Precision
from trainer.settings import Settings
from trainer.signals import StopSignal
from trainer.tasks import Task

# Fault injection for tests and alerting drills: the loss of this optimizer step is made NaN, so
# the divergence path runs exactly as a real divergence would. Unset in normal runs.
FAULT_NAN_AT_STEP_ENV = "TENSORONE_FAULT_NAN_AT_STEP"


@dataclass(frozen=True)
class Outcome:
    """How the loop ended."""

    state: TrainerState
    reason: str | None = None
    message: str | None = None


@dataclass
class Training:
    """Everything the loop works with, and where it is."""

    settings: Settings
    topology: Topology
    device: torch.device
    task: Task
    model: torch.nn.Module  # the model being trained: what is saved
    objective: torch.nn.Module  # forward(batch) -> the batch's summed loss; holds `model`
    # What forward and backward run on: `objective`, inside DistributedDataParallel when distributed.
    replica: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    plan: DataPlan
    eval_examples: Sequence[Example]
    store: CheckpointStore
    reporter: Reporter
    stop: StopSignal
    total_epochs: int
    total_steps: int
    merge_adapter: bool = False
    step: int = 0  # optimizer steps done
    position: DataPosition = field(default_factory=lambda: DataPosition(epoch=0, step_in_epoch=0))
    last_checkpoint: CheckpointManifest | None = None


@dataclass(frozen=True)
class StepResult:
    """One optimizer step's loss over every process, and whether any process was asked to stop."""

    loss: float
    stop_requested: bool
    learning_rate: float | None  # the rate the update used; None when the loss was not finite and no update was made


def train(t: Training) -> Outcome:
    """Run from ``t.position`` to the end, a stop, or a divergence."""
    training = t.settings.training
    nan_at_step = int(os.environ.get(FAULT_NAN_AT_STEP_ENV) or 0)
    t.objective.train()

    for epoch, index, planned, last_in_epoch in _remaining_steps(t):
        started = time.perf_counter()
        result = optimizer_step(t, planned, poison=t.step + 1 == nan_at_step)
        if result.learning_rate is None:
            return _diverged(t, result.loss)
        t.position = (
            DataPosition(epoch=epoch + 1, step_in_epoch=0)
            if last_in_epoch
            else DataPosition(epoch=epoch, step_in_epoch=index + 1)
        )
        t.reporter.step(
            t.step,
            result.loss,
            epoch=epoch + 1,
            learning_rate=result.learning_rate,
            tokens=planned.global_tokens,
            samples=planned.global_samples,
            seconds=time.perf_counter() - started,
        )

        final = t.step >= t.total_steps
        stopping = result.stop_requested and not final  # a stop at the last step just completes
        if stopping:
            # The grace period is for the checkpoint: an evaluation due now is skipped.
            t.reporter.set_state(TrainerState.stopping, message=f"saving a checkpoint after step {t.step}")
        elif t.eval_examples and (
            last_in_epoch or final or (training.eval_steps is not None and t.step % training.eval_steps == 0)
        ):
            t.reporter.eval(t.step, evaluate(t))

        reason = _checkpoint_reason(t, last_in_epoch=last_in_epoch, final=final, stop=stopping)
        if reason is not None:
            save_checkpoint(t, reason, result.loss)
        if stopping:
            return _stopped(t)

    # The last step always saved a checkpoint (epoch or final); a run resumed from the end of a
    # finished one does no step and only writes the output again.
    written: list[Path] = []
    if t.topology.is_main:
        written = t.task.save_final(t.model, t.settings.output_dir, merge=t.merge_adapter)
    distributed.barrier(t.topology)
    loss_text = f"{t.reporter.tracker.loss:.4f}" if t.reporter.tracker.loss is not None else "n/a"
    return Outcome(
        TrainerState.completed,
        message=f"trained {t.step} of {t.total_steps} steps, final loss {loss_text}; output in "
        + (", ".join(str(p) for p in written) or str(t.settings.output_dir)),
    )


def optimizer_step(t: Training, planned: PlannedStep, *, poison: bool = False) -> StepResult:
    """Forward and backward over the step's micro-batches, then the update (unless the loss is not finite).

    ``poison`` makes the loss NaN (fault injection: the divergence path runs as a real one would).
    """
    # Each micro-batch's summed loss is divided by the step's supervised tokens over every process
    # (known from the plan, so no collective call is needed for it), and multiplied by the number of
    # processes because DistributedDataParallel averages gradients.
    scale = t.topology.world_size / max(1, planned.global_targets)
    loss_sum = torch.zeros((), device=t.device)
    for number, indices in enumerate(planned.micro_batches):
        batch = t.task.collate([t.plan.examples[i] for i in indices]).to(t.device)
        synchronise = number == len(planned.micro_batches) - 1
        with _gradient_sync(t, synchronise), t.precision.autocast():
            micro_loss = t.replica(batch)
        t.precision.scaler.scale(micro_loss * scale).backward()
        loss_sum += micro_loss.detach().float()
    if poison:
        loss_sum = loss_sum * float("nan")

    # One collective call: the global loss, and whether any process was asked to stop.
    totals = distributed.all_reduce_sum(
        torch.stack([loss_sum, torch.tensor(float(t.stop.requested), device=t.device)]), t.topology
    )
    summed_loss, stops = totals.tolist()  # the step's one device synchronisation
    loss = summed_loss / max(1, planned.global_targets)
    if not math.isfinite(loss):
        # The update that would apply this loss is not made; the gradients are dropped.
        t.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, stops > 0, None)

    t.precision.scaler.unscale_(t.optimizer)
    if t.settings.optimization.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(
            [p for p in t.model.parameters() if p.requires_grad], t.settings.optimization.max_grad_norm
        )
    t.precision.scaler.step(t.optimizer)
    t.precision.scaler.update()
    t.optimizer.zero_grad(set_to_none=True)
    learning_rate = float(t.schedule.get_last_lr()[0])
    t.schedule.step()
    t.step += 1
    return StepResult(loss, stops > 0, learning_rate)


def _remaining_steps(t: Training) -> Iterator[tuple[int, int, PlannedStep, bool]]:
    """(epoch, index in epoch, planned step, whether it ends the epoch) from the data position on."""
    step = t.step
    for epoch in range(t.position.epoch, t.total_epochs):
        planned = t.plan.steps(epoch)
        first = t.position.step_in_epoch if epoch == t.position.epoch else 0
        for index in range(first, len(planned)):
            if step >= t.total_steps:
                return
            step += 1
            yield epoch, index, planned[index], index == len(planned) - 1


def _gradient_sync(t: Training, synchronise: bool) -> contextlib.AbstractContextManager[object]:
    """Gradients are averaged across processes on the last micro-batch of a step only."""
    if t.topology.is_distributed and not synchronise:
        return t.replica.no_sync()  # type: ignore[operator]
    return contextlib.nullcontext()


def _checkpoint_reason(t: Training, *, last_in_epoch: bool, final: bool, stop: bool) -> str | None:
    training = t.settings.training
    if last_in_epoch and training.checkpoint_every_epoch:
        return "epoch"
    if stop:
        return "stop"
    if final:
        return "final"
    if training.checkpoint_steps is not None and t.step % training.checkpoint_steps == 0:
        return "step"
    return None


def evaluate(t: Training) -> float:
    """Mean loss per supervised token over the evaluation examples, every process's share summed."""
    t.objective.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=t.device)
    with torch.no_grad():
        for indices in eval_batches(
            len(t.eval_examples), t.settings.training.batch_size, t.topology.rank, t.topology.world_size
        ):
            examples = [t.eval_examples[i] for i in indices]
            batch = t.task.collate(examples).to(t.device)
            with t.precision.autocast():
                totals[0] += t.objective(batch).double()
            totals[1] += sum(e.num_targets for e in examples)
    distributed.all_reduce_sum(totals, t.topology)
    t.objective.train()
    return float(totals[0] / totals[1].clamp(min=1))


def save_checkpoint(t: Training, reason: str, loss: float | None) -> None:
    """Save, prune to the last few plus the best, and report the kept list."""
    saved, kept = t.store.save(
        reason=reason,
        epoch=t.position.epoch,
        step=t.step,
        position=t.position,
        loss=loss,
        eval_loss=t.reporter.tracker.eval_loss,
        strategy=str(t.settings.strategy),
        base_model=t.settings.base_model,
        write_model=lambda directory: t.task.save_weights(t.model, directory),
        state=lambda: TrainingState(
            optimizer=t.optimizer.state_dict(),
            schedule=t.schedule.state_dict(),
            scaler=t.precision.scaler.state_dict(),
            trainer=t.reporter.tracker.state_dict(),
            rng={},
        ),
        keep=t.settings.training.keep_checkpoints,
    )
    t.last_checkpoint = saved
    t.reporter.checkpoints([m.to_report() for m in kept], saved=saved.to_report())


def _stopped(t: Training) -> Outcome:
    saved = t.last_checkpoint.id if t.last_checkpoint is not None else "no checkpoint (no step was done)"
    return Outcome(
        TrainerState.stopped,
        reason="Stopped",
        message=f"stopped by {t.stop.signal_name or 'a signal on another process'} after step {t.step}; "
        f"latest checkpoint {saved}",
    )


def _diverged(t: Training, loss: float) -> Outcome:
    # Nothing is saved: the weights after this step are not trustworthy. The last good checkpoint
    # stays, and the optimizer step that would have applied this loss is not taken.
    kept = t.last_checkpoint.id if t.last_checkpoint is not None else "none"
    return Outcome(
        TrainerState.diverged,
        reason="Diverged",
        message=f"the loss of step {t.step + 1} is {loss}; last good checkpoint: {kept}. Lower "
        "config.training.learningRate, set config.optimization.maxGradNorm, or check the data",
    )
