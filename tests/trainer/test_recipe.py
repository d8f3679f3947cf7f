"""The recipe: its steps, called one by one (as bench/trainer_speed.py calls them), set up the very
run that ``trainer.run.run`` trains."""

from __future__ import annotations

from pathlib import Path

from tensorone.reporting.client import Reporter
from tests.trainer.conftest import make_job, step_losses
from trainer import recipe
from trainer.capabilities import refuse_unsupported
from trainer.distributed import Topology
from trainer.loop import optimizer_step
from trainer.run import RunOptions, run
from trainer.signals import StopSignal
from trainer.tasks import task_for

STEPS = 3


def test_the_recipe_steps_set_up_the_run_that_run_trains(tmp_path: Path) -> None:
    whole = make_job(tmp_path / "whole", training={"maxSteps": STEPS})
    assert run(whole, RunOptions(serve_reports=False)).exit_code == 0
    expected = step_losses(Path(whole.checkpoint_dir))

    job = make_job(tmp_path / "steps", training={"maxSteps": STEPS})
    refuse_unsupported(job, cuda_available=False)
    topology = Topology()
    placement = recipe.join_processes(job, topology)
    store, choice = recipe.setup_checkpoints(job, topology)
    assert choice.checkpoint is None and choice.skipped == []
    task = task_for(job)
    data = task.load_data()
    model = recipe.setup_model(job, task, placement)
    plan = recipe.plan_data(job, data.train, topology)
    length = recipe.run_length(job, plan)
    assert length.total_steps == STEPS
    training_run = recipe.training_run(
        job,
        placement=placement,
        task=task,
        model=model,
        updates=recipe.setup_optimizer(job, model, placement.device, length.total_steps),
        plan=plan,
        eval_examples=data.eval,
        store=store,
        reporter=Reporter(serve=False, termination_log=None),
        stop=StopSignal(),
        length=length,
    )
    recipe.share_between_processes(training_run)
    assert training_run.replica is training_run.objective  # one process: nothing to share
    training_run.objective.train()

    losses = {
        step + 1: optimizer_step(training_run, planned).loss for step, planned in enumerate(plan.steps(0)[:STEPS])
    }
    assert losses == expected
    assert training_run.step == STEPS
