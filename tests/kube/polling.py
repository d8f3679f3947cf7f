"""Waiting for something the local stand-ins do in the background (a pod starting, a status
written, a process ending): one polling helper for the node, system and capture code."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], what: str, timeout: float = 120.0, explain: Callable[[], str] | None = None
) -> T:
    """The first truthy value of ``probe``, polled every 0.1 s; ``explain`` adds what to look at
    (called at the timeout, so a pod's log is the log of then, not of the start of the wait).

    A probe returns None (or another falsy value) until the wait is over, so the value returned
    is typed without the None: ``wait_for(lambda: cluster.phase_is(...), ...)`` is a status dict.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    detail = f"\n{explain()}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
