"""A spot job through the operator, with the Training Operator and the kubelet played by hand: its
PyTorchJob places the pods on the catalog's spot nodes, its estimate is at the spot price, and a
pod evicted while it runs is a preemption (counted, told in an Event, never a restart), while the
pods of its own stop are not."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from tensorone_operator.builders import MASTER_REPLICA
from tensorone_operator.config import DEFAULT_GPU_CATALOG, OperatorConfig
from tensorone_operator.live_status import REPLICA_TYPE_LABEL

from tensorone.api.catalog import SpotCapacity, Toleration
from tensorone.api.exit_codes import ExitCode
from tensorone.api.report import ProgressReport, TrainerState
from tests import factories
from tests.kube.polling import wait_for
from tests.kube.server import ApiClient, EmulatorServer
from tests.operator.kit import (
    child_job,
    dataset,
    events_for,
    job_status,
    phase_is,
    play_training_operator,
    training_job,
)
from tests.operator.runner import OperatorThread

POD = "llama-master-0"
KUBELET = "kubelet.test/finalizer"
SPOT = SpotCapacity(
    node_selector={"cloud.google.com/gke-spot": "true"},
    tolerations=[Toleration(key="cloud.google.com/gke-spot", value="true", effect="NoSchedule")],
    hourly_price=0.28,
)
CONFIG = OperatorConfig(
    progress_poll_seconds=0.5,
    check_gpu_nodes=False,
    gpu_catalog={**DEFAULT_GPU_CATALOG, "l4": DEFAULT_GPU_CATALOG["l4"].model_copy(update={"spot": SPOT})},
)


@pytest.fixture
def spot_operator(cluster: EmulatorServer) -> Iterator[OperatorThread]:
    with OperatorThread(cluster, CONFIG) as running:
        yield running


def running_pod(api: ApiClient) -> str:
    """The job's rank-0 pod, running (held by a kubelet's finalizer until it has ended); its uid."""
    child = child_job(api)
    template = child["spec"]["pytorchReplicaSpecs"][MASTER_REPLICA]["template"]
    spec = copy.deepcopy(template["spec"])
    labels = {**template["metadata"]["labels"], REPLICA_TYPE_LABEL: "master"}
    created = api.create(factories.pod(POD, child, spec=spec, labels=labels, finalizers=[KUBELET]))
    status = factories.running_pod_status(spec["containers"][0], pod_ip="127.0.0.1", started_at=factories.now())
    api.patch("v1", "Pod", POD, {"status": status}, "default", subresource="status")
    return str(created["metadata"]["uid"])


def pod_deleted(api: ApiClient, *, evicted: bool) -> None:
    """The pod deleted (by the eviction API when ``evicted``: condition DisruptionTarget first), its
    trainer stopped on the SIGTERM with a checkpoint (exit 143), then gone."""
    if evicted:
        disruption = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
        api.patch("v1", "Pod", POD, {"status": {"conditions": [disruption]}}, "default", subresource="status")
    api.delete("v1", "Pod", POD, "default")
    container = api.get("v1", "Pod", POD, "default")["spec"]["containers"][0]
    stopped = ProgressReport(state=TrainerState.stopped, reason="Stopped", message="stopped by SIGTERM after step 9")
    status = factories.terminated_pod_status(
        container, exit_code=ExitCode.TERMINATED, message=stopped.termination_message(), finished_at=factories.now()
    )
    api.patch("v1", "Pod", POD, {"status": status}, "default", subresource="status")
    api.patch("v1", "Pod", POD, {"metadata": {"finalizers": None}}, "default")


def usage(api: ApiClient) -> dict[str, Any]:
    return dict(job_status(api).get("resourceUsage") or {})


def test_a_spot_job_is_placed_and_priced_on_spot_and_only_an_eviction_counts_as_a_preemption(
    cluster: EmulatorServer, spot_operator: OperatorThread
) -> None:
    api = cluster.api
    api.create(dataset())
    api.create(training_job(gpuType="l4", spot=True, maxRestarts=0))
    pod_spec = wait_for(lambda: child_job(api))["spec"]["pytorchReplicaSpecs"][MASTER_REPLICA]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4", "cloud.google.com/gke-spot": "true"}
    assert SPOT.tolerations[0].to_wire() in pod_spec["tolerations"]
    play_training_operator(api, "llama", "Running", active=1)
    running = wait_for(lambda: phase_is(api, "Running"))
    assert running["resourceAllocation"]["spot"] is True
    assert running["estimatedCost"]["hourly"] == 0.28

    running_pod(api)
    pod_deleted(api, evicted=True)  # a drain of the spot node
    play_training_operator(api, "llama", "Restarting", active=0)
    wait_for(lambda: usage(api).get("preemptions") == 1, "the preemption counted")
    play_training_operator(api, "llama", "Running", active=1)
    again = wait_for(lambda: s if (s := job_status(api)).get("phase") == "Running" else None)
    assert "restarts" not in again  # maxRestarts 0, and the job runs on
    preempted = wait_for(lambda: [e for e in events_for(api, "llama") if e["reason"] == "Preempted"], "the Event")
    assert preempted[0]["type"] == "Warning" and "(1 in all)" in preempted[0]["message"]

    # Its own stop: the child suspended, the Training Operator deletes the pod, SIGTERM: no preemption.
    running_pod(api)
    api.patch(factories.API, "TrainingJob", "llama", {"spec": {"suspend": True}})
    wait_for(lambda: child_job(api)["spec"]["runPolicy"]["suspend"], "the stop reaching the PyTorchJob")
    pod_deleted(api, evicted=False)
    play_training_operator(api, "llama", "Suspended")
    stopped = wait_for(lambda: phase_is(api, "Stopped"))
    assert stopped["resourceUsage"]["preemptions"] == 1 and "restarts" not in stopped
    assert len([e for e in events_for(api, "llama") if e["reason"] == "Preempted"]) == 1
