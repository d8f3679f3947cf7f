"""Kueue end to end, on both backends (a PyTorchJob child, a TrainJob child): jobs that name a
LocalQueue wait for Kueue's admission (an edit or a stop and resume meanwhile never starts them),
and a job Kueue preempts stops with a checkpoint, queues again and resumes from that checkpoint to
the weights of an uninterrupted run. Kueue is played by the node (tests.kube.kueue), its webhook
installed in the emulator: a ClusterQueue with the CPU of one tiny job's pod."""

from __future__ import annotations

from typing import Any

import pytest
from tensorone_operator.builders import RUNTIME_PATCH_MANAGER
from tensorone_operator.config import ChildBackend

from tensorone.api.pods import LABEL_JOB_NAME, TRAINJOB_CONTAINER_NAME
from tests.factories import stop_reason, tiny_dataset, tiny_training_job
from tests.kube import kueue
from tests.kube.kubeflow_trainer import JOBSET_API
from tests.kube.polling import wait_for
from tests.system.conftest import TRAINING_TIMEOUT, LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", list(ChildBackend))]

QUEUE = "team"
QUEUE_LABELS = {kueue.QUEUE_LABEL: QUEUE}


def set_up_kueue(cluster: LocalCluster) -> None:
    """Kueue's webhook, a flavor, a ClusterQueue with quota for one tiny job's pod (its 2 CPUs)
    that preempts lower priorities, and the namespace's LocalQueue."""
    kueue.install(cluster.server)
    api = cluster.server.api
    api.create({"apiVersion": kueue.API, "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}})
    api.create(
        {
            "apiVersion": kueue.API,
            "kind": "ClusterQueue",
            "metadata": {"name": "cluster"},
            "spec": {
                "namespaceSelector": {},
                "queueingStrategy": "BestEffortFIFO",
                "preemption": {"withinClusterQueue": "LowerPriority"},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu"],
                        "flavors": [{"name": "default-flavor", "resources": [{"name": "cpu", "nominalQuota": "2"}]}],
                    }
                ],
            },
        }
    )
    api.create(
        {
            "apiVersion": kueue.API,
            "kind": "LocalQueue",
            "metadata": {"name": QUEUE, "namespace": "default"},
            "spec": {"clusterQueue": "cluster"},
        }
    )


def other_workload(cluster: LocalCluster, name: str, *, priority: int) -> None:
    """A Workload of another team's job (no pods of its own here) that needs the whole quota."""
    container = {"name": "main", "image": "example.com/batch:1", "resources": {"requests": {"cpu": "2"}}}
    cluster.server.api.create(
        {
            "apiVersion": kueue.API,
            "kind": "Workload",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "queueName": QUEUE,
                "priority": priority,
                "podSets": [{"name": "main", "count": 1, "template": {"spec": {"containers": [container]}}}],
            },
        }
    )


def workload_of(cluster: LocalCluster, name: str) -> dict[str, Any]:
    child = cluster.child(name)
    assert child is not None
    found = cluster.server.api.list(
        kueue.API, "Workload", "default", f"{kueue.JOB_UID_LABEL}={child['metadata']['uid']}"
    )
    assert len(found) == 1, found
    return found[0]


def admitted_pods_of(cluster: LocalCluster, name: str) -> dict[str, Any] | None:
    """A TrainJob's: the JobSet's pod template once Kueue's runtime patch (beside the operator's)
    has reached it on admission, with the operator's labels and volumes; None before that."""
    child = cluster.child(name)
    assert child is not None
    assert [p["manager"] for p in child["spec"]["runtimePatches"]] == [
        RUNTIME_PATCH_MANAGER,
        kueue.RUNTIME_PATCH_MANAGER,
    ]
    jobset = cluster.server.api.get(JOBSET_API, "JobSet", name)
    [node] = [r for r in jobset["spec"]["replicatedJobs"] if r["name"] == TRAINJOB_CONTAINER_NAME]
    pod: dict[str, Any] = node["template"]["spec"]["template"]
    if pod["metadata"]["labels"].get(kueue.PODSET_LABEL) != TRAINJOB_CONTAINER_NAME:
        return None
    assert pod["metadata"]["labels"][LABEL_JOB_NAME] == name and pod["spec"]["volumes"]
    return pod


def kueue_patch_filled(cluster: LocalCluster, name: str) -> bool:
    """Whether Kueue's runtime patch of a TrainJob holds its pod sets' patches (from admission
    until Kueue has stopped the job)."""
    child = cluster.child(name)
    assert child is not None
    mine = kueue.kueue_runtime_patch(child)
    assert mine is not None
    return bool(mine["trainingRuntimeSpec"]["template"]["spec"].get("replicatedJobs"))


