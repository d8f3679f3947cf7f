"""The optimizer and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from tensorone.api.v1alpha1.trainingjob import LrScheduler, TrainingHyperparameters
from trainer.optimization import build_optimizer, build_schedule, learning_rate_factor


def test_adamw_decays_matrices_but_not_biases_or_norms() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = build_optimizer(model.parameters(), TrainingHyperparameters(weight_decay=0.1, learning_rate=1e-3))
    assert isinstance(optimizer, torch.optim.AdamW)
    decays = {tuple(p.shape): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decays == {(4, 4): 0.1, (4,): 0.0}


def test_momentum_means_nesterov_sgd() -> None:
    optimizer = build_optimizer(torch.nn.Linear(2, 2).parameters(), TrainingHyperparameters(momentum=0.9))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (LrScheduler.constant, [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
        (LrScheduler.linear, [0.5, 1.0, 0.75, 0.5, 0.25, 0.0]),
        (
            LrScheduler.cosine,
            [0.5, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0],
        ),
    ],
)
def test_warmup_then_schedule(schedule: LrScheduler, expected: list[float]) -> None:
    factors = [learning_rate_factor(step, warmup_steps=1, total_steps=5, schedule=schedule) for step in range(6)]
    assert factors == pytest.approx(expected)


def test_the_schedule_drives_the_optimizer_learning_rate() -> None:
    training = TrainingHyperparameters(learning_rate=0.1, warmup_steps=1, lr_scheduler=LrScheduler.linear)
    optimizer = build_optimizer(torch.nn.Linear(2, 2).parameters(), training)
    schedule = build_schedule(optimizer, training, total_steps=5)
    rates = []
    for _ in range(5):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.05, 0.1, 0.075, 0.05, 0.025])
