"""Run the real operator (kopf, every handler of tensorone_operator.main) in a background thread
against an emulator, with its own stop flag: the fixture API of the operator tests, bench/ and the
end-to-end tests of issue 6.

    with EmulatorServer() as cluster, OperatorThread(cluster, config) as operator:
        cluster.api.create(...)

kopf runs its own event loop in the thread (the notes explain why it must not share pytest's).
kopf logs in through the login handler below and the operator's own client is given in the memo,
both pointing at the emulator (the kubernetes library reads KUBECONFIG once, at import, so the
environment cannot point a running process at a new server). Importing this module registers the
login handler, which replaces kopf's default ones: import it only in tests and benchmarks.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import kopf
import tensorone_operator.main  # noqa: F401 - registers the handlers
from tensorone_operator.config import OperatorConfig
from tensorone_operator.kube import KubeApi

from tests.kube.server import EmulatorServer

_server: dict[str, str] = {}


@kopf.on.login()
def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials: the emulator of the running OperatorThread (it needs none)."""
    return kopf.ConnectionInfo(server=_server["url"])


class OperatorThread:
    """The operator in a thread; ``stop()`` ends it like SIGTERM would (handlers are cancelled)."""

    def __init__(
        self, cluster: EmulatorServer, config: OperatorConfig | None = None, namespaces: list[str] | None = None
    ) -> None:
        self.cluster = cluster
        self.config = config or OperatorConfig(progress_poll_seconds=0.5)
        self.namespaces = namespaces or []
        self.memo = kopf.Memo(config=self.config, api=KubeApi(cluster.url, {}, False), clusterwide=not self.namespaces)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> OperatorThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def reconciler(self) -> Any:
        """The operator's Reconciler (after start-up)."""
        return self.memo.get("reconciler")

    def start(self, timeout: float = 30) -> None:
        """Start and wait until kopf is ready (watches are being established)."""
        _server["url"] = self.cluster.url
        self._thread = threading.Thread(target=self._run, name="tensorone-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the operator was not ready in {timeout} s: {self._error!r}")

    def _run(self) -> None:
        try:
            kopf.run(
                standalone=True,
                clusterwide=not self.namespaces,
                namespaces=self.namespaces,
                stop_flag=self._stop,
                ready_flag=self._ready,
                memo=self.memo,
            )
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._ready.set()

    def stop(self, timeout: float = 30) -> None:
        """Stop the operator and wait for its thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the operator did not stop in {timeout} s")
