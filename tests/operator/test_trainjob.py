"""The TrainJob backend's pure parts: the TrainJob built for a job (Kubeflow Trainer v2.2's API,
checked by the emulator's schema), its drift patch, and how its status reads as a child's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tensorone_operator import builders
from tensorone_operator.config import ChildBackend, OperatorConfig
from tensorone_operator.status import active_replicas, suspend_asked
from tensorone_operator.trainjob import child_view

from tensorone.api import API_VERSION
from tensorone.api.admission import validate
from tensorone.api.v1alpha1 import Dataset, TrainingJob
from tensorone.cli.manifests import load_manifests
from tests.kube import kubeflow_trainer
from tests.operator.test_builders import DATASET, job

TRAINJOB_CONFIG = OperatorConfig(backend=ChildBackend.trainjob)
REPO = Path(__file__).resolve().parents[2]


def pod_patch(train_job: dict[str, Any]) -> dict[str, Any]:
    patch = train_job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    result: dict[str, Any] = patch["template"]["spec"]["template"]
    return result


def test_a_trainjob_carries_what_the_pytorchjob_pods_get() -> None:
    gpu_job = job(gpuType="a100", gpusPerWorker=8, maxWorkers=2, maxRuntimeSeconds=3600)
    train_job = builders.build_child(gpu_job, DATASET, TRAINJOB_CONFIG)
    validate(train_job, None, crds=kubeflow_trainer.crds())  # Trainer v2.2's schema takes it as it is
    template = builders.build_pod_template(gpu_job, DATASET, TRAINJOB_CONFIG)
    pytorch = template["spec"]["containers"][0]
    trainer = train_job["spec"]["trainer"]
    assert train_job["spec"]["runtimeRef"]["name"] == "tensorone-trainer-normal"
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 8)
    assert trainer["resourcesPerNode"] == pytorch["resources"] and trainer["env"] == pytorch["env"]
    assert (
        "--node-rank=$(PET_NODE_RANK)" in trainer["command"]
        and "--master-port=$(PET_MASTER_PORT)" in trainer["command"]
    )
    pod = pod_patch(train_job)
    assert pod["metadata"]["labels"] == template["metadata"]["labels"]
    assert pod["spec"]["volumes"] == template["spec"]["volumes"]
    assert pod["spec"]["containers"] == [{"name": "node", "volumeMounts": pytorch["volumeMounts"]}]
    for key in ("nodeSelector", "affinity", "tolerations"):
        assert pod["spec"].get(key) == template["spec"].get(key)
    assert pod["spec"]["tolerations"] and (pod["spec"].get("nodeSelector") or pod["spec"].get("affinity"))
    assert train_job["spec"]["activeDeadlineSeconds"] == 3600 and train_job["spec"]["suspend"] is False


def test_the_runtime_follows_the_image_kind_and_priority() -> None:
    custom = job(modelType="custom", config={"custom": {"image": "registry.example.com/ml/x:1"}}, priority="high")
    assert builders.build_trainjob(custom, DATASET, TRAINJOB_CONFIG)["spec"]["runtimeRef"]["name"] == (
        "tensorone-custom-high"
    )
    names = {runtime["metadata"]["name"] for runtime in builders.build_runtimes(TRAINJOB_CONFIG)}
    assert builders.runtime_name(custom.spec, TRAINJOB_CONFIG) in names and len(names) == 6


def test_namespace_backends_override_the_cluster_backend() -> None:
    config = OperatorConfig(namespace_backends={"team": ChildBackend.trainjob})
    assert builders.build_child(job(), DATASET, config)["kind"] == "TrainJob"
    assert config.backend_for("other") == ChildBackend.pytorchjob
    assert config.backends() == {ChildBackend.pytorchjob, ChildBackend.trainjob}


def test_a_queued_trainjob_is_created_suspended_and_never_unsuspended_by_an_edit() -> None:
    queued = job(labels={"kueue.x-k8s.io/queue-name": "gpus"}, priority="low")
    created = builders.build_trainjob(queued, DATASET, TRAINJOB_CONFIG)
    assert created["spec"]["suspend"] is True
    view = child_view(created)
    assert builders.trainjob_drift(queued, view, awaiting_admission=True) is None
    assert builders.trainjob_drift(queued, view) == {"spec": {"suspend": False}}  # admitted: ours to lift
    assert builders.trainjob_drift(job(suspend=True), child_view({**created, "spec": {"suspend": False}})) == {
        "spec": {"suspend": True}
    }


def _train_job(suspend: bool, conditions: list[dict[str, Any]], ready: int, active: int) -> dict[str, Any]:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "llama"},
        "spec": {"suspend": suspend},
        "status": {"conditions": conditions, "jobsStatus": [{"name": "node", "ready": ready, "active": active}]},
    }


def _condition(kind: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": "",
        "lastTransitionTime": "2026-12-01T00:00:00Z",
    }


def test_trainjob_status_reads_as_the_child_conditions_the_phases_follow() -> None:
    running = child_view(_train_job(False, [_condition("Suspended", "False", "Resumed")], ready=1, active=1))
    assert {c["type"]: c["status"] for c in running["status"]["conditions"]} == {
        "Suspended": "False",
        "Running": "True",
    }
    stopped = child_view(_train_job(True, [_condition("Suspended", "True", "Suspended")], ready=0, active=0))
    assert suspend_asked(stopped) and active_replicas(stopped) == 0
    assert not any(c["type"] == "Running" for c in stopped["status"]["conditions"])
    done = child_view(_train_job(False, [_condition("Complete", "True", "AllJobsCompleted")], ready=0, active=0))
    assert [c["type"] for c in done["status"]["conditions"]] == ["Succeeded"]
    assert done["status"]["completionTime"] == "2026-12-01T00:00:00Z"
    failed = child_view(_train_job(False, [_condition("Failed", "True", "DeadlineExceeded")], ready=1, active=1))
    assert [(c["type"], c["reason"]) for c in failed["status"]["conditions"]] == [("Failed", "DeadlineExceeded")]


def test_every_example_builds_a_trainjob_trainer_takes_on_a_runtime_the_chart_ships() -> None:
    """A cluster with only Kubeflow Trainer v2.2 runs every example: each example TrainingJob, as
    the API server stores it, builds a TrainJob that Trainer's schema accepts, on one of the
    ClusterTrainingRuntimes the chart installs for this backend."""
    stored: list[dict[str, Any]] = []
    for path in sorted((REPO / "examples").rglob("*.yaml")):
        for document in load_manifests(path.read_text()):
            if document.get("apiVersion") == API_VERSION:
                obj = validate(document)
                obj["metadata"].update(namespace="default", uid=f"uid-{len(stored)}", generation=1)
                stored.append(obj)
    datasets = {o["metadata"]["name"]: Dataset.model_validate(o) for o in stored if o["kind"] == "Dataset"}
    jobs = [TrainingJob.model_validate(o) for o in stored if o["kind"] == "TrainingJob"]
    runtimes = {runtime["metadata"]["name"] for runtime in builders.build_runtimes(TRAINJOB_CONFIG)}
    assert len(jobs) >= 10
    for training_job in jobs:
        dataset = datasets.get(training_job.spec.dataset_id, DATASET)
        train_job = builders.build_child(training_job, dataset, TRAINJOB_CONFIG)
        validate(train_job, None, crds=kubeflow_trainer.crds())
        assert train_job["spec"]["runtimeRef"]["name"] in runtimes, training_job.metadata.name
