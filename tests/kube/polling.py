"""Waiting for something the operator or the local stand-ins do in the background (a pod
starting, a status written, an Event posted, a process ending): the one polling helper of the
tests, the capture script and the benchmarks.

Tests wait on the condition itself, never on a sleep, and every wait's timeout holds on a loaded
machine: a wait ends as soon as its condition holds, so a generous timeout costs a passing test
nothing and keeps a slow one from failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Long enough for two trainer processes to start (torch import, model load) on two cores that
# another process keeps busy.
TIMEOUT = 120.0
INTERVAL = 0.05


def wait_for(
    probe: Callable[[], T | None],
    what: str = "the condition",
    timeout: float = TIMEOUT,
    explain: Callable[[], str] | None = None,
) -> T:
    """The first truthy value of ``probe``, polled every 50 ms.

    A probe returns None (or another falsy value), or raises AssertionError saying what it saw,
    until the wait is over; so the value returned is typed without the None:
    ``wait_for(lambda: cluster.phase_is(...), ...)`` is a status dict. At the timeout the error
    names ``what``, the probe's last answer, and ``explain()`` (called then, so a pod's log is the
    log of that moment, not of the start of the wait).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
            last = repr(value)
        except AssertionError as error:
            value, last = None, str(error)
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last}){detail}")
        time.sleep(INTERVAL)
