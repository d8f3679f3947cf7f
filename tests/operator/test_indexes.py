"""What the kopf indexes keep: a slim copy of each Dataset and child PyTorchJob, with what the
reconciler reads of it and without the bulk (inline records, pod templates, kubectl's
last-applied-configuration annotation). A job whose Dataset is inline still gets every record."""

from __future__ import annotations

import json
import threading
from typing import Any

import aiohttp.web
import kopf
import yaml
from tensorone_operator import builders, status
from tensorone_operator.config import OperatorConfig
from tensorone_operator.indexes import (
    INDEX_CHILDREN,
    INDEX_DATASETS,
    has_inline_records,
    slim_child,
    slim_dataset,
    unpacked,
)
from tensorone_operator.main import JOB_RESOURCE, LIST_CHUNK_SIZE

from tensorone.api.resolved import ResolvedJob
from tensorone.api.v1alpha1 import Dataset, Priority, TrainingJob
from tests.factories import API, training_job
from tests.kube.emulator import FaithfulEmulator
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import PYTORCHJOB, child_job, dataset, gpu_node, phase_is, play_training_operator
from tests.operator.runner import OperatorThread

# About 200 KB: kubectl's annotation (a second copy) must stay within the API server's 256 KiB.
RECORDS = [{"text": f"{index:04d} " + "x" * 995} for index in range(200)]


def applied(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as ``kubectl apply`` stores it: with a copy of itself in an annotation."""
    annotations = obj["metadata"].setdefault("annotations", {})
    annotations["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(obj)
    return obj


def size(obj: Any) -> int:
    return len(json.dumps(obj))


class IndexSnapshots:
    """What the operator's Dataset and children indexes held, as kopf passes them to handlers
    (unpacked), and the types of the values kopf held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.datasets: dict[Any, list[Any]] = {}
        self.children: dict[Any, list[Any]] = {}
        self.kept_as: set[type] = set()

    def capture(self, **kwargs: Any) -> None:
        with self.lock:
            indexes = kwargs[INDEX_DATASETS], kwargs[INDEX_CHILDREN]
            self.kept_as = {type(value) for index in indexes for values in index.values() for value in values}
            self.datasets = {key: [unpacked(v) for v in values] for key, values in kwargs[INDEX_DATASETS].items()}
            self.children = {key: [unpacked(v) for v in values] for key, values in kwargs[INDEX_CHILDREN].items()}


def test_the_running_operators_indexes_hold_slim_copies(cluster: EmulatorServer) -> None:
    operator = OperatorThread(cluster, OperatorConfig(progress_poll_seconds=0.5))
    snapshots = IndexSnapshots()
    kopf.on.event(*JOB_RESOURCE, registry=operator.registry)(snapshots.capture)
    full_dataset = cluster.api.create(applied(dataset(records=RECORDS)))
    cluster.api.create(gpu_node())
    with operator:
        cluster.api.create(training_job(gpuType="a100"))
        wait_for(lambda: child_job(cluster.api))
        play_training_operator(cluster.api, "llama", "Running", active=1)
        wait_for(lambda: phase_is(cluster.api, "Running"))
        full_child = cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")
        # Any event of the job shows the indexes as they are once the child runs.
        cluster.api.patch(API, "TrainingJob", "llama", {"metadata": {"labels": {"seen": "yes"}}})
        wait_for(lambda: snapshots.children.get(("default", "llama"), [{}])[0].get("status", {}).get("conditions"))

    with snapshots.lock:
        [indexed_dataset] = snapshots.datasets[("default", "chat")]
        [indexed_child] = snapshots.children[("default", "llama")]
    assert size(full_dataset) > 400_000 and size(indexed_dataset) < 2_000, size(indexed_dataset)
    assert indexed_dataset["spec"]["source"] == {"inline": {}} and "annotations" not in indexed_dataset["metadata"]
    assert indexed_dataset["spec"]["format"] == full_dataset["spec"]["format"]
    assert indexed_child == slim_child(full_child)
    assert size(indexed_child) * 2 < size(full_child) and "containers" not in json.dumps(indexed_child)
    assert indexed_child["status"] == full_child["status"]
    assert indexed_child["metadata"]["ownerReferences"] == full_child["metadata"]["ownerReferences"]
    # Kept packed: no parsed object of a watch event lives on in an index.
    assert snapshots.kept_as == {bytes}
    # The index kept no records, yet the trainer gets every one: the operator read the Dataset.
    config_map = cluster.api.get("v1", "ConfigMap", "llama-config")
    resolved = ResolvedJob.model_validate(yaml.safe_load(config_map["data"]["job.yaml"]))
    assert resolved.dataset.source.inline is not None and resolved.dataset.source.inline.records == RECORDS


def test_a_slim_dataset_answers_the_checks_as_the_whole_one() -> None:
    inline = applied(dataset(records=RECORDS))
    slim = slim_dataset(inline)
    assert has_inline_records(slim) and has_inline_records(inline)
    assert size(slim) < 1_000
    # A Dataset without inline records is used straight from the index: it must parse to the same.
    on_claim = applied(dataset(source={"pvc": {"claimName": "data", "path": "/chat.jsonl"}}))
    on_claim["metadata"].update(uid="uid-d", generation=3, resourceVersion="7")
    on_claim["status"] = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]
    }
    kept = Dataset.model_validate(slim_dataset(on_claim))
    whole = Dataset.model_validate(on_claim)
    assert not has_inline_records(on_claim)
    assert kept.spec == whole.spec and kept.status == whole.status
    assert kept.metadata.model_dump(exclude={"annotations"}) == whole.metadata.model_dump(exclude={"annotations"})


