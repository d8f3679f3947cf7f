"""Run the real operator (kopf, every handler of tensorone_operator.main) in a background thread
against an emulator, with its own stop flag: the fixture API of the operator tests, the system
tests and bench/.

    with EmulatorServer() as cluster, OperatorThread(cluster, config) as operator:
        cluster.api.create(...)

kopf runs its own event loop in the thread (the notes explain why it must not share pytest's).
Each thread has its own registry (the operator's handlers for its configuration, and a login
handler pointing kopf at the emulator) and its own ``Reconciler``, whose API client points at the
emulator too (the kubernetes library reads KUBECONFIG once, at import, so the environment cannot
point a running process at a new server).
"""

from __future__ import annotations

import threading
from typing import Any

import kopf
from tensorone_operator.config import OperatorConfig
from tensorone_operator.kube import KubeApi
from tensorone_operator.main import post_event, register
from tensorone_operator.reconcile import Reconciler

from tests.kube.server import EmulatorServer
from tests.kube.threads import ServiceThread


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
        self.reconciler = Reconciler(
            self.config, KubeApi(cluster.url, {}, False), post_event, nodes_indexed=not self.namespaces
        )
        self.registry = register(self.config, kopf.OperatorRegistry())
        kopf.on.login(registry=self.registry)(self.login)
        self._stop_flag = threading.Event()

    def login(self, **_: Any) -> kopf.ConnectionInfo:
        """kopf's credentials: the emulator (it needs none)."""
        return kopf.ConnectionInfo(server=self.cluster.url)

    def _serve(self) -> None:
        kopf.run(  # sets the ready flag once its watches are being established
            standalone=True,
            clusterwide=not self.namespaces,
            namespaces=self.namespaces,
            stop_flag=self._stop_flag,
            ready_flag=self._ready,
            registry=self.registry,
            memo=kopf.Memo(reconciler=self.reconciler),
        )

    def _request_stop(self) -> None:
        self._stop_flag.set()
