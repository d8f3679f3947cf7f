"""The reconciler's own bookkeeping (its handlers' behaviour is tested through the running
operator in the other test modules)."""

from __future__ import annotations

import asyncio

from tensorone_operator.reconcile import JobLocks


def test_a_job_lock_serialises_its_job_and_is_dropped_when_idle() -> None:
    async def scenario() -> tuple[list[str], int, int]:
        locks = JobLocks()
        order: list[str] = []
        first_in = asyncio.Event()

        async def hold(key: tuple[str, str], label: str, wait: asyncio.Event | None) -> None:
            async with locks.held(key):
                order.append(f"{label} in")
                first_in.set()
                if wait is not None:
                    await wait.wait()
                order.append(f"{label} out")

        release = asyncio.Event()
        first = asyncio.create_task(hold(("ns", "a"), "first", release))
        await first_in.wait()
        second = asyncio.create_task(hold(("ns", "a"), "second", None))
        other = asyncio.create_task(hold(("ns", "b"), "other", None))
        await other  # another job's lock is not held up
        await asyncio.sleep(0)
        during = len(locks)
        release.set()
        await asyncio.gather(first, second)
        return order, during, len(locks)

    order, during, after = asyncio.run(scenario())
    assert order == ["first in", "other in", "other out", "first out", "second in", "second out"]
    assert during == 1 and after == 0


def test_a_cancelled_wait_for_a_job_lock_leaves_nothing_behind() -> None:
    async def scenario() -> int:
        locks = JobLocks()
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with locks.held(("ns", "a")):
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        waiter = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        release.set()
        await holder
        return len(locks)

    assert asyncio.run(scenario()) == 0
