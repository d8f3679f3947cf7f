"""The training loop: one optimizer step after another, from the data position to the last step.

Everything the loop uses is set up beforehand (recipe.py) and handed over in a ``TrainingRun``; the
loop itself decides only what happens when: forward and backward over the step's micro-batches, one
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
from tensorone.api.resolved import ResolvedJob
from tensorone.reporting.client import Reporter
from trainer import distributed
from trainer.checkpoint import CheckpointManifest, CheckpointStore, DataFingerprint, DataPosition, TrainingState
from trainer.data.plan import DataPlan, Example, PlannedStep, eval_batches
from trainer.distributed import Topology
from trainer.model import base_model_of
from trainer.precision import Precision
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
class TrainingRun:
    """Everything the loop works with, and where it is."""

    job: ResolvedJob
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
    data: DataFingerprint | None = None  # the training examples, recorded in every checkpoint


@dataclass(frozen=True)
class StepResult:
    """One optimizer step's loss over every process, and whether any process was asked to stop."""

    loss: float
    stop_requested: bool
    learning_rate: float | None  # the rate the update used; None when the loss was not finite and no update was made


def train_remaining_steps(run: TrainingRun) -> Outcome:
    """Run from ``run.position`` to the end, a stop, or a divergence."""
    nan_at_step = int(os.environ.get(FAULT_NAN_AT_STEP_ENV) or 0)
    run.objective.train()

    for epoch, index, planned, last_in_epoch in _remaining_steps(run):
        started = time.perf_counter()
        result = optimizer_step(run, planned, poison=run.step + 1 == nan_at_step)
        if result.learning_rate is None:
            return _diverged(run, result.loss)
        run.position = (
            DataPosition(epoch=epoch + 1, step_in_epoch=0)
            if last_in_epoch
            else DataPosition(epoch=epoch, step_in_epoch=index + 1)
        )
        report_step(run, result, planned, epoch=epoch + 1, seconds=time.perf_counter() - started)

        final = run.step >= run.total_steps
        stopping = result.stop_requested and not final  # a stop at the last step just completes
        if stopping:
            # The grace period is for the checkpoint: an evaluation due now is skipped.
            run.reporter.set_state(TrainerState.stopping, message=f"saving a checkpoint after step {run.step}")
        elif _evaluation_due(run, last_in_epoch=last_in_epoch, final=final):
            loss = evaluate(run)
            run.reporter.eval(run.step, loss, run.task.eval_metrics(run.model, run.eval_examples, run.topology) or None)

        reason = _checkpoint_reason(run, last_in_epoch=last_in_epoch, final=final, stop=stopping)
        if reason is not None:
            save_checkpoint(run, reason, result.loss)
        if stopping:
            return _stopped(run)
    return _completed(run)


def report_step(run: TrainingRun, result: StepResult, planned: PlannedStep, *, epoch: int, seconds: float) -> None:
    """Tell the reporter about the optimizer step just done (``epoch`` is 1-based)."""
    run.reporter.step(
        run.step,
        result.loss,
        epoch=epoch,
        learning_rate=result.learning_rate,
        tokens=planned.global_tokens,
        samples=planned.global_samples,
        seconds=seconds,
    )


def _evaluation_due(run: TrainingRun, *, last_in_epoch: bool, final: bool) -> bool:
    """At the end of each epoch, at the last step, and every ``evalSteps`` steps when it is set."""
    if not run.eval_examples:
        return False
    eval_steps = run.job.config.training.eval_steps
    return last_in_epoch or final or (eval_steps is not None and run.step % eval_steps == 0)


def _completed(run: TrainingRun) -> Outcome:
    """Write the final artifacts. The last step always saved a checkpoint (epoch or final); a run
    resumed from the end of a finished one does no step and only writes the output again."""
    output_dir = Path(run.job.output_dir)
    written: list[Path] = []
    if run.topology.is_main:
        written = run.task.save_final(run.model, output_dir, merge=run.merge_adapter)
    distributed.barrier(run.topology)
    loss_text = f"{run.reporter.tracker.loss:.4f}" if run.reporter.tracker.loss is not None else "n/a"
    return Outcome(
        TrainerState.completed,
        message=f"trained {run.step} of {run.total_steps} steps, final loss {loss_text}; output in "
        + (", ".join(str(p) for p in written) or str(output_dir)),
    )


