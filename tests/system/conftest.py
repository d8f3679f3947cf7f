"""A whole cluster on this machine: the emulator, the real operator, and a node running the real
trainer for every PyTorchJob or TrainJob the operator creates.

``backend`` says which child the operator makes (pytorchjob unless a test module overrides the
fixture, as test_live_status.py does to run its tests on both); with trainjob the cluster has the
ClusterTrainingRuntimes the chart installs (``builders.build_runtimes``)."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from tensorone_operator.builders import CHILD_KINDS, build_runtimes
from tensorone_operator.config import ChildBackend, OperatorConfig

from tests.factories import API
from tests.kube.node import LocalNode
from tests.kube.server import EmulatorServer
from tests.operator.runner import OperatorThread

POLL_SECONDS = 0.5


# A wait that spans a whole training run (a job of a few dozen steps, or two side by side): what
# it takes on two cores that another process keeps busy, with room to spare.
TRAINING_TIMEOUT = 600.0


@dataclass
class LocalCluster:
    """The emulator, the operator and the node, with the verbs the tests use."""

    server: EmulatorServer
    node: LocalNode
    operator: OperatorThread
    config: OperatorConfig

    def apply(self, obj: dict[str, Any]) -> None:
        self.server.api.create(obj)

    def job(self, name: str) -> dict[str, Any]:
        return self.server.api.get(API, "TrainingJob", name)

    def status(self, name: str) -> dict[str, Any]:
        return self.job(name).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.server.api.patch(API, "TrainingJob", name, {"spec": spec})

    def phase_is(self, name: str, phase: str) -> dict[str, Any] | None:
        """The status once its phase is ``phase``; a job that ended otherwise fails the test at once."""
        status = self.status(name)
        if status.get("phase") in ("Failed", "Cancelled") and phase not in ("Failed", "Cancelled"):
            pytest.fail(f"{name} ended {status['phase']}: {status.get('message')}\n{self.log(name)}")
        return status if status.get("phase") == phase else None

    def child(self, name: str) -> dict[str, Any] | None:
        """The job's PyTorchJob or TrainJob (the backend's), None when there is none."""
        kind = CHILD_KINDS[self.config.backend]
        return self.server.api.find(kind.api_version, kind.kind, name)

    def child_suspended(self, name: str) -> bool:
        """Whether the operator has suspended the job's child (a stop has reached it)."""
        child = self.child(name)
        assert child is not None, f"no child of {name}"
        if child["kind"] == "TrainJob":
            return bool(child["spec"].get("suspend"))
        return bool(child["spec"]["runPolicy"].get("suspend"))

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """The job's pod processes (launcher, torchrun, workers) frozen with SIGSTOP for the block,
        as on a node too busy to run them: what the block does happens mid-run however fast or slow
        the machine is. SIGCONT at the end; a signal sent meanwhile is delivered then."""
        roots = [psutil.Process(pod.process.pid) for pod in self.node.runs[("default", name)].pods]
        frozen = [process for root in roots for process in (root, *root.children(recursive=True))]
        for process in frozen:
            process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for process in reversed(frozen):
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGCONT)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.server.api.list("v1", "Event", "default")
            if (e.get("involvedObject") or {}).get("name") == name
            and (e.get("involvedObject") or {}).get("kind") == "TrainingJob"
        ]

    def diagnose(self, name: str) -> str:
        """What the operator and the node know of a job, for a failure message."""
        key = ("default", name)
        reconciler = self.operator.reconciler
        status = self.status(name)
        lines = [f"status: {json.dumps({k: status.get(k) for k in ('phase', 'progress', 'checkpoints')})}"]
        if reconciler is None:  # a restarted operator before its start-up handler has run
            lines.append("operator: no Reconciler yet")
        else:
            lines += [f"kept report: {reconciler.reports.latest(key)!r}", f"pod view: {reconciler.reports.pod(key)!r}"]
        lines.append(f"log: {self.log(name)[-800:]}")
        return "\n".join(lines)

    def log(self, name: str) -> str:
        return self.node.pod_log("default", name)[-3000:]

    def restart_operator(self) -> None:
        self.operator.stop()
        self.operator = OperatorThread(self.server, self.config)
        self.operator.start()


@contextlib.contextmanager
def local_cluster(tmp_path: Path, config: OperatorConfig) -> Iterator[LocalCluster]:
    """A cluster whose operator runs with ``config``."""
    with EmulatorServer() as server, LocalNode(server, tmp_path / "node") as node:
        if ChildBackend.trainjob in config.backends():
            for runtime in build_runtimes(config):
                server.api.create(runtime)
        operator = OperatorThread(server, config)
        operator.start()
        local = LocalCluster(server, node, operator, config)
        try:
            yield local
        finally:
            local.operator.stop()
        assert node.errors == [], node.errors


@pytest.fixture
def backend() -> ChildBackend:
    """The child kind of the cluster's jobs (a test module may run its tests on both)."""
    return ChildBackend.pytorchjob


@pytest.fixture
def cluster(tmp_path: Path, backend: ChildBackend) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path, OperatorConfig(progress_poll_seconds=POLL_SECONDS, backend=backend)) as local:
        yield local
