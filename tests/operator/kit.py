"""Objects and moves shared by the operator tests.

The TrainingJob, Dataset and GPU Node factories come from ``tests.factories``; ``play_training_operator``
moves a PyTorchJob's status by hand with the Training Operator's moves of
``tests.kube.training_operator``, so the operator sees it through its watch.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from tensorone_operator.builders import REPORT_PORT_NAME
from tensorone_operator.live_status import REPLICA_TYPE_LABEL

from tests import factories
from tests.factories import API, PYTORCHJOB, dataset, gpu_node, training_job
from tests.kube.polling import wait_for
from tests.kube.server import ApiClient
from tests.kube.training_operator import ReplicaStatus, move_child

TJ = API

__all__ = [
    "PYTORCHJOB",
    "TJ",
    "child_job",
    "condition",
    "dataset",
    "event_with",
    "events_for",
    "gpu_node",
    "job_status",
    "phase_is",
    "play_training_operator",
    "reason_of",
    "run_master_pod",
    "training_job",
]


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
    """Move the PyTorchJob's status as the Training Operator would: into the named condition types
    (Running; Restarting, which drops Running; Suspended; Succeeded; Failed), the others it had turned False,
    with the master's replica counts; ``reason`` and ``message`` replace the Operator's own."""
    moved = move_child(
        api,
        name,
        namespace,
        *true_conditions,
        replicas={"Master": ReplicaStatus(active=active, succeeded=succeeded, failed=failed)},
        reason=reason,
        message=message or None,
    )
    assert moved is not None, f"no PyTorchJob {name} to move"
    return moved


def run_master_pod(api: Any, name: str, report_port: int) -> None:
    """The job's rank-0 pod as a kubelet runs it, its report port served on 127.0.0.1:report_port."""
    child = wait_for(lambda: child_job(api, name))
    play_training_operator(api, name, "Running", active=1)
    template = child["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    spec = copy.deepcopy(template["spec"])
    container = spec["containers"][0]
    for port in container.get("ports") or []:
        if port.get("name") == REPORT_PORT_NAME:
            port["containerPort"] = report_port
    labels = {**template["metadata"]["labels"], REPLICA_TYPE_LABEL: "master"}
    api.create(factories.pod(f"{name}-master-0", child, spec=spec, labels=labels))
    status = factories.running_pod_status(container, pod_ip="127.0.0.1", started_at=factories.now())
    api.patch("v1", "Pod", f"{name}-master-0", {"status": status}, "default", subresource="status")


def configured_job(api: ApiClient, name: str = "llama", namespace: str = "default") -> dict[str, Any]:
    """The resolved job in the job's ConfigMap, as the trainer reads it."""
    config_map = api.get("v1", "ConfigMap", f"{name}-config", namespace=namespace)
    job: dict[str, Any] = yaml.safe_load(config_map["data"]["job.yaml"])
    return job


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
