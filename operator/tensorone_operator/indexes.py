"""What the kopf indexes hold, and the read-only views the reconciler gets of them.

kopf keeps the indexes from its watches, so the reconciler reads Datasets, child PyTorchJobs and
GPU nodes without an API call. Each index keeps a slim copy of its objects, the parts the
reconciler reads: an index lives as long as the operator and holds every object of its kind, so a
whole copy would cost the operator the size of every Dataset (up to 1000 inline records each) and
every pod template. The slim copy is kept ``packed`` (compressed JSON, a few hundred bytes): as
parsed objects, a child's status alone is about a hundred small allocations that would live as
long as the job, a few KB each, scattered over the heap. The views the reconciler gets unpack a
copy at each read. The index names are the names of the indexing functions in main.py (kopf
passes each index to handlers as a keyword argument of that name).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from tensorone.api.v1alpha1 import TERMINAL_PHASES, Reason
from tensorone_operator.trainjob import child_view

INDEX_DATASETS = "datasets_by_name"
INDEX_CHILDREN = "children_by_job"
INDEX_TRAINJOBS = "trainjobs_by_job"
INDEX_NODES = "gpu_nodes"
INDEX_WAITING = "jobs_waiting"


def packed(obj: Mapping[str, Any]) -> bytes:
    """An object as the operator keeps it for long (in an index, in the follow loop): compact JSON,
    compressed (a running job's status, its curves above all, compresses about fourfold)."""
    return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 1)


def unpacked(value: bytes) -> dict[str, Any]:
    """The object a ``packed`` value holds (a new copy at every call)."""
    obj: dict[str, Any] = json.loads(zlib.decompress(value))
    return obj


class SingleValueIndex(Mapping[Any, Any]):
    """kopf indexes (key -> collection of ``packed`` values) seen as one mapping of key -> its one
    value, unpacked: each key of the operator's indexes names one object (a Dataset, a job's
    child). Several indexes (the PyTorchJob and TrainJob children) are read in turn, the first
    holding a key winning."""

    def __init__(self, *indexes: Mapping[Any, Any] | None) -> None:
        self._indexes = [index for index in indexes if index is not None]

    def __getitem__(self, key: Any) -> Any:
        for index in self._indexes:
            if key in index:
                for value in index[key]:
                    return unpacked(value)
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        return iter({key: None for index in self._indexes for key in index})

    def __len__(self) -> int:
        return len({key for index in self._indexes for key in index})


def indexes_of(handler_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The reconciler's keyword arguments from a handler's kwargs (the indexes kopf passed)."""
    nodes_index = handler_kwargs.get(INDEX_NODES)
    return {
        "datasets": SingleValueIndex(handler_kwargs.get(INDEX_DATASETS)),
        "children": SingleValueIndex(handler_kwargs.get(INDEX_CHILDREN), handler_kwargs.get(INDEX_TRAINJOBS)),
        "nodes": [unpacked(node) for node in nodes_index.get(None, [])] if nodes_index is not None else None,
    }


# The metadata the reconciler reads of an indexed object. Annotations and managedFields are left
# out: kubectl apply's last-applied-configuration annotation is a second copy of the whole object.
_METADATA_READ = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp", "labels")


def slim_metadata(obj: Mapping[str, Any], *extra: str) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    return {key: metadata[key] for key in (*_METADATA_READ, *extra) if key in metadata}


def slim_dataset(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """A Dataset as the index keeps it: everything but its inline records (up to 1000 of them, the
    size of the object; ``Datasets.find`` reads a Dataset with an inline source from the API)."""
    spec = dict(dataset.get("spec") or {})
    source = dict(spec.get("source") or {})
    if "inline" in source:
        source["inline"] = {}
        spec["source"] = source
    return {
        "apiVersion": dataset.get("apiVersion"),
        "kind": dataset.get("kind"),
        "metadata": slim_metadata(dataset),
        "spec": spec,
        "status": dict(dataset.get("status") or {}),
    }


def has_inline_records(dataset: Mapping[str, Any]) -> bool:
    """Whether a Dataset's source is inline (a slim copy has dropped the records)."""
    return "inline" in ((dataset.get("spec") or {}).get("source") or {})


def slim_child(child: Mapping[str, Any]) -> dict[str, Any]:
    """A child PyTorchJob as the index keeps it: its owners, generation, runPolicy and each
    replica's priority class (what ``builders.child_drift`` compares) and its status; not the pod
    templates, which are most of it. A TrainJob is kept as its ``child_view``."""
    if child.get("kind") == "TrainJob":
        return {**child_view(child), "metadata": slim_metadata(child, "ownerReferences")}
    spec = child.get("spec") or {}
    replicas: dict[str, Any] = {}
    for replica, replica_spec in (spec.get("pytorchReplicaSpecs") or {}).items():
        pod_spec = ((replica_spec or {}).get("template") or {}).get("spec") or {}
        kept = {"priorityClassName": pod_spec["priorityClassName"]} if "priorityClassName" in pod_spec else {}
        replicas[replica] = {"template": {"spec": kept}}
    slim_spec: dict[str, Any] = {"runPolicy": dict(spec.get("runPolicy") or {}), "pytorchReplicaSpecs": replicas}
    return {
        "apiVersion": child.get("apiVersion"),
        "kind": child.get("kind"),
        "metadata": slim_metadata(child, "ownerReferences"),
        "spec": slim_spec,
        "status": dict(child.get("status") or {}),
    }


def slim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a Node the GPU check reads (labels, cordon, allocatable GPUs): kept small,
    because a node's status is large and changes often."""
    metadata = node.get("metadata") or {}
    return {
        "metadata": {"name": metadata.get("name"), "labels": dict(metadata.get("labels") or {})},
        "spec": {"unschedulable": bool((node.get("spec") or {}).get("unschedulable"))},
        "status": {"allocatable": dict((node.get("status") or {}).get("allocatable") or {})},
    }


def waiting_keys(namespace: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Index keys of a job held by its Dataset ("dataset", ns, name) or waiting on a GPU node ("gpu",)."""
    if status.get("phase") in TERMINAL_PHASES or status.get("childName"):
        return []
    reasons = {c.get("reason") for c in status.get("conditions") or [] if c.get("status") == "False"}
    keys: list[tuple[str, ...]] = []
    # A job held by its Dataset (absent, not Ready, or of a format that does not fit) is woken
    # when the Dataset changes.
    if reasons & {Reason.DATASET_NOT_FOUND, Reason.CLAIM_NOT_FOUND, Reason.CONFIGURATION_ERROR}:
        keys.append(("dataset", namespace, str(spec.get("datasetId"))))
    if Reason.INSUFFICIENT_RESOURCES in reasons:
        keys.append(("gpu",))
    return keys


class WaitingBook:
    """The jobs this process last wrote as waiting, by what they wait on (the keys of
    ``waiting_keys``), beside the kopf index of them. That index follows the TrainingJob watch,
    which may deliver the status that made a job wait after the Node or Dataset event that ends the
    wait (the watches are separate streams): a wake reads both."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], list[tuple[str, ...]]] = {}

    def record(self, job: tuple[str, str], spec: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """What ``job`` waits on, as the status just written says (nothing: forgotten)."""
        keys = waiting_keys(job[0], spec, status)
        if keys:
            self._keys[job] = keys
        else:
            self._keys.pop(job, None)

    def forget(self, job: tuple[str, str]) -> None:
        self._keys.pop(job, None)

    def on(self, key: tuple[str, ...]) -> list[tuple[str, str]]:
        """The jobs waiting on ``key``."""
        return [job for job, keys in self._keys.items() if key in keys]
