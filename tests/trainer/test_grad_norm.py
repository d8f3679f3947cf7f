"""The gradient norm each optimizer step reports: the total norm before clipping, measured on the
gradients the update uses, with clipping on or off."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tensorone.reporting.client import Reporter
from tests.trainer.conftest import log_events, make_job
from trainer import recipe
from trainer.distributed import Topology
from trainer.loop import TrainingRun, optimizer_step
from trainer.run import RunOptions, run
from trainer.signals import StopSignal
from trainer.tasks import task_for


def training_run(root: Path, max_grad_norm: float) -> TrainingRun:
    """A run of the tiny model set up by the recipe's steps, ready for its first optimizer step."""
    job = make_job(root, training={"maxSteps": 2}, optimization={"maxGradNorm": max_grad_norm})
    topology = Topology()
    placement = recipe.join_processes(job, topology)
    reporter = Reporter(serve=False, termination_log=None)
    store, _ = recipe.setup_checkpoints(job, topology, reporter)
    task = task_for(job)
    data = task.load_data()
    model = recipe.setup_model(job, task, placement)
    plan = recipe.plan_data(job, data.train, topology)
    length = recipe.run_length(job, plan)
    prepared = recipe.training_run(
        job,
        placement=placement,
        task=task,
        model=model,
        updates=recipe.setup_optimizer(job, model, placement.device, length.total_steps),
        plan=plan,
        eval_examples=data.eval,
        store=store,
        reporter=reporter,
        stop=StopSignal(),
        length=length,
    )
    recipe.share_between_processes(prepared)
    prepared.objective.train()
    return prepared


def norm_at_update(prepared: TrainingRun) -> list[float]:
    """The total norm of the gradients the optimizer applies, recorded at each of its steps."""
    seen: list[float] = []

    def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    prepared.optimizer.register_step_pre_hook(record)
    return seen


@pytest.mark.parametrize("max_grad_norm", [0.0, 0.05])
def test_the_step_reports_the_norm_before_clipping(tmp_path: Path, max_grad_norm: float) -> None:
    prepared = training_run(tmp_path, max_grad_norm)
    applied = norm_at_update(prepared)
    result = optimizer_step(prepared, prepared.plan.steps(0)[0])

    assert result.grad_norm is not None and math.isfinite(result.grad_norm) and result.grad_norm > 0
    if max_grad_norm == 0:  # no clipping: the update uses the gradients as measured
        assert result.grad_norm == pytest.approx(applied[0], rel=1e-5)
    else:  # clipped to the maximum; the report still says how large they were
        assert result.grad_norm > max_grad_norm
        assert applied[0] == pytest.approx(max_grad_norm, rel=1e-4)


def test_every_step_of_the_metrics_log_has_its_gradient_norm(tmp_path: Path) -> None:
    job = make_job(tmp_path, training={"maxSteps": 3})
    assert run(job, RunOptions(serve_reports=False)).exit_code == 0
    norms = [record["gradNorm"] for record in log_events(tmp_path / "checkpoints", "step")]
    assert len(norms) == 3 and all(isinstance(n, float) and n > 0 for n in norms), norms
