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
from tensorone.api.v1alpha1.trainingjob import ModelType, OutputFrom
from tensorone.reporting.client import Reporter
from trainer import distributed
from trainer.checkpoint import (
    CheckpointManifest,
    CheckpointStore,
    DataFingerprint,
    DataPosition,
    TrainingState,
    checkpoint_id,
)
from trainer.data.plan import DataPlan, Example, PlannedStep, eval_batches
from trainer.distributed import Topology
from trainer.early_stopping import EARLY_STOPPED, WATCH_STATE_KEY, EvaluationWatch, watched_value
from trainer.export import export_job
from trainer.model import base_model_of
from trainer.output import describe_output
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
    watch: EvaluationWatch | None = None  # the best evaluation and early stopping, when the job asks


@dataclass(frozen=True)
class StepResult:
    """One optimizer step's loss over every process, whether any process was asked to stop, the
    learning rate and the gradient norm."""

    loss: float
    stop_requested: bool
    learning_rate: float | None  # the rate the update used; None when the loss was not finite and no update was made
    grad_norm: float | None = None  # total gradient norm before clipping; None when not finite (fp16 overflow)


def train_remaining_steps(run: TrainingRun) -> Outcome:
    """Run from ``run.position`` to the end, a stop, or a divergence."""
    nan_at_step = int(os.environ.get(FAULT_NAN_AT_STEP_ENV) or 0)
    run.objective.train()
    if run.watch is not None and run.watch.stopped:
        return _completed(run)  # resumed from the checkpoint of an early stop: nothing more to train

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
        improved = False
        if not stopping and _evaluation_due(run, last_in_epoch=last_in_epoch, final=final):
            improved = evaluate_and_report(run)
        plateau = run.watch is not None and run.watch.plateau and not final

        reason = _checkpoint_reason(run, last_in_epoch=last_in_epoch, final=final, stop=stopping)
        _save_due_checkpoint(run, reason, result.loss, improved=improved, plateau=plateau)
        if stopping:
            return _stopped(run)
        if plateau:
            return _completed(run)
    return _completed(run)


def _save_due_checkpoint(run: TrainingRun, reason: str | None, loss: float, *, improved: bool, plateau: bool) -> None:
    """The checkpoint due at this step, if any; and one at an evaluation that improved on the best
    or at an early stop when none is due, so the best weights and those the run ends with are
    always on disk. The watch learns which checkpoint is the best before it is saved (it is part
    of the checkpoint's state)."""
    if reason is None and (improved or plateau):
        reason = "best" if improved else "final"
    if reason is None:
        return
    if run.watch is not None:
        if improved:
            run.watch.best_checkpoint = checkpoint_id(reason, epoch=run.position.epoch, step=run.step)
        run.watch.stopped = plateau
    save_checkpoint(run, reason, loss)
    if improved and run.watch is not None:
        run.reporter.best_checkpoint(run.watch.best_checkpoint)


def evaluate_and_report(run: TrainingRun) -> bool:
    """Evaluate, report the loss (with perplexity for a language model) and the task's metrics;
    whether the watched metric improved on its best."""
    loss = evaluate(run)
    metrics = run.task.eval_metrics(run.model, run.eval_examples, run.topology)
    run.reporter.eval(run.step, loss, metrics or None, perplexity=_perplexity(run, loss))
    if run.watch is None:
        return False
    return run.watch.observe(watched_value(run.watch.metric, loss, metrics), step=run.step)


def _perplexity(run: TrainingRun, loss: float) -> float | None:
    """exp of the mean loss per supervised token, for a language model; None when it overflows."""
    if run.job.model_type != ModelType.llm or not math.isfinite(loss):
        return None
    try:
        return math.exp(loss)
    except OverflowError:
        return None


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
        grad_norm=result.grad_norm,
    )


def _evaluation_due(run: TrainingRun, *, last_in_epoch: bool, final: bool) -> bool:
    """At the end of each epoch, at the last step, and every ``evalSteps`` steps when it is set."""
    if not run.eval_examples:
        return False
    eval_steps = run.job.config.training.eval_steps
    return last_in_epoch or final or (eval_steps is not None and run.step % eval_steps == 0)


