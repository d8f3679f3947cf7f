"""ServiceThread: a service that fails to start is reported by start(), not lost in its thread."""

from __future__ import annotations

import threading

import pytest

from tests.kube.threads import ServiceThread


class Service(ServiceThread):
    """A service that serves until stopped, fails as it starts, or never becomes ready."""

    thread_name = "test-service"

    def __init__(self, fail_on_start: bool = False, ready: bool = True) -> None:
        super().__init__()
        self.fail_on_start = fail_on_start
        self.becomes_ready = ready
        self._stop_flag = threading.Event()

    def _serve(self) -> None:
        if self.fail_on_start:
            raise OSError("address in use")
        if self.becomes_ready:
            self._ready.set()
        self._stop_flag.wait()

    def _request_stop(self) -> None:
        self._stop_flag.set()


def test_a_service_runs_in_its_thread_until_stopped() -> None:
    with Service() as service:
        assert service._thread is not None and service._thread.is_alive()
        assert service._thread.name == "test-service" and service._thread.daemon
    assert not service._thread.is_alive()


def test_a_failure_before_ready_is_raised_by_start() -> None:
    with pytest.raises(RuntimeError, match="test-service failed to start: OSError") as raised:
        Service(fail_on_start=True).start(timeout=5)
    assert isinstance(raised.value.__cause__, OSError)


def test_a_service_never_ready_times_out() -> None:
    service = Service(ready=False)
    with pytest.raises(TimeoutError, match=r"test-service was not ready within 0\.1 s"):
        service.start(timeout=0.1)
    service.stop()
