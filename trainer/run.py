"""One trainer process from start to exit code: set up, train, report how it ended.

Exit codes (Kubeflow's ``restartPolicy: ExitCode`` treats 1-127 as permanent, so none of these
is retried in vain):

====  =====================================================================
0     completed, or stopped on SIGTERM/SIGINT after saving a checkpoint
1     an unexpected error (reason is the exception type)
2     ConfigurationError or CheckpointNotFound: the job must be changed
3     DataError: the data cannot be read, or too many rows are bad
4     Diverged: the loss became NaN or infinite; the last good checkpoint is kept
====  =====================================================================
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from tensorone.api.report import ProgressReport, TrainerState
from tensorone.api.resolved import ResolvedJob
from tensorone.api.v1alpha1.trainingjob import Strategy
from tensorone.errors import ConfigurationError, DataError, TensorOneError
from tensorone.reporting.client import Reporter, host_peak_rss_bytes
from trainer import distributed
from trainer.checkpoint import CheckpointStore, DataPosition, set_rng_state
from trainer.data.plan import DataPlan
from trainer.distributed import Topology, topology_from_env
from trainer.loop import Outcome, Training, train
from trainer.optimization import build_optimizer, build_schedule
from trainer.precision import Precision
from trainer.settings import settings_from_job
from trainer.signals import StopSignal
from trainer.tasks import task_for

log = logging.getLogger("trainer")

METRICS_LOG = "metrics.jsonl"  # beside the checkpoints, on the job's volume
EXIT_CODES = {
    TrainerState.completed: 0,
    TrainerState.stopped: 0,
    TrainerState.diverged: 4,
}


@dataclass(frozen=True)
class RunResult:
    """How the process ended: its exit code and the final report."""

    exit_code: int
    report: ProgressReport | None


@dataclass(frozen=True)
class RunOptions:
    """How this process runs, beside what the job says."""

    serve_reports: bool = True
    progress_bar: bool = False
    merge_adapter: bool = False


def run(job: ResolvedJob, options: RunOptions | None = None, stop: StopSignal | None = None) -> RunResult:
    """Train the job in this process; returns the exit code and the final report.

    ``stop`` is a StopSignal the caller installed before the slow imports (torch, transformers),
    so a SIGTERM that arrives while the process is still starting is not lost."""
    options = options or RunOptions()
    topology = topology_from_env()
    if not topology.is_main:
        log.setLevel(logging.WARNING)  # one process tells the story; the others speak up on problems
    reporter = Reporter(
        serve=options.serve_reports and topology.is_main,
        port=job.report_port,
        metrics_log=Path(job.checkpoint_dir) / METRICS_LOG if topology.is_main else None,
        # One termination message per pod: the first process of each.
        termination_log="auto" if topology.local_rank == 0 else None,
        memory=_memory_reader(job.use_gpu),
        progress_bar=options.progress_bar and topology.is_main,
    )
    if stop is None:
        stop = StopSignal()
        stop.install()
    try:
        try:
            reporter.start()
        except OSError as error:
            raise ConfigurationError(
                f"cannot serve /progress and /metrics on port {job.report_port}: {error}", field="reportPort"
            ) from error
        if reporter.port is not None:
            log.info("progress at http://localhost:%d/progress, metrics at /metrics", reporter.port)
        outcome = _train(job, topology, reporter, stop, options)
        report = reporter.finish(outcome.state, reason=outcome.reason, message=outcome.message)
        log.info("%s: %s", report.state, report.message)
        return RunResult(EXIT_CODES.get(outcome.state, 1), report)
    except TensorOneError as error:
        reason = type(error).__name__
        report = reporter.finish(TrainerState.failed, reason=reason, message=str(error))
        log.error("%s: %s", reason, error)
        return RunResult(3 if isinstance(error, DataError) else 2, report)
    except Exception as error:
        report = reporter.finish(TrainerState.failed, reason=type(error).__name__, message=str(error)[:2000])
        log.error("training failed:\n%s", traceback.format_exc())
        return RunResult(1, report)
    finally:
        stop.restore()
        reporter.close()
        distributed.stop()


def _train(job: ResolvedJob, topology: Topology, reporter: Reporter, stop: StopSignal, options: RunOptions) -> Outcome:
    settings = settings_from_job(job, cuda_available=torch.cuda.is_available())
    if options.merge_adapter and settings.strategy != Strategy.lora:
        raise ConfigurationError(f"merging applies to strategy lora only, not {settings.strategy}", field="--merge")
    training = settings.training
    device = distributed.device_for(topology, settings.use_gpu)
    distributed.start(topology, device)
    store = CheckpointStore(settings.checkpoint_dir, topology)
    store.clean_up()
    distributed.barrier(topology)
    # Every process looks (so a missing id fails everywhere alike), then rank 0's choice is taken,
    # in case their views of the shared folder differ for a moment.
    found = store.find(settings.resume_from)
    chosen = distributed.broadcast(found.id if found is not None else None, topology)
    resume = store.find(chosen) if chosen is not None else None

    task = task_for(settings)
    data = task.load_data()
    log.info("data: %s", data.description)
    if data.bad_rows:
        log.warning("%d bad rows skipped; first: %s", data.bad_rows, "; ".join(data.first_bad_rows))
    reporter.event("data", rows=data.total_rows, badRows=data.bad_rows, firstBadRows=data.first_bad_rows)
    # The same seed on every process gives every process the same initial adapter weights.
    random.seed(training.seed)
    torch.manual_seed(training.seed)
    model = task.load_model(device)
    plan = DataPlan(
        examples=list(data.train),
        seed=training.seed,
        batch_size=training.batch_size,
        accumulation=training.gradient_accumulation_steps,
        rank=topology.rank,
        world_size=topology.world_size,
    )
    total_steps = training.max_steps or training.epochs * plan.steps_per_epoch
    total_epochs = -(-total_steps // plan.steps_per_epoch)
    optimizer = build_optimizer((p for p in model.parameters() if p.requires_grad), training)
    schedule = build_schedule(optimizer, training, total_steps)
    precision = Precision(settings.optimization.mixed_precision, device)
    # Then a different stream per process, so dropout masks differ between processes.
    torch.manual_seed(training.seed + topology.rank)

    step, position = 0, DataPosition(epoch=0, step_in_epoch=0)
    if resume is not None:
        state = store.load(resume, strategy=str(settings.strategy), base_model=settings.base_model)
        task.load_weights(model, store.model_dir(resume))
        optimizer.load_state_dict(state.optimizer)
        schedule.load_state_dict(state.schedule)
        precision.scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng)
        step, position = resume.step, resume.position
        reporter.tracker.load_state_dict(state.trainer, step=step, epoch=min(position.epoch + 1, total_epochs))
        reporter.checkpoints([m.to_report() for m in store.checkpoints()])
        log.info("resuming from %s (step %d)", resume.id, step)

    objective = task.objective(model)
    replica = objective
    if topology.is_distributed:
        replica = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    reporter.plan(total_epochs=total_epochs, total_steps=total_steps, step=step)
    reporter.running(resumed_from=resume.id if resume is not None else None)
    return train(
        Training(
            settings=settings,
            topology=topology,
            device=device,
            task=task,
            model=model,
            objective=objective,
            replica=replica,
            optimizer=optimizer,
            schedule=schedule,
            precision=precision,
            plan=plan,
            eval_examples=list(data.eval),
            store=store,
            reporter=reporter,
            stop=stop,
            total_epochs=total_epochs,
            total_steps=total_steps,
            merge_adapter=options.merge_adapter,
            step=step,
            position=position,
            last_checkpoint=resume,
        )
    )


def _memory_reader(use_gpu: bool) -> Callable[[], int | None]:
    """Peak accelerator memory on GPUs (no device sync), peak host RSS on CPUs."""
    if use_gpu:
        return lambda: int(torch.cuda.max_memory_allocated())
    return host_peak_rss_bytes
