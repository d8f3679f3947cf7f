"""End to end on kind: the chart installs, a CPU-only TrainingJob runs to Completed with progress,
metrics and checkpoints in its status, and stop/resume work through spec.suspend; a job on the
trainjob backend (Kubeflow Trainer v2.2) completes, and a job through a Kueue LocalQueue is admitted
and completes.

Opt-in and skipped where there is no container engine: see conftest.py and docs/install.md.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tensorone_operator.builders import KUEUE_QUEUE_LABEL, RUNTIME_PATCH_MANAGER

from tests import factories
from tests.chart.test_argocd_health import health_of
from tests.e2e.cluster import KindCluster
from tests.e2e.conftest import (
    JOB_NAMESPACE,
    KUEUE_FOR_TRAINER_V2_2,
    KUEUE_REF,
    LOCAL_QUEUE,
    OPERATOR_NAMESPACE,
    TINY_MODEL_PATH,
    TRAINJOB_NAMESPACE,
    kueue_version,
)

# Objects without a namespace: they are applied into JOB_NAMESPACE.
DATASET = factories.tiny_dataset("tiny-instructions", None, columns={"prompt": "prompt", "completion": "completion"})


def training_job(name: str, **training: Any) -> dict[str, Any]:
    """A CPU-only LoRA job (no gpuType) on the tiny model baked into the e2e trainer image, small
    enough for a kind node: rank 4, batches of 4, full precision."""
    config = {
        **factories.tiny_config(TINY_MODEL_PATH, batchSize=4, learningRate=1.0e-3, **training),
        "parameters": {"rank": 4, "alpha": 8},
        "optimization": {"mixedPrecision": "no"},
    }
    return factories.training_job(
        name, None, datasetId="tiny-instructions", maxWorkers=1, priority="low", config=config
    )


def _phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


def _caught_up(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]


@pytest.fixture(scope="module")
def dataset(cluster: KindCluster, chart: str) -> str:
    cluster.apply(DATASET, JOB_NAMESPACE)
    return str(DATASET["metadata"]["name"])


def test_operator_runs_restricted_and_serves_metrics(cluster: KindCluster, chart: str) -> None:
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator", "-o", "json"
        )
    )["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert all(status["ready"] for status in pod["status"]["containerStatuses"])
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # The API server's service proxy reaches the operator's /metrics without a port-forward.
    services = json.loads(
        cluster.kubectl(
            "get", "services", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator", "-o", "json"
        )
    )["items"]
    [service] = [item["metadata"]["name"] for item in services if item["metadata"]["name"].endswith("-metrics")]
    metrics = cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/services/{service}:metrics/proxy/metrics"
    )
    assert "tensorone_operator_reconciles_total" in metrics


def test_cpu_job_completes_with_progress_metrics_and_checkpoints(cluster: KindCluster, dataset: str) -> None:
    cluster.apply(training_job("e2e-complete", epochs=2), JOB_NAMESPACE)
    job = cluster.wait_for(
        "trainingjob",
        "e2e-complete",
        JOB_NAMESPACE,
        lambda obj: _phase(obj) in {"Completed", "Failed"},
        what="a terminal phase",
        timeout=900,
    )
    status = job["status"]
    assert status["phase"] == "Completed", json.dumps(status, indent=2)
    progress = status["progress"]
    assert progress["currentStep"] == progress["totalSteps"] > 0
    assert progress["percentage"] == 100
    assert progress["currentEpoch"] == progress["totalEpochs"] == 2
    assert isinstance(status["metrics"]["currentLoss"], float)
    assert status["metrics"]["learningRate"] >= 0
    assert status["checkpoints"], "no checkpoint in status"
    assert {checkpoint["reason"] for checkpoint in status["checkpoints"]} & {"epoch", "final"}
    assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in status["conditions"])
    # CPU job: what it was given comes from operatorConfig.cpuJob.
    assert status["resourceAllocation"]["workers"] == 1
    # Argo CD would show it Healthy.
    assert health_of(job)["status"] == "Healthy"
    # The child and its pods carry the contract's labels.
    child = cluster.get("pytorchjob", "e2e-complete", JOB_NAMESPACE)
    assert child["metadata"]["labels"]["training.tensorone.ai/job-name"] == "e2e-complete"


def test_stop_and_resume(cluster: KindCluster, dataset: str) -> None:
    name = "e2e-stop-resume"
    # Long enough to be stopped mid-way: many epochs over 58 records, a checkpoint every few steps.
    cluster.apply(training_job(name, epochs=200, checkpointSteps=5, keepCheckpoints=2), JOB_NAMESPACE)
    cluster.wait_for(
        "trainingjob",
        name,
        JOB_NAMESPACE,
        lambda obj: _phase(obj) == "Running" and ((obj["status"].get("progress") or {}).get("currentStep") or 0) >= 3,
        what="Running past step 3",
        timeout=900,
        poll=2,
    )

    # What the chart's PodMonitor relies on: the Master pod carries job-role=master and the
    # trainer's port is named "report".
    masters = json.loads(
        cluster.kubectl(
            "get",
            "pods",
            "-n",
            JOB_NAMESPACE,
            "-o",
            "json",
            "-l",
            f"training.tensorone.ai/job-name={name},training.kubeflow.org/job-role=master",
        )
    )["items"]
    assert len(masters) == 1
    assert "report" in {port.get("name") for port in masters[0]["spec"]["containers"][0].get("ports", [])}

    cluster.merge_patch("trainingjob", name, JOB_NAMESPACE, {"spec": {"suspend": True}})
    stopped = cluster.wait_for(
        "trainingjob",
        name,
        JOB_NAMESPACE,
        lambda obj: _phase(obj) == "Stopped" and _caught_up(obj),
        what="Stopped",
        timeout=300,
    )
    assert health_of(stopped)["status"] == "Suspended"
    stop_checkpoints = [c for c in stopped["status"]["checkpoints"] if c.get("reason") == "stop"]
    assert stop_checkpoints, f"the SIGTERM checkpoint is missing: {stopped['status']['checkpoints']}"
    stopped_at = stopped["status"]["progress"]["currentStep"]
    # Suspending the PyTorchJob deletes its pods.
    cluster.kubectl(
        "wait",
        "--for=delete",
        "pod",
        "-n",
        JOB_NAMESPACE,
        "-l",
        f"training.tensorone.ai/job-name={name}",
        "--timeout=180s",
        timeout=200,
    )

    cluster.merge_patch("trainingjob", name, JOB_NAMESPACE, {"spec": {"suspend": False}})
    resumed = cluster.wait_for(
        "trainingjob",
        name,
        JOB_NAMESPACE,
        lambda obj: _phase(obj) == "Running" and _caught_up(obj) and bool(obj["status"].get("resumedFrom")),
        what="Running again, resumed from a checkpoint",
        timeout=600,
        poll=2,
    )
    assert resumed["status"]["resumedFrom"] == stop_checkpoints[-1]["id"]
    assert resumed["status"]["progress"]["currentStep"] >= stopped_at

    # Cancel ends it for good; the checkpoints stay listed.
    cluster.merge_patch("trainingjob", name, JOB_NAMESPACE, {"spec": {"cancel": True}})
    cancelled = cluster.wait_for(
        "trainingjob",
        name,
        JOB_NAMESPACE,
        lambda obj: _phase(obj) == "Cancelled",
        what="Cancelled",
        timeout=300,
    )
    assert cancelled["status"]["checkpoints"]
    assert health_of(cancelled)["status"] == "Healthy"


def test_job_deletion_cleans_up_children(cluster: KindCluster, dataset: str) -> None:
    cluster.kubectl("delete", "trainingjob", "e2e-complete", "-n", JOB_NAMESPACE, "--wait=true", "--timeout=120s")
    leftovers = cluster.kubectl(
        "get",
        "pytorchjobs,configmaps,persistentvolumeclaims",
        "-n",
        JOB_NAMESPACE,
        "-l",
        "training.tensorone.ai/job-name=e2e-complete",
        "-o",
        "name",
    )
    assert leftovers.strip() == ""


# The trainjob backend and Kueue ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trainjob_dataset(cluster: KindCluster, chart: str) -> str:
    cluster.apply(DATASET, TRAINJOB_NAMESPACE)
    return str(DATASET["metadata"]["name"])


def queued_training_job(name: str, **training: Any) -> dict[str, Any]:
    """``training_job`` in Kueue's LocalQueue of its namespace."""
    job = training_job(name, **training)
    job["metadata"]["labels"] = {KUEUE_QUEUE_LABEL: LOCAL_QUEUE}
    return job


