"""Services the tests run in a daemon thread of their own: the emulator's HTTP server
(``EmulatorServer``) and the real operator (``OperatorThread``).

Each service runs its own event loop in its thread, so the code under test never shares a loop
with pytest's or with another service's. ``ServiceThread`` holds what they have in common: the
context manager, a start that returns once the service is ready (or raises what it failed with,
instead of letting a test time out on a service that never ran), and a stop that asks the service
to end and joins its thread.
"""

from __future__ import annotations

import abc
import threading
from types import TracebackType
from typing import ClassVar, Self


class ServiceThread(abc.ABC):
    """A service run by ``_serve`` in a daemon thread; subclasses say how it runs and stops."""

    thread_name: ClassVar[str]

    def __init__(self) -> None:
        # Set by the service once it serves (kopf takes it as its ready flag), and by the thread
        # when the service ends, so start() never waits for a service that is gone.
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30) -> None:
        """Start the thread and return once the service is ready.

        Raises RuntimeError (caused by the service's own exception) when the service ended before
        it was ready, and TimeoutError when it was not ready within ``timeout`` seconds."""
        self._thread = threading.Thread(target=self._main, name=self.thread_name, daemon=True)
        self._thread.start()
        ready = self._ready.wait(timeout)
        if self._error is not None:
            raise RuntimeError(f"{self.thread_name} failed to start: {self._error!r}") from self._error
        if not ready:
            raise TimeoutError(f"{self.thread_name} was not ready within {timeout} s")

    def stop(self, timeout: float = 30) -> None:
        """Ask the service to end and wait for its thread (TimeoutError when it is still alive
        after ``timeout`` seconds).

        How the service ended is not raised here: kopf 1.45 on Python 3.11 sometimes ends its run
        with a TimeoutError of its own while it stops (a daemon's timed wait cut short), and a
        service that fails while a test runs fails that test's assertions anyway."""
        self._request_stop()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.thread_name} did not stop within {timeout} s")

    def _main(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # the thread has nobody to tell: start() raises it
            self._error = exc
        finally:
            self._ready.set()

    @abc.abstractmethod
    def _serve(self) -> None:
        """Run the service until it is asked to stop; set ``self._ready`` once it serves."""

    @abc.abstractmethod
    def _request_stop(self) -> None:
        """Ask the running service to end (called from another thread)."""
