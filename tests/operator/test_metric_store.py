"""The metric store against a pod that serves whatever it likes at /metric-events: a page that
breaks a bound changes nothing; a good one reaches the job's ConfigMap, within its bounds, and a
ConfigMap of that name the job does not own is never touched."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tensorone_operator.kube import KubeApi
from tensorone_operator.metric_store import MetricStore
from tensorone_operator.observed import ObservedJob

from tensorone.api.events import MAX_PAGE_BYTES, STORE_KEY, metric_store_name, read_store
from tensorone.api.report import ProgressReport, TrainerState
from tests.factories import training_job
from tests.kube.server import EmulatorServer

STARTED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class Pod:
    """A pod's report port answering /metric-events with ``body`` (the queries it got kept)."""

    def __init__(self) -> None:
        self.body = b'{"records": []}'
        self.queries: list[str] = []
        pod = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pod.queries.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(pod.body)))
                self.end_headers()
                self.wfile.write(pod.body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def view(self) -> dict[str, Any]:
        return {"running": True, "podIP": "127.0.0.1", "reportPort": self.server.server_address[1]}


@pytest.fixture
def pod() -> Iterator[Pod]:
    served = Pod()
    yield served
    served.server.shutdown()


def steps(first: int, last: int, **fields: Any) -> bytes:
    records = [
        {"seq": s, "kind": "step", "step": s, "time": "2026-12-01T10:00:01Z", "loss": 1.0, "gradNorm": 0.5, **fields}
        for s in range(first, last + 1)
    ]
    return json.dumps({"records": records}).encode()


def report(step: int) -> ProgressReport:
    return ProgressReport(state=TrainerState.running, step=step, total_steps=100, started_at=STARTED)


async def test_hostile_pages_change_nothing_and_a_good_one_is_stored(cluster: EmulatorServer, pod: Pod) -> None:
    api = KubeApi(cluster.url, {}, False)
    store = MetricStore(api)
    job = ObservedJob.parse(cluster.api.create(training_job()))
    try:
        hostile = [steps(1, 3, loss=float("nan")), steps(1, 3, gradNorm=1e300), b"x" * (MAX_PAGE_BYTES + 10), b"[1,2"]
        for number, body in enumerate(hostile, start=1):
            pod.body = body
            await store.read(job.key, pod.view, report(number))
            assert store.refusal(job.key) and store.pending(job.key) == []
        assert not await store.write(job, final=True)
        assert cluster.api.find("v1", "ConfigMap", metric_store_name("llama")) is None

        pod.body = steps(1, 3)
        await store.read(job.key, pod.view, report(3))
        assert store.refusal(job.key) is None and [r.step for r in store.pending(job.key)] == [1, 2, 3]
        await store.read(job.key, pod.view, report(3))  # no progress: the pod is not asked again
        assert len(pod.queries) == 5 and pod.queries[-1].endswith("after=0&limit=1000")
        assert await store.write(job)
        stored = cluster.api.get("v1", "ConfigMap", metric_store_name("llama"))
        assert [r.step for r in read_store(stored["data"][STORE_KEY])] == [1, 2, 3]
        assert stored["metadata"]["ownerReferences"][0]["uid"] == job.uid

        pod.body = steps(4, 5)
        await store.read(job.key, pod.view, report(5))
        assert pod.queries[-1].endswith("after=3&limit=1000")
        assert not await store.write(job)  # written less than 30 s ago: kept for later
        assert await store.write(job, final=True)  # the job ended: written now
        stored = cluster.api.get("v1", "ConfigMap", metric_store_name("llama"))
        assert [r.step for r in read_store(stored["data"][STORE_KEY])] == [1, 2, 3, 4, 5]
    finally:
        await store.close()
        await api.close()


async def test_a_configmap_of_that_name_the_job_does_not_own_is_left_alone(cluster: EmulatorServer, pod: Pod) -> None:
    api = KubeApi(cluster.url, {}, False)
    store = MetricStore(api)
    job = ObservedJob.parse(cluster.api.create(training_job()))
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": metric_store_name("llama")}}
    cluster.api.create({**foreign, "data": {STORE_KEY: "theirs"}})
    try:
        pod.body = steps(1, 2)
        await store.read(job.key, pod.view, report(2))
        assert not await store.write(job, final=True)
        assert cluster.api.get("v1", "ConfigMap", metric_store_name("llama"))["data"] == {STORE_KEY: "theirs"}
    finally:
        await store.close()
        await api.close()
