"""One trainer process from start to exit code: the recipe (recipe.py), the loop, and how it ended.

The exit codes are ``tensorone.api.exit_codes.ExitCode``: 0 completed or stopped, 2
configuration, 3 data, 4 diverged, 5 checkpoint not found or damaged, 6 not implemented, 138
unexpected (retried).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from tensorone.api.exit_codes import ExitCode, exit_code_for
from tensorone.api.report import ProgressReport, TrainerState
from tensorone.api.resolved import METRICS_LOG, ResolvedJob
from tensorone.errors import ConfigurationError, TensorOneError
from tensorone.reporting.client import Reporter, host_peak_rss_bytes
from trainer import distributed, recipe
from trainer.capabilities import refuse_unsupported
from trainer.distributed import Topology, topology_from_env
from trainer.loop import Outcome, train_remaining_steps
from trainer.signals import StopSignal
from trainer.tasks import task_for
from trainer.tracking import start_tracking

log = logging.getLogger("trainer")

EXIT_CODES = {
    TrainerState.completed: ExitCode.COMPLETED,
    TrainerState.stopped: ExitCode.COMPLETED,
    TrainerState.diverged: ExitCode.DIVERGED,
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
        outcome = _train_job(job, topology, reporter, stop, options)
        report = reporter.finish(outcome.state, reason=outcome.reason, message=outcome.message)
        log.info("%s: %s", report.state, report.message)
        return RunResult(EXIT_CODES.get(outcome.state, ExitCode.UNEXPECTED), report)
    except TensorOneError as error:
        reason = type(error).__name__
        report = reporter.finish(TrainerState.failed, reason=reason, message=str(error))
        log.error("%s: %s", reason, error)
        return RunResult(exit_code_for(error), report)
    except Exception as error:
        report = reporter.finish(TrainerState.failed, reason=type(error).__name__, message=str(error)[:2000])
        log.error("training failed:\n%s", traceback.format_exc())
        return RunResult(ExitCode.UNEXPECTED, report)
    finally:
        stop.restore()
        reporter.close()
        distributed.stop()


def _train_job(
    job: ResolvedJob, topology: Topology, reporter: Reporter, stop: StopSignal, options: RunOptions
) -> Outcome:
    """The recipe, step by step, then the loop."""
    refuse_unsupported(job, cuda_available=torch.cuda.is_available(), merge_adapter=options.merge_adapter)
    placement = recipe.join_processes(job, topology)
    store, choice = recipe.setup_checkpoints(job, topology, reporter)
    checkpoint = choice.checkpoint
    task = task_for(job)
    data = recipe.load_data(task, reporter)
    plan = recipe.plan_data(job, data.train, topology)
    length = recipe.run_length(job, plan)
    # Before the model loads, so an unreachable tracker fails the start in seconds, not minutes.
    start_tracking(
        job,
        reporter,
        is_main=topology.is_main,
        resumed_step=checkpoint.step if checkpoint is not None else 0,
        total_steps=length.total_steps,
        world_size=topology.world_size,
    )
    model = recipe.setup_model(job, task, placement)
    updates = recipe.setup_optimizer(job, model, placement.device, length.total_steps)
    training_run = recipe.training_run(
        job,
        placement=placement,
        task=task,
        model=model,
        updates=updates,
        plan=plan,
        eval_examples=data.eval,
        store=store,
        reporter=reporter,
        stop=stop,
        length=length,
        merge_adapter=options.merge_adapter,
    )
    if checkpoint is not None:
        recipe.resume(training_run, checkpoint)
    recipe.share_between_processes(training_run)
    reporter.plan(total_epochs=length.total_epochs, total_steps=length.total_steps, step=training_run.step)
    reporter.running(resumed_from=checkpoint.id if checkpoint is not None else None)
    recipe.report_notices(reporter, choice, task.notices())
    return train_remaining_steps(training_run)


def _memory_reader(use_gpu: bool) -> Callable[[], int | None]:
    """Peak accelerator memory on GPUs (no device sync), peak host RSS on CPUs."""
    if use_gpu:
        return lambda: int(torch.cuda.max_memory_allocated())
    return host_peak_rss_bytes