def _completed(run: TrainingRun) -> Outcome:
    """Write the final artifacts (from the best checkpoint's weights when config.output.from is
    best) and report them. The last step always saved a checkpoint (epoch, final or the early
    stop's); a run resumed from the end of a finished one does no step and only writes the output
    again."""
    output_dir = Path(run.job.output_dir)
    output = run.job.config.output
    source = _output_source(run)
    written: list[Path] = []
    if run.topology.is_main:
        if source is not None and source is not run.last_checkpoint:
            run.task.load_weights(run.model, run.store.model_dir(source))
        merge = run.merge_adapter or (output is not None and output.merge)
        written = run.task.save_final(run.model, output_dir, merge=merge)
        run.reporter.output(
            describe_output(
                written,
                checkpoint_dir=Path(run.job.checkpoint_dir),
                strategy=run.job.config.strategy,
                base_model=run.job.config.base_model,
                checkpoint=source.id if source is not None else None,
            )
        )
    distributed.barrier(run.topology)
    if run.topology.is_main and run.reporter.tracker.output is not None:
        # After the barrier: the other processes are free to end while rank 0 uploads.
        export_job(run.job, run.reporter, run.store, output_sha256=run.reporter.tracker.output.sha256)
    loss_text = f"{run.reporter.tracker.loss:.4f}" if run.reporter.tracker.loss is not None else "n/a"
    summary = (
        f"trained {run.step} of {run.total_steps} steps, final loss {loss_text}; output in "
        + (", ".join(str(p) for p in written) or str(output_dir))
        + (f" (from {source.id})" if source is not None else "")
    )
    if run.watch is not None and run.watch.stopped:
        return Outcome(
            TrainerState.completed, reason=EARLY_STOPPED, message=f"stopped early: {run.watch.describe()}; {summary}"
        )
    return Outcome(TrainerState.completed, message=summary)


def _output_source(run: TrainingRun) -> CheckpointManifest | None:
    """The checkpoint whose weights become the output: the best one with config.output.from best
    (when there is one), else the last one saved."""
    output = run.job.config.output
    if output is not None and output.from_ == OutputFrom.best and run.watch is not None:
        best = next((m for m in run.store.checkpoints() if m.id == run.watch.best_checkpoint), None)
        if best is not None:
            return best
    return run.last_checkpoint


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

    # The total gradient norm, before clipping: after the last backward every process holds the
    # same averaged gradients, so each computes the same norm, on the device (no synchronisation).
    run.precision.scaler.unscale_(run.optimizer)
    trained = [p for p in run.model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in trained if p.grad is not None]).float()

    # One collective call: the global loss, whether any process was asked to stop, and the norm
    # (summed over identical values: divided by the number of processes first).
    stop_flag = torch.tensor(float(run.stop.requested), device=run.device)
    shared_norm = grad_norm.to(run.device) / run.topology.world_size
    totals = distributed.all_reduce_sum(torch.stack([loss_sum, stop_flag, shared_norm]), run.topology)
    summed_loss, stops, norm = totals.tolist()  # the step's one device synchronisation
    loss = summed_loss / max(1, planned.global_targets)
    if not math.isfinite(loss):
        # The update that would apply this loss is not made; the gradients are dropped.
        run.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, stops > 0, None)

    max_grad_norm = run.job.config.optimization.max_grad_norm
    if max_grad_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(trained, max_grad_norm, grad_norm)
    run.precision.scaler.step(run.optimizer)
    run.precision.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    learning_rate = float(run.schedule.get_last_lr()[0])
    run.schedule.step()
    run.step += 1
    return StepResult(loss, stops > 0, learning_rate, norm if math.isfinite(norm) else None)


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
    run.reporter.flush()  # every step up to this checkpoint is in the metrics log before it exists
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
            trainer=run.reporter.tracker.state_dict()
            | ({WATCH_STATE_KEY: run.watch.state_dict()} if run.watch is not None else {}),
            rng={},
        ),
        keep=run.job.config.training.keep_checkpoints,
        data=run.data,
        protect=run.watch.best_checkpoint if run.watch is not None else None,
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
