"""Manifests and moves shared by the operator tests, bench/ and the end-to-end tests.

``play_training_operator`` writes a PyTorchJob's status through the emulator's HTTP API exactly as
Training Operator v1.9 does (conditions Created, Running, Restarting, Succeeded, Failed, Suspended,
one per type, with replicaStatuses), so the operator sees it through its watch.
"""

from __future__ import annotations

import datetime
from typing import Any

from tests.kube.server import ApiClient

TJ = "training.tensorone.ai/v1alpha1"
PYTORCHJOB = "kubeflow.org/v1"


def training_job(name: str = "llama", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A TrainingJob manifest: a LoRA llm job on dataset ``chat`` (override any spec field)."""
    labels = spec.pop("labels", None)
    manifest: dict[str, Any] = {
        "apiVersion": TJ,
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "modelType": "llm",
            "datasetId": "chat",
            "config": {"baseModel": "meta-llama/Llama-2-7b-hf", "strategy": "lora"},
            **spec,
        },
    }
    if labels:
        manifest["metadata"]["labels"] = labels
    return manifest


def dataset(name: str = "chat", namespace: str = "default") -> dict[str, Any]:
    """A Dataset with a few inline records."""
    return {
        "apiVersion": TJ,
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"format": "jsonl", "source": {"inline": {"records": [{"text": "hello"}, {"text": "world"}]}}},
    }


def gpu_node(name: str = "gpu-a100-1", product: str = "NVIDIA-A100-SXM4-80GB", gpus: int = 8) -> dict[str, Any]:
    """A Node as GPU Feature Discovery labels it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(gpus)}},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "96", "memory": "1000Gi"}},
    }


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def play_training_operator(
    api: ApiClient,
    name: str,
    *true_conditions: str,
    namespace: str = "default",
    active: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    reason: str | None = None,
    message: str = "",
) -> dict[str, Any]:
    """Set the PyTorchJob's status as the Training Operator would: the named condition types True
    (the others it had become False), replica counts, start and completion times."""
    current = api.get(PYTORCHJOB, "PyTorchJob", name, namespace)
    status = dict(current.get("status") or {})
    now = _now()
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    for kind in ("Created", *true_conditions):
        conditions[kind] = {
            "type": kind,
            "status": "True",
            "reason": reason if reason and kind != "Created" else f"PyTorchJob{kind}",
            "message": message or f"PyTorchJob {name} is {kind.lower()}.",
            "lastUpdateTime": now,
            "lastTransitionTime": now,
        }
    for kind, condition in conditions.items():
        if kind != "Created" and kind not in true_conditions and condition["status"] == "True":
            conditions[kind] = {**condition, "status": "False", "lastTransitionTime": now}
    status["conditions"] = list(conditions.values())
    status["replicaStatuses"] = {"Master": {"active": active, "succeeded": succeeded, "failed": failed}}
    if "Running" in true_conditions:
        status.setdefault("startTime", now)
    if {"Succeeded", "Failed"} & set(true_conditions):
        status["completionTime"] = now
    return api.patch_status(PYTORCHJOB, "PyTorchJob", name, status, namespace)


def job_status(api: ApiClient, name: str = "llama", namespace: str = "default") -> dict[str, Any]:
    """The TrainingJob's status ({} before the first write)."""
    status: dict[str, Any] = api.get(TJ, "TrainingJob", name, namespace).get("status") or {}
    return status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """One condition of a status, {} when absent."""
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def events_for(api: ApiClient, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    """Events whose involvedObject is the named object."""
    return [e for e in api.list("v1", "Event", namespace) if (e.get("involvedObject") or {}).get("name") == name]


# Probes for wait_for(): each raises AssertionError, saying what it saw, until its state is there.


def phase_is(api: ApiClient, phase: str, name: str = "llama", namespace: str = "default") -> dict[str, Any]:
    """The TrainingJob's status once its phase is ``phase``."""
    status = job_status(api, name, namespace)
    assert status.get("phase") == phase, f"phase {status.get('phase')!r}, not {phase!r}"
    return status


def child_job(api: ApiClient, name: str = "llama", namespace: str = "default") -> dict[str, Any]:
    """The TrainingJob's PyTorchJob once the operator has created it."""
    child = api.find(PYTORCHJOB, "PyTorchJob", name, namespace)
    assert child is not None, f"no PyTorchJob {name} yet"
    return child


def reason_of(api: ApiClient, kind: str, name: str = "llama", namespace: str = "default") -> str:
    """The reason of the TrainingJob's condition ``kind`` once it has one."""
    found = condition(job_status(api, name, namespace), kind)
    assert found, f"no {kind} condition yet"
    return str(found["reason"])


def event_with(
    api: ApiClient, reason: str, event_type: str = "Normal", name: str = "llama", namespace: str = "default"
) -> dict[str, Any]:
    """The first Event of ``event_type`` with ``reason`` about the named object, once there is one."""
    events = [e for e in events_for(api, name, namespace) if e["reason"] == reason and e["type"] == event_type]
    assert events, f"no {event_type} Event {reason} for {name}"
    return events[0]
