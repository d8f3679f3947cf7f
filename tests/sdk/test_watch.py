"""The SDK's watches against the emulator: a job, its Events and the job list followed by a watch
of the Kubernetes API, made again when the stream drops and listed anew after 410 Gone."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from tensorone import TensorOneClient
from tensorone.client import Job, Jobs, Watch
from tensorone.errors import ConfigurationError, JobNotFound
from tests.factories import API, dataset, training_job
from tests.kube.emulator import FaithfulEmulator
from tests.kube.server import EmulatorServer

TIMEOUT = 60.0


@pytest.fixture
def cluster() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        server.api.create(dataset())
        yield server


def jobs_of(cluster: EmulatorServer, namespace: str = "default") -> Jobs:
    client = TensorOneClient(namespace=namespace, api_client=k8s.ApiClient(k8s.Configuration(host=cluster.url)))
    jobs = client.training.jobs
    assert isinstance(jobs, Jobs)
    return jobs


class Follower:
    """A watch iterated in a thread, as t1 watch does: what it yields lands in ``seen``."""

    def __init__(self, watch: Watch[Any]) -> None:
        self.watch = watch
        self.seen: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for value in self.watch:
                self.seen.put(value)
        except Exception as error:
            self.seen.put(error)

    def next(self) -> Any:
        return self.seen.get(timeout=TIMEOUT)

    def until(self, accept: Any) -> Any:
        """The first value ``accept`` takes, skipping the ones before it."""
        while True:
            value = self.next()
            if isinstance(value, Exception) or accept(value):
                return value

    def close(self) -> None:
        self.watch.close()
        self.thread.join(timeout=TIMEOUT)
        assert not self.thread.is_alive()


def with_loss(loss: float) -> Any:
    return lambda job: isinstance(job, Job) and job.metrics.current_loss == loss


def test_a_job_is_followed_through_its_changes_and_across_a_dropped_stream(cluster: EmulatorServer) -> None:
    cluster.api.create(training_job())
    follower = Follower(jobs_of(cluster).watch("llama"))
    try:
        assert follower.next().status == "pending"
        cluster.api.patch_status(API, "TrainingJob", "llama", {"phase": "Running", "metrics": {"currentLoss": 2.0}})
        running = follower.until(with_loss(2.0))
        assert running.status == "running"  # seen through the stream, now open
        cluster.drop_watches()
        cluster.api.patch_status(API, "TrainingJob", "llama", {"metrics": {"currentLoss": 1.5}})
        assert follower.until(with_loss(1.5)).metrics.current_loss == 1.5  # the stream was made again
        cluster.api.delete(API, "TrainingJob", "llama")
        gone = follower.until(lambda value: False)
        assert isinstance(gone, JobNotFound) and "llama" in str(gone)
    finally:
        follower.close()


def test_a_compacted_history_is_listed_anew() -> None:
    with EmulatorServer(FaithfulEmulator(event_window=3)) as cluster:
        cluster.api.create(dataset())
        cluster.api.create(training_job())
        watch = jobs_of(cluster).watch("llama")
        changes = iter(watch)
        assert next(changes).status == "pending"  # listed; the watch opens at the next change asked for
        cluster.api.patch_status(API, "TrainingJob", "llama", {"phase": "Running", "metrics": {"currentLoss": 0.5}})
        for index in range(8):  # more writes than the history keeps: the job's change is compacted away
            cluster.api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{index}"}})
        # Watching from the listed version is 410 Gone; the list made anew has the change.
        assert next(changes).metrics.current_loss == 0.5
        watch.close()


def test_a_job_that_is_not_there_is_job_not_found(cluster: EmulatorServer) -> None:
    with pytest.raises(JobNotFound, match="'missing' not found in namespace 'default'"):
        next(iter(jobs_of(cluster).watch("missing")))


def test_close_ends_a_watch_waiting_in_another_thread(cluster: EmulatorServer) -> None:
    cluster.api.create(training_job())
    follower = Follower(jobs_of(cluster).watch("llama"))
    follower.next()
    follower.close()  # asserts the thread ended, long before the watch's 240 s


def test_events_and_the_job_list_are_followed(cluster: EmulatorServer) -> None:
    cluster.api.create(training_job("a"))
    cluster.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    cluster.api.create(dataset(namespace="other"))
    jobs = jobs_of(cluster)
    events = Follower(jobs.watch_events("a"))
    everywhere = Follower(jobs.watch_list(all_namespaces=True, sort="name", order="asc"))
    try:
        assert events.next() == []
        assert [job.id for job in everywhere.next()] == ["a"]
        cluster.api.create(training_job("b", "other"))
        listed = everywhere.until(lambda found: len(found) == 2)
        assert [(job.namespace, job.id) for job in listed] == [("default", "a"), ("other", "b")]
        cluster.api.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "a.1"},
                "involvedObject": {"kind": "TrainingJob", "name": "a", "namespace": "default"},
                "type": "Normal",
                "reason": "Running",
                "message": "training is running",
                "firstTimestamp": "2026-01-15T12:00:00Z",
                "lastTimestamp": "2026-01-15T12:00:00Z",
                "count": 1,
            }
        )
        [event] = events.until(lambda found: found)
        assert (event.reason, event.message, event.last_seen.isoformat()) == (
            "Running",
            "training is running",
            "2026-01-15T12:00:00+00:00",
        )
        # Only the jobs of the client's namespace without all_namespaces, and a filter applies.
        assert [job.id for job in jobs.list(all_namespaces=True).jobs] == ["b", "a"]
        assert [job.id for job in jobs.list().jobs] == ["a"]
    finally:
        events.close()
        everywhere.close()


def test_the_gateway_transport_says_a_watch_needs_the_kubernetes_api() -> None:
    client = TensorOneClient(base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="needs the Kubernetes transport"):
        client.training.jobs.watch("llama")
    with pytest.raises(ConfigurationError, match="every namespace"):
        client.training.jobs.list(all_namespaces=True)