def _completed(cluster: KindCluster, name: str, namespace: str) -> dict[str, Any]:
    """The job's status once it ends, which must be Completed at its last step with a checkpoint."""
    job = cluster.wait_for(
        "trainingjob",
        name,
        namespace,
        lambda obj: _phase(obj) in {"Completed", "Failed"},
        what="a terminal phase",
        timeout=900,
    )
    status: dict[str, Any] = job["status"]
    assert status["phase"] == "Completed", json.dumps(status, indent=2)
    assert status["progress"]["currentStep"] == status["progress"]["totalSteps"] > 0
    assert status["checkpoints"], "no checkpoint in status"
    return status


def _admitted_workload(cluster: KindCluster, child: dict[str, Any]) -> dict[str, Any]:
    """Kueue's Workload of a child, which Kueue admitted in the e2e ClusterQueue and finished."""
    [workload] = cluster.list(
        "workloads.kueue.x-k8s.io", child["metadata"]["namespace"], f"kueue.x-k8s.io/job-uid={child['metadata']['uid']}"
    )
    assert workload["spec"]["queueName"] == LOCAL_QUEUE
    assert workload["status"]["admission"]["clusterQueue"] == "e2e", json.dumps(workload["status"], indent=2)
    assert any(c["type"] == "Finished" and c["status"] == "True" for c in workload["status"]["conditions"])
    return workload


