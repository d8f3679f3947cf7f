"""Run the real operator (kopf, every handler of tensorone_operator.main) in a background thread
against an emulator, with its own stop flag: the fixture API of the operator tests, the system
tests and bench/.

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
from typing import Any

import kopf
import tensorone_operator.main  # noqa: F401 - registers the handlers
from tensorone_operator.config import OperatorConfig
from tensorone_operator.kube import KubeApi
from tensorone_operator.reconcile import Reconciler

from tests.kube.server import EmulatorServer
from tests.kube.threads import ServiceThread

_server: dict[str, str] = {}


@kopf.on.login()
def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials: the emulator of the running OperatorThread (it needs none)."""
    return kopf.ConnectionInfo(server=_server["url"])


class OperatorThread(ServiceThread):
    """The operator in a thread; ``stop()`` ends it like SIGTERM would (handlers are cancelled)."""

    thread_name = "tensorone-operator"

    def __init__(
        self, cluster: EmulatorServer, config: OperatorConfig | None = None, namespaces: list[str] | None = None
    ) -> None:
        super().__init__()
        self.cluster = cluster
        self.config = config or OperatorConfig(progress_poll_seconds=0.5)
        self.namespaces = namespaces or []
        self.memo = kopf.Memo(config=self.config, api=KubeApi(cluster.url, {}, False), clusterwide=not self.namespaces)
        self._stop_flag = threading.Event()

    @property
    def reconciler(self) -> Reconciler | None:
        """The operator's Reconciler, made by its start-up handler (None before that has run)."""
        reconciler = self.memo.get("reconciler")
        assert reconciler is None or isinstance(reconciler, Reconciler), type(reconciler)
        return reconciler

    def _serve(self) -> None:
        _server["url"] = self.cluster.url  # for the login handler
        kopf.run(  # sets the ready flag once its watches are being established
            standalone=True,
            clusterwide=not self.namespaces,
            namespaces=self.namespaces,
            stop_flag=self._stop_flag,
            ready_flag=self._ready,
            memo=self.memo,
        )

    def _request_stop(self) -> None:
        self._stop_flag.set()