def test_a_slim_child_gives_the_same_drift_and_status_as_the_whole_one() -> None:
    config = OperatorConfig()
    source = Dataset.model_validate(dataset(records=RECORDS[:2]))
    job = TrainingJob.model_validate({**training_job(gpuType="a100", maxWorkers=2), "status": {}})
    job.metadata.uid = "uid-1"
    whole = builders.build_pytorchjob(job, source, config)
    whole["metadata"].update(uid="uid-c", generation=2, resourceVersion="9")
    whole["status"] = {
        "conditions": [{"type": "Running", "status": "True", "reason": "Running", "message": "running"}],
        "replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 1}},
        "startTime": "2026-01-01T00:00:00Z",
    }
    slim = slim_child(whole)
    assert size(slim) * 2 < size(whole) and "containers" not in json.dumps(slim)
    for spec_change in ({}, {"suspend": True}, {"priority": Priority.high}, {"maxRuntimeSeconds": 600}):
        changed = job.model_copy(update={"spec": job.spec.model_copy(update=spec_change)})
        assert builders.child_drift(changed, slim, config) == builders.child_drift(changed, whole, config)
    assert status.child_condition(slim, "Running") == status.child_condition(whole, "Running")
    assert status.active_replicas(slim) == status.active_replicas(whole) == 2


class ListRecordingEmulator(FaithfulEmulator):
    """The emulator, noting the query of every list of Datasets kopf asks for (not a watch)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.dataset_lists: list[dict[str, str]] = []

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        kopf = raw_request.headers.get("User-Agent", "").startswith("kopf/")
        if kopf and raw_request.path.endswith("/datasets") and "watch" not in raw_request.query:
            self.dataset_lists.append(dict(raw_request.query))
        return await super().__call__(raw_request)


def test_kopf_lists_datasets_in_chunks() -> None:
    emulator = ListRecordingEmulator(validate_writes=False)
    count = 2 * LIST_CHUNK_SIZE + 5
    with EmulatorServer(emulator) as cluster:
        for index in range(count):
            cluster.api.create(dataset(f"data-{index:03d}"))
        with OperatorThread(cluster):
            # The operator writes each Dataset's status once it has seen it.
            wait_for(lambda: all(d.get("status") for d in cluster.api.list(API, "Dataset", "default")))
    pages = emulator.dataset_lists
    assert len(pages) == 3 and all(page["limit"] == str(LIST_CHUNK_SIZE) for page in pages), pages
    assert "continue" not in pages[0] and all(page.get("continue") for page in pages[1:])