def ready_reason(status: dict[str, Any]) -> str | None:
    return next((c["reason"] for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def test_a_queued_job_runs_only_once_kueue_admits_it(cluster: LocalCluster, backend: ChildBackend) -> None:
    set_up_kueue(cluster)
    other_workload(cluster, "holds-the-quota", priority=0)
    wait_for(
        lambda: kueue._is_true(cluster.server.api.get(kueue.API, "Workload", "holds-the-quota"), "Admitted"),
        "the other Workload admitted",
    )
    cluster.apply(tiny_dataset())
    job = tiny_training_job("waiting", epochs=1)
    job["metadata"]["labels"] = QUEUE_LABELS
    cluster.apply(job)
    queued = wait_for(lambda: cluster.phase_is("waiting", "Queued"), "Queued")
    assert f"LocalQueue {QUEUE!r}" in queued["message"], queued["message"]
    assert cluster.child_suspended("waiting") and not cluster.node.runs[("default", "waiting")].pods

    # An edit while queued (a new priority) reaches the job and leaves the child suspended.
    cluster.patch_spec("waiting", {"priority": "high"})
    generation = cluster.job("waiting")["metadata"]["generation"]
    wait_for(lambda: cluster.status("waiting").get("observedGeneration") == generation, "the edit observed")
    # A stop and a resume while queued: the Workload is deactivated, then active again, and the
    # resume leaves admission to Kueue.
    cluster.patch_spec("waiting", {"suspend": True})
    wait_for(lambda: cluster.phase_is("waiting", "Stopped"), "Stopped")
    assert workload_of(cluster, "waiting")["spec"]["active"] is False
    cluster.patch_spec("waiting", {"suspend": False})
    wait_for(lambda: workload_of(cluster, "waiting")["spec"]["active"] is True, "the Workload active again")
    wait_for(lambda: cluster.phase_is("waiting", "Queued"), "Queued again")
    assert cluster.child_suspended("waiting") and not cluster.node.runs[("default", "waiting")].pods
    assert "startedAt" not in cluster.status("waiting")
    if backend == ChildBackend.trainjob:
        assert not kueue_patch_filled(cluster, "waiting")

    # The other job ends: its Workload goes, and Kueue admits this one, which runs to the end.
    cluster.server.api.delete(kueue.API, "Workload", "holds-the-quota")
    wait_for(lambda: cluster.phase_is("waiting", "Completed"), "Completed", timeout=TRAINING_TIMEOUT)
    admitted = workload_of(cluster, "waiting")
    assert admitted["status"]["admission"]["clusterQueue"] == "cluster"
    if backend == ChildBackend.trainjob:  # the pods started with Kueue's patch and the operator's
        assert admitted_pods_of(cluster, "waiting") is not None


def test_a_preempted_job_checkpoints_queues_again_and_resumes_like_an_uninterrupted_run(
    cluster: LocalCluster, backend: ChildBackend
) -> None:
    set_up_kueue(cluster)
    cluster.apply(tiny_dataset())
    cluster.apply(tiny_training_job("reference", epochs=2))  # names no queue: runs at once
    job = tiny_training_job("preempted", epochs=2)
    job["metadata"]["labels"] = QUEUE_LABELS
    cluster.apply(job)
    wait_for(
        lambda: (cluster.status("preempted").get("progress") or {}).get("currentStep", 0) >= 3,
        "steps of the queued job, once admitted",
    )
    # Frozen mid-run, the job loses its quota to a Workload of higher priority: Kueue evicts it.
    with cluster.paused("preempted"):
        other_workload(cluster, "urgent", priority=100)
        wait_for(lambda: cluster.child_suspended("preempted"), "Kueue's preemption reaching the PyTorchJob")
    queued = wait_for(
        lambda: s if (s := cluster.phase_is("preempted", "Queued")) and ready_reason(s) == "Preempted" else None,
        "Queued after the preemption",
        explain=lambda: str(cluster.status("preempted").get("message")),
    )
    assert queued["message"].startswith("preempted by Kueue"), queued["message"]
    stopped = wait_for(
        lambda: s if (s := cluster.status("preempted")) and _checkpoint_at_current_step(s) is not None else None,
        "the preemption's checkpoint in the status",
        explain=lambda: cluster.diagnose("preempted"),
    )
    checkpoint = _checkpoint_at_current_step(stopped)
    assert checkpoint is not None and checkpoint["reason"] == stop_reason(stopped["progress"])
    assert not stopped.get("restarts") and cluster.job("preempted")["spec"].get("suspend") is False
    if backend == ChildBackend.trainjob:  # Kueue's stop emptied its patch
        wait_for(lambda: not kueue_patch_filled(cluster, "preempted"), "Kueue's runtime patch restored")
    wait_for(
        lambda: kueue._is_true(cluster.server.api.get(kueue.API, "Workload", "urgent"), "Admitted"),
        "the urgent Workload admitted",
    )

    # The urgent job ends: Kueue admits the preempted one again, which resumes from its checkpoint.
    cluster.server.api.delete(kueue.API, "Workload", "urgent")
    resumed = wait_for(lambda: cluster.status("preempted").get("resumedFrom"), "the resumed run's report")
    assert resumed == checkpoint["id"]
    if backend == ChildBackend.trainjob:
        assert kueue_patch_filled(cluster, "preempted") and admitted_pods_of(cluster, "preempted") is not None
    wait_for(lambda: cluster.phase_is("preempted", "Completed"), "Completed", timeout=TRAINING_TIMEOUT)
    wait_for(lambda: cluster.phase_is("reference", "Completed"), "the reference Completed", timeout=TRAINING_TIMEOUT)
    final = wait_for(lambda: _at_the_end(cluster.status("preempted")), "the preempted job's last step")
    reference = wait_for(lambda: _at_the_end(cluster.status("reference")), "the reference's last step")
    assert final["metrics"]["currentLoss"] == reference["metrics"]["currentLoss"]
    assert not final.get("restarts")
    wait_for(
        lambda: (
            {"Preempted", "Queued", "TrainingResumed", "Completed"}
            <= {e["reason"] for e in cluster.events("preempted")}
        ),
        "the preemption's Events",
        explain=lambda: str([e["reason"] for e in cluster.events("preempted")]),
    )


def _at_the_end(status: dict[str, Any]) -> dict[str, Any] | None:
    progress = status.get("progress") or {}
    return status if progress.get("currentStep") == progress.get("totalSteps") else None


def _checkpoint_at_current_step(status: dict[str, Any]) -> dict[str, Any] | None:
    step = (status.get("progress") or {}).get("currentStep")
    return next((c for c in status.get("checkpoints") or [] if c.get("step") == step), None)
