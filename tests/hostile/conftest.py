"""Tenants on one cluster: the emulator, the operator as deployed (its own process), and a node
whose pods run a fake custom image (tests/hostile/image/reporter.py) that serves, for each job,
the /progress answer the test writes into that job's control file.

One cluster serves the whole module: a normal tenant's job in ``team-b`` beside hostile tenants'
jobs in ``team-a``, all running at once, so every hostile answer is in flight while the normal
job's status lag, the operator's memory and its liveness are measured.
"""

from __future__ import annotations

import json
import re
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.factories import API, REPO, dataset, gpu_node, training_job
from tests.kube.node import LocalNode
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.process import OperatorProcess

IMAGE = "registry.example.com/tenant/reporter:1.0"
IMAGE_FOLDER = Path(__file__).parent / "image"
HOSTILE_NAMESPACE = "team-a"
NORMAL_NAMESPACE = "team-b"
POLL_SECONDS = 1.0
# How often the normal job's fake trainer finishes a step, and how often the test samples its status.
STEP_SECONDS = 0.1
SAMPLE_SECONDS = 0.05
CHART_VALUES = REPO / "charts" / "tensorone-training-operator" / "values.yaml"


def chart_memory_limit_mb() -> float:
    """The operator's memory limit in the chart's default values, in MiB."""
    limit = yaml.safe_load(CHART_VALUES.read_text())["resources"]["limits"]["memory"]
    found = re.fullmatch(r"(\d+)(Mi|Gi)", limit)
    assert found, f"the chart's memory limit {limit!r} is not in Mi or Gi"
    return float(found.group(1)) * (1024 if found.group(2) == "Gi" else 1)


def reporter_job(name: str, namespace: str) -> dict[str, Any]:
    """A custom job running the fake image, which reads ``/control/<namespace>-<name>.json``;
    one GPU-priced worker, so its usage and cost move while it runs; no restart."""
    custom = {
        "image": IMAGE,
        "command": ["python", "/app/reporter.py"],
        "args": [f"/control/{namespace}-{name}.json"],
        "progressPort": 9500,
    }
    return training_job(
        name,
        namespace,
        modelType="custom",
        datasetId="chat",
        gpuType="a100",
        gpusPerWorker=8,
        maxRestarts=0,
        config={"training": {"epochs": 1}, "custom": custom},
    )


@dataclass
class LagSampler:
    """Samples a job's status and the operator's liveness endpoint in a thread.

    ``steps`` holds when each new ``progress.currentStep`` was first seen; ``liveness`` the time
    each liveness request took."""

    tenants: Tenants
    namespace: str
    name: str
    steps: list[tuple[float, int]] = field(default_factory=list)
    liveness: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="lag-sampler", daemon=True).start()
        threading.Thread(target=self._probe_liveness, name="liveness-probe", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        last = -1
        while not self._stop.wait(SAMPLE_SECONDS):
            step = int((self.tenants.status(self.namespace, self.name).get("progress") or {}).get("currentStep", -1))
            if step > last:
                self.steps.append((time.time(), step))
                last = step

    def _probe_liveness(self) -> None:
        while not self._stop.wait(0.5):
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.tenants.operator.liveness, timeout=30):
                    pass
            except OSError:
                self.liveness.append(float("inf"))
                continue
            self.liveness.append(time.monotonic() - started)

    def lags(self, started_at: float, since: float, until: float) -> list[float]:
        """For every step reached between ``since`` and ``until``: the seconds from when the
        trainer reached it (``started_at`` + step x STEP_SECONDS) to the first sampled status
        showing it."""
        lags = []
        previous = None
        for seen_at, step in self.steps:
            if previous is not None:
                for reached in range(previous + 1, step + 1):
                    reached_at = started_at + reached * STEP_SECONDS
                    if since <= reached_at < until:
                        lags.append(seen_at - reached_at)
            previous = step
        return lags


def p99(values: list[float]) -> float:
    """The 99th percentile of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]


@dataclass
class Tenants:
    """The cluster, with the verbs the hostile suite uses."""

    server: EmulatorServer
    node: LocalNode
    operator: OperatorProcess
    control_dir: Path
    sampler: LagSampler | None = None

    def control(self, namespace: str, name: str, **control: Any) -> None:
        """Replace what the job's fake image does next (see tests/hostile/image/reporter.py)."""
        path = self.control_dir / f"{namespace}-{name}.json"
        draft = path.with_suffix(".draft")
        draft.write_text(json.dumps(control))
        draft.replace(path)  # whole: the image never reads half a file

    def start_job(self, namespace: str, name: str, **control: Any) -> None:
        self.control(namespace, name, **control)
        self.server.api.create(reporter_job(name, namespace))

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        return self.server.api.get(API, "TrainingJob", name, namespace).get("status") or {}

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any]:
        return next((c for c in self.status(namespace, name).get("conditions") or [] if c["type"] == kind), {})

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.server.api.list("v1", "Event", namespace)
            if (e.get("involvedObject") or {}).get("name") == name
        ]

    def report_url(self, namespace: str, name: str) -> str:
        """Where the job's rank-0 pod serves /progress (its pod IP and report port)."""
        pod = wait_for(lambda: self.server.api.find("v1", "Pod", f"{name}-master-0", namespace), f"{name}'s pod")
        ports = pod["spec"]["containers"][0]["ports"]
        port = next(p["containerPort"] for p in ports if p["name"] == "report")
        return f"http://{pod['status']['podIP']}:{port}/progress"

    def started_at(self, namespace: str, name: str) -> float:
        """When the job's fake trainer started stepping (it prints it first thing)."""
        found = wait_for(
            lambda: re.search(r"started (\S+)", self.node.pod_log(namespace, name)), f"{name}'s start line"
        )
        return float(found.group(1))

    def explain(self, namespace: str, name: str) -> str:
        return (
            f"status: {json.dumps(self.status(namespace, name))[:2000]}\n"
            f"pod log: {self.node.pod_log(namespace, name)[-1000:]}\noperator log: {self.operator.log()[-2000:]}"
        )


def summary(values: list[float]) -> str:
    if not values:
        return "no steps"
    return f"p50 {statistics.median(values):.2f} s, p99 {p99(values):.2f} s, max {max(values):.2f} s"


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    workdir = tmp_path_factory.mktemp("hostile")
    control_dir = workdir / "control"
    control_dir.mkdir()
    images = {IMAGE: {"/app": IMAGE_FOLDER, "/control": control_dir}}
    with EmulatorServer() as server, LocalNode(server, workdir / "node", images=images) as node:
        server.api.create(gpu_node())
        for namespace in (HOSTILE_NAMESPACE, NORMAL_NAMESPACE):
            server.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            server.api.create(dataset(namespace=namespace))
        with OperatorProcess(server.url, workdir / "operator", {"progressPollSeconds": POLL_SECONDS}) as operator:
            tenants = Tenants(server, node, operator, control_dir)
            try:
                yield tenants
            finally:
                if tenants.sampler is not None:
                    tenants.sampler.stop()
        assert node.errors == [], node.errors
