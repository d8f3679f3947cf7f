"""Stopping on a signal: SIGTERM (Kubernetes deleting or suspending the pod) or SIGINT (Ctrl-C).

The handler only records the request; the loop looks at it after each optimizer step, saves a
checkpoint (reason ``stop``) and returns, so the process exits 0 well within the pod's grace period
(the default is 30 s: a step plus one checkpoint must fit in it). A second Ctrl-C interrupts at
once, for an impatient person at a terminal.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopSignal:
    """Whether a stop was asked for, and by which signal."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def install(self) -> None:
        """Catch SIGTERM and SIGINT (only possible from the main thread; elsewhere, a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put the previous handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.signal_name = self.signal_name or signal.Signals(signum).name