def test_trainjob_backend_cpu_job_completes(cluster: KindCluster, trainjob_dataset: str) -> None:
    name = "e2e-trainjob"
    cluster.apply(training_job(name, epochs=2), TRAINJOB_NAMESPACE)
    status = _completed(cluster, name, TRAINJOB_NAMESPACE)
    assert status["progress"]["currentEpoch"] == status["progress"]["totalEpochs"] == 2
    assert isinstance(status["metrics"]["currentLoss"], float)
    # The child is a TrainJob on the chart's runtime of its priority; Trainer made its JobSet.
    child = cluster.get("trainjobs.trainer.kubeflow.org", name, TRAINJOB_NAMESPACE)
    assert child["spec"]["runtimeRef"]["name"] == "tensorone-trainer-low"
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in child["status"]["conditions"])
    jobset = cluster.get("jobsets.jobset.x-k8s.io", name, TRAINJOB_NAMESPACE)
    assert jobset["metadata"]["ownerReferences"][0]["uid"] == child["metadata"]["uid"]


def test_a_job_through_a_kueue_local_queue_is_admitted_and_completes(
    cluster: KindCluster, dataset: str, kueue: str
) -> None:
    name = "e2e-queued"
    cluster.apply(queued_training_job(name, epochs=1), JOB_NAMESPACE)
    _completed(cluster, name, JOB_NAMESPACE)
    child = cluster.get("pytorchjob", name, JOB_NAMESPACE)
    assert child["metadata"]["labels"][KUEUE_QUEUE_LABEL] == LOCAL_QUEUE
    _admitted_workload(cluster, child)


@pytest.mark.skipif(
    kueue_version(KUEUE_REF) < KUEUE_FOR_TRAINER_V2_2,
    reason=f"Kueue {KUEUE_REF}'s TrainJob integration predates Trainer v2.2's runtimePatches "
    "(KUEUE_REF=v0.17.0 or later runs this test)",
)
def test_a_trainjob_through_a_kueue_local_queue_is_admitted_and_completes(
    cluster: KindCluster, trainjob_dataset: str, kueue: str
) -> None:
    name = "e2e-trainjob-queued"
    cluster.apply(queued_training_job(name, epochs=1), TRAINJOB_NAMESPACE)
    _completed(cluster, name, TRAINJOB_NAMESPACE)
    child = cluster.get("trainjobs.trainer.kubeflow.org", name, TRAINJOB_NAMESPACE)
    # Kueue's runtime patch beside the operator's, which still carries the pods' volumes.
    patches = {patch["manager"]: patch for patch in child["spec"]["runtimePatches"]}
    assert set(patches) == {RUNTIME_PATCH_MANAGER, "kueue.x-k8s.io/manager"}
    assert patches[RUNTIME_PATCH_MANAGER]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    _admitted_workload(cluster, child)
