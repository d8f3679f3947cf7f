"""The order in which examples are seen: a pure function of (seed, epoch, number of processes).

Exact resume rests on this module. Every process computes the same plan with no communication:
the epoch's permutation comes from a generator seeded with (seed, epoch), it is split across
processes the way torch's DistributedSampler does (padded by repeating from the start so every
process gets as many examples, then every world_size-th), cut into micro-batches of batchSize,
and grouped into optimizer steps of gradientAccumulationSteps micro-batches (the last step of an
epoch may have fewer). A checkpoint then only needs (epoch, step in epoch) to find its place.

Because each process knows the whole plan, it also knows the number of supervised tokens of an
optimizer step over all processes, so the loss is normalised by the true global count without a
collective call.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Example(Protocol):
    """What the plan needs of an example: what it weighs in the loss and in throughput."""

    @property
    def num_targets(self) -> int:
        """Loss terms it contributes (supervised tokens, for text)."""
        ...

    @property
    def num_tokens(self) -> int:
        """Tokens (or other units) it costs."""
        ...

    def content(self) -> bytes:
        """Bytes that differ whenever the example does (what a checkpoint's data fingerprint hashes)."""
        ...


@dataclass(frozen=True)
class PlannedStep:
    """One optimizer step: this process's micro-batches and the totals over every process."""

    micro_batches: list[list[int]]  # example indices, per micro-batch, for this process
    global_targets: int  # supervised tokens in the step, all processes
    global_tokens: int  # tokens in the step, all processes
    global_samples: int  # examples in the step, all processes


@dataclass(frozen=True)
class DataPlan:
    """How examples are ordered, sharded and batched, epoch after epoch."""

    examples: Sequence[Example]
    seed: int
    batch_size: int
    accumulation: int
    rank: int = 0
    world_size: int = 1

    @property
    def examples_per_process(self) -> int:
        return math.ceil(len(self.examples) / self.world_size)

    @property
    def micro_batches_per_epoch(self) -> int:
        return math.ceil(self.examples_per_process / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / self.accumulation)

    def order(self, epoch: int) -> list[int]:
        """The epoch's permutation of every example index (the same on every process)."""
        order = list(range(len(self.examples)))
        random.Random(f"tensorone-order:{self.seed}:{epoch}").shuffle(order)
        return order

    def shard(self, epoch: int, rank: int) -> list[int]:
        """The example indices one process sees in an epoch, in order."""
        order = self.order(epoch)
        padded = order + order[: self.examples_per_process * self.world_size - len(order)]
        return padded[rank :: self.world_size]

    def steps(self, epoch: int) -> list[PlannedStep]:
        """The epoch's optimizer steps, for this process."""
        per_rank = [self._micro_batches(self.shard(epoch, rank)) for rank in range(self.world_size)]
        steps: list[PlannedStep] = []
        for first in range(0, self.micro_batches_per_epoch, self.accumulation):
            chunk = slice(first, first + self.accumulation)
            everyone = [index for batches in per_rank for batch in batches[chunk] for index in batch]
            steps.append(
                PlannedStep(
                    micro_batches=per_rank[self.rank][chunk],
                    global_targets=sum(self.examples[i].num_targets for i in everyone),
                    global_tokens=sum(self.examples[i].num_tokens for i in everyone),
                    global_samples=len(everyone),
                )
            )
        return steps

    def _micro_batches(self, indices: list[int]) -> list[list[int]]:
        return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]


def eval_batches(count: int, batch_size: int, rank: int, world_size: int) -> list[list[int]]:
    """The evaluation examples one process scores: every world_size-th, in batches (no padding, so
    each example counts once)."""
    mine = list(range(rank, count, world_size))
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
