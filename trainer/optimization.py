"""The optimizer and the learning-rate schedule.

AdamW with decoupled weight decay on matrices only (biases and norm scales are not decayed, as is
usual for transformers), or SGD with Nesterov momentum when ``config.training.momentum`` is set.
The schedule warms up linearly from 0 to the peak over ``warmupSteps``, then follows
``lrScheduler``: linear down to 0 at the last step, half a cosine down to 0, or constant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from tensorone.api.v1alpha1.trainingjob import LrScheduler, TrainingHyperparameters


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], training: TrainingHyperparameters
) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters."""
    params = list(parameters)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": training.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if training.momentum is not None:
        return torch.optim.SGD(groups, lr=training.learning_rate, momentum=training.momentum, nesterov=True)
    # The fused kernel updates every parameter in one pass (CPU and CUDA, floating point).
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=training.learning_rate, fused=fused)


def learning_rate_factor(step: int, *, warmup_steps: int, total_steps: int, schedule: LrScheduler) -> float:
    """The multiple of the peak learning rate used for optimizer step ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == LrScheduler.constant:
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == LrScheduler.cosine:
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def build_schedule(
    optimizer: torch.optim.Optimizer, training: TrainingHyperparameters, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule; one ``step()`` after each optimizer step."""
    schedule = LrScheduler(training.lr_scheduler)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: learning_rate_factor(
            step, warmup_steps=training.warmup_steps, total_steps=total_steps, schedule=schedule
        ),
    )