def optimizer_step(run: TrainingRun, planned: PlannedStep, *, poison: bool = False) -> StepResult:
    """Forward and backward over the step's micro-batches, then the update (unless the loss is not finite).

    ``poison`` makes the loss NaN (fault injection: the divergence path runs as a real one would).
    """
    # Each micro-batch's summed loss is divided by the step's supervised tokens over every process
    # (known from the plan, so no collective call is needed for it), and multiplied by the number of
    # processes because DistributedDataParallel averages gradients.
    scale = run.topology.world_size / max(1, planned.global_targets)
    loss_sum = torch.zeros((), device=run.device)
    for number, indices in enumerate(planned.micro_batches):
        batch = run.task.collate([run.plan.examples[i] for i in indices]).to(run.device)
        synchronise = number == len(planned.micro_batches) - 1
        with _gradient_sync(run, synchronise), run.precision.autocast():
            micro_loss = run.replica(batch)
        run.precision.scaler.scale(micro_loss * scale).backward()
        loss_sum += micro_loss.detach().float()
    if poison:
        loss_sum = loss_sum * float("nan")

    # One collective call: the global loss, and whether any process was asked to stop.
    totals = distributed.all_reduce_sum(
        torch.stack([loss_sum, torch.tensor(float(run.stop.requested), device=run.device)]), run.topology
    )
    summed_loss, stops = totals.tolist()  # the step's one device synchronisation
    loss = summed_loss / max(1, planned.global_targets)
    if not math.isfinite(loss):
        # The update that would apply this loss is not made; the gradients are dropped.
        run.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, stops > 0, None)

    run.precision.scaler.unscale_(run.optimizer)
    max_grad_norm = run.job.config.optimization.max_grad_norm
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.requires_grad], max_grad_norm)
    run.precision.scaler.step(run.optimizer)
    run.precision.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    learning_rate = float(run.schedule.get_last_lr()[0])
    run.schedule.step()
    run.step += 1
    return StepResult(loss, stops > 0, learning_rate)


def _remaining_steps(run: TrainingRun) -> Iterator[tuple[int, int, PlannedStep, bool]]:
    """(epoch, index in epoch, planned step, whether it ends the epoch) from the data position on."""
    step = run.step
    for epoch in range(run.position.epoch, run.total_epochs):
        planned = run.plan.steps(epoch)
        first = run.position.step_in_epoch if epoch == run.position.epoch else 0
        for index in range(first, len(planned)):
            if step >= run.total_steps:
                return
            step += 1
            yield epoch, index, planned[index], index == len(planned) - 1


def _gradient_sync(run: TrainingRun, synchronise: bool) -> contextlib.AbstractContextManager[object]:
    """Gradients are averaged across processes on the last micro-batch of a step only."""
    if run.topology.is_distributed and not synchronise:
        return run.replica.no_sync()  # type: ignore[operator]
    return contextlib.nullcontext()


def _checkpoint_reason(run: TrainingRun, *, last_in_epoch: bool, final: bool, stop: bool) -> str | None:
    training = run.job.config.training
    if last_in_epoch and training.checkpoint_every_epoch:
        return "epoch"
    if stop:
        return "stop"
    if final:
        return "final"
    if training.checkpoint_steps is not None and run.step % training.checkpoint_steps == 0:
        return "step"
    return None


def evaluate(run: TrainingRun) -> float:
    """Mean loss per supervised token over the evaluation examples, every process's share summed."""
    run.objective.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=run.device)
    with torch.no_grad():
        for indices in eval_batches(
            len(run.eval_examples), run.job.config.training.batch_size, run.topology.rank, run.topology.world_size
        ):
            examples = [run.eval_examples[i] for i in indices]
            batch = run.task.collate(examples).to(run.device)
            with run.precision.autocast():
                totals[0] += run.objective(batch).double()
            totals[1] += sum(e.num_targets for e in examples)
    distributed.all_reduce_sum(totals, run.topology)
    run.objective.train()
    return float(totals[0] / totals[1].clamp(min=1))


def save_checkpoint(run: TrainingRun, reason: str, loss: float | None) -> None:
    """Save, prune to the last few plus the best, and report the kept list."""
    saved, kept = run.store.save(
        reason=reason,
        epoch=run.position.epoch,
        step=run.step,
        position=run.position,
        loss=loss,
        eval_loss=run.reporter.tracker.eval_loss,
        strategy=str(run.job.config.strategy),
        base_model=base_model_of(run.job),
        write_model=lambda directory: run.task.save_weights(run.model, directory),
        state=lambda: TrainingState(
            optimizer=run.optimizer.state_dict(),
            schedule=run.schedule.state_dict(),
            scaler=run.precision.scaler.state_dict(),
            trainer=run.reporter.tracker.state_dict(),
            rng={},
        ),
        keep=run.job.config.training.keep_checkpoints,
        data=run.data,
    )
    run.last_checkpoint = saved
    run.reporter.checkpoints([m.to_report() for m in kept], saved=saved.to_report())


def _stopped(run: TrainingRun) -> Outcome:
    saved = run.last_checkpoint.id if run.last_checkpoint is not None else "no checkpoint (no step was done)"
    return Outcome(
        TrainerState.stopped,
        reason="Stopped",
        message=f"stopped by {run.stop.signal_name or 'a signal on another process'} after step {run.step}; "
        f"latest checkpoint {saved}",
    )


def _diverged(run: TrainingRun, loss: float) -> Outcome:
    # Nothing is saved: the weights after this step are not trustworthy. The last good checkpoint
    # stays, and the optimizer step that would have applied this loss is not taken.
    kept = run.last_checkpoint.id if run.last_checkpoint is not None else "none"
    return Outcome(
        TrainerState.diverged,
        reason="Diverged",
        message=f"the loss of step {run.step + 1} is {loss}; last good checkpoint: {kept}. Lower "
        "config.training.learningRate, set config.optimization.maxGradNorm, or check the data",
    )
