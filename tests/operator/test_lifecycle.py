"""The real operator (every kopf handler) against the emulator: one test per lifecycle path.

The tests play the Training Operator by writing the PyTorchJob's status through the API.
"""

from __future__ import annotations

from typing import Any

import yaml
from tensorone_operator.config import OperatorConfig
from tensorone_operator.kube import KubeApi
from tensorone_operator.reconcile import Reconciler

from tensorone.api.resolved import ResolvedJob
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import (
    PYTORCHJOB,
    TJ,
    child_job,
    condition,
    configured_job,
    dataset,
    event_with,
    gpu_node,
    job_status,
    phase_is,
    play_training_operator,
    training_job,
)
from tests.operator.runner import OperatorThread


def start_job(cluster: EmulatorServer, **spec: Any) -> dict[str, Any]:
    cluster.api.create(dataset())
    cluster.api.create(gpu_node())
    cluster.api.create(training_job(gpuType="a100", **spec))
    return wait_for(lambda: child_job(cluster.api))


def test_create_builds_children_and_pending_status(cluster: EmulatorServer, operator: OperatorThread) -> None:
    child = start_job(cluster, gpusPerWorker=2, maxWorkers=2, labels={"kueue.x-k8s.io/queue-name": "gpus"})
    status = wait_for(lambda: phase_is(cluster.api, "Pending"))
    assert status["childName"] == "llama"
    assert status["resourceAllocation"] == {
        "gpuType": "NVIDIA A100",
        "workers": 2,
        "gpus": 4,
        "memoryPerWorker": "160GB",
    }
    assert status["estimatedCost"] == {"hourly": 16.4, "currency": "USD"}
    assert condition(status, "DatasetReady")["status"] == "True"
    assert child["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpus"
    job = cluster.api.get(TJ, "TrainingJob", "llama")
    assert child["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert job["metadata"]["finalizers"] == ["training.tensorone.ai/finalizer"]
    # kopf's bookkeeping lives under our domain only.
    assert all("kopf.zalando.org" not in key for key in job["metadata"].get("annotations") or {})
    config_map = cluster.api.get("v1", "ConfigMap", "llama-config")
    resolved = ResolvedJob.model_validate(yaml.safe_load(config_map["data"]["job.yaml"]))
    assert resolved.dataset_name == "chat" and resolved.use_gpu
    claim = cluster.api.get("v1", "PersistentVolumeClaim", "llama-checkpoints")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    # The operator never wrote the spec: every stored version has the user's spec.
    specs = {yaml.safe_dump(v["spec"]) for v in cluster.emulator.versions(TJ, "TrainingJob", "default", "llama")}
    assert len(specs) == 1


def test_running_restarting_completed(cluster: EmulatorServer, operator: OperatorThread) -> None:
    start_job(cluster)
    play_training_operator(cluster.api, "llama", "Running", active=1)
    status = wait_for(lambda: phase_is(cluster.api, "Running"))
    assert status["startedAt"] and condition(status, "Ready")["status"] == "True"
    play_training_operator(cluster.api, "llama", "Restarting", active=1)
    wait_for(lambda: condition(job_status(cluster.api), "Restarting").get("status") == "True")
    assert job_status(cluster.api)["phase"] == "Running"
    play_training_operator(cluster.api, "llama", "Succeeded", succeeded=1)
    status = wait_for(lambda: phase_is(cluster.api, "Completed"))
    assert status["completedAt"] and condition(status, "Succeeded")["status"] == "True"
    wait_for(lambda: event_with(cluster.api, "Completed"))


def test_failed_carries_the_reason_and_an_event(cluster: EmulatorServer, operator: OperatorThread) -> None:
    start_job(cluster, maxRestarts=0)
    play_training_operator(cluster.api, "llama", "Running", active=1)
    wait_for(lambda: phase_is(cluster.api, "Running"))
    play_training_operator(
        cluster.api, "llama", "Failed", failed=1, reason="BackoffLimitExceeded", message="pod llama-master-0 failed"
    )
    status = wait_for(lambda: phase_is(cluster.api, "Failed"))
    assert condition(status, "Failed")["reason"] == "BackoffLimitExceeded"
    assert status["message"] == "pod llama-master-0 failed"
    wait_for(lambda: event_with(cluster.api, "Failed", "Warning"))


def test_queued_while_a_queue_holds_the_child(cluster: EmulatorServer, operator: OperatorThread) -> None:
    start_job(cluster)
    # The job names no queue, so the operator owns its child's runPolicy.suspend: a reconcile of
    # the creation still in flight (its status write retried) would unsuspend what the queue holds.
    # The queue steps in once the job's status is written.
    wait_for(lambda: job_status(cluster.api).get("observedGeneration") == 1)
    # Kueue holds a job it has not admitted by suspending it (its webhook sets runPolicy.suspend),
    # and the Training Operator reports Suspended.
    cluster.api.patch(PYTORCHJOB, "PyTorchJob", "llama", {"spec": {"runPolicy": {"suspend": True}}})
    play_training_operator(cluster.api, "llama", "Suspended")
    wait_for(lambda: phase_is(cluster.api, "Queued"))
    cluster.api.patch(PYTORCHJOB, "PyTorchJob", "llama", {"spec": {"runPolicy": {"suspend": False}}})
    play_training_operator(cluster.api, "llama", "Running", active=1)
    wait_for(lambda: phase_is(cluster.api, "Running"))


def test_a_job_that_names_a_kueue_queue_starts_only_when_the_queue_admits_it(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    child = start_job(cluster, labels={"kueue.x-k8s.io/queue-name": "gpus"})
    assert child["spec"]["runPolicy"]["suspend"] is True  # created suspended, as Kueue expects
    play_training_operator(cluster.api, "llama", "Suspended")
    wait_for(lambda: phase_is(cluster.api, "Queued"))
    # An edit while queued (a new priority) reaches the child and leaves it suspended.
    cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"priority": "high"}})
    edited = wait_for(
        lambda: (
            c
            if (c := child_job(cluster.api))
            and c["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"].get("priorityClassName")
            == "tensorone-high"
            else None
        )
    )
    assert edited["spec"]["runPolicy"]["suspend"] is True
    assert phase_is(cluster.api, "Queued")
    # Kueue admits the job: it lifts the suspension itself.
    cluster.api.patch(PYTORCHJOB, "PyTorchJob", "llama", {"spec": {"runPolicy": {"suspend": False}}})
    play_training_operator(cluster.api, "llama", "Running", active=1)
    wait_for(lambda: phase_is(cluster.api, "Running"))
    assert child_job(cluster.api)["spec"]["runPolicy"]["suspend"] is False


def test_a_resumed_child_is_not_shown_queued_while_its_pods_start(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    start_job(cluster)
    play_training_operator(cluster.api, "llama", "Running", active=1)
    cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": True}})
    wait_for(lambda: cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")["spec"]["runPolicy"]["suspend"] is True)
    play_training_operator(cluster.api, "llama", "Suspended", active=0)
    wait_for(lambda: phase_is(cluster.api, "Stopped"))
    cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": False}})
    # The child is unsuspended but still reports Suspended until the Training Operator reacts.
    wait_for(lambda: cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")["spec"]["runPolicy"]["suspend"] is False)
    wait_for(lambda: phase_is(cluster.api, "Pending"))
    assert "resuming" in job_status(cluster.api, "llama")["message"]


async def test_a_resume_read_from_a_lagging_index_is_not_taken_for_a_queue(cluster: EmulatorServer) -> None:
    """The daemon's tick right after a resume may read the child from an index that has not yet
    seen the operator's own unsuspend: the child it patched counts, not the older copy (whose
    runPolicy.suspend would read as a queue's hold: phase Queued and a Queued Event)."""
    reasons: list[str] = []
    api = KubeApi(cluster.url, {}, False)
    reconciler = Reconciler(OperatorConfig(), api, lambda job, kind, reason, message: reasons.append(reason))
    key, job_ref = ("default", "llama"), {"metadata": {"namespace": "default", "name": "llama"}}
    try:
        cluster.api.create(dataset())
        cluster.api.create(gpu_node())
        cluster.api.create(training_job(gpuType="a100"))
        await reconciler.reconcile(job_ref)
        cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": True}})
        await reconciler.reconcile(job_ref)
        play_training_operator(cluster.api, "llama", "Suspended", active=0)
        stopped_child = cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")
        await reconciler.reconcile(job_ref, children={key: stopped_child})
        assert job_status(cluster.api)["phase"] == "Stopped"

        cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": False}})
        lagging = {key: stopped_child}  # the index still holds the child as it was before the resume
        await reconciler.reconcile(job_ref, children=lagging)
        assert cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")["spec"]["runPolicy"]["suspend"] is False
        await reconciler.follow(cluster.api.get(TJ, "TrainingJob", "llama"), datasets={}, children=lagging, nodes=None)
        status = job_status(cluster.api)
        assert (status["phase"], "resuming" in status["message"]) == ("Pending", True), status["message"]
        assert "Queued" not in reasons

        # Once the index has the patched child, it is read from the index again.
        caught_up = {key: cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")}
        play_training_operator(cluster.api, "llama", "Running", active=1)
        running = {key: cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")}
        await reconciler.follow(
            cluster.api.get(TJ, "TrainingJob", "llama"), datasets={}, children=caught_up, nodes=None
        )
        await reconciler.follow(cluster.api.get(TJ, "TrainingJob", "llama"), datasets={}, children=running, nodes=None)
        assert job_status(cluster.api)["phase"] == "Running"
    finally:
        await reconciler.close()


def test_stop_then_resume_from_a_named_checkpoint(cluster: EmulatorServer, operator: OperatorThread) -> None:
    """A resume is a new start of the job (its ConfigMap's startId, which the trainer's restarts
    keep); an edit of a running job is not."""
    start_job(cluster)
    play_training_operator(cluster.api, "llama", "Running", active=1)
    wait_for(lambda: phase_is(cluster.api, "Running"))
    uid = cluster.api.get(TJ, "TrainingJob", "llama")["metadata"]["uid"]
    assert configured_job(cluster.api)["startId"] == f"{uid}:1"
    edited = cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"priority": "high"}})
    wait_for(lambda: job_status(cluster.api)["observedGeneration"] == edited["metadata"]["generation"])
    assert configured_job(cluster.api)["startId"] == f"{uid}:1"

    cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": True}})
    wait_for(lambda: cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")["spec"]["runPolicy"]["suspend"] is True)
    wait_for(lambda: phase_is(cluster.api, "Stopping"))
    play_training_operator(cluster.api, "llama", "Suspended", active=0)
    wait_for(lambda: phase_is(cluster.api, "Stopped"))

    resumed = cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": False, "resumeFrom": "ckpt-epoch-1"}})
    wait_for(lambda: cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")["spec"]["runPolicy"]["suspend"] is False)
    # The ConfigMap is written before the child is unsuspended: the new pods read the new start.
    assert configured_job(cluster.api)["resumeFrom"] == "ckpt-epoch-1"
    assert configured_job(cluster.api)["startId"] == f"{uid}:{resumed['metadata']['generation']}"
    play_training_operator(cluster.api, "llama", "Running", active=1)
    status = wait_for(lambda: phase_is(cluster.api, "Running"))
    assert status["observedGeneration"] == cluster.api.get(TJ, "TrainingJob", "llama")["metadata"]["generation"]

    # Stopped and resumed again with the same resumeFrom: another start, which begins there again.
    cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": True}})
    wait_for(lambda: phase_is(cluster.api, "Stopping"))
    play_training_operator(cluster.api, "llama", "Suspended", active=0)
    wait_for(lambda: phase_is(cluster.api, "Stopped"))
    again = cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": False}})
    wait_for(lambda: cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")["spec"]["runPolicy"]["suspend"] is False)
    assert configured_job(cluster.api)["startId"] == f"{uid}:{again['metadata']['generation']}"


def test_cancel_deletes_the_child_and_keeps_checkpoints(cluster: EmulatorServer, operator: OperatorThread) -> None:
    start_job(cluster)
    play_training_operator(cluster.api, "llama", "Running", active=1)
    wait_for(lambda: phase_is(cluster.api, "Running"))
    cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"cancel": True}})
    status = wait_for(lambda: phase_is(cluster.api, "Cancelled"))
    assert status["completedAt"]
    wait_for(lambda: cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None)
    assert cluster.api.find("v1", "PersistentVolumeClaim", "llama-checkpoints") is not None


def test_changes_allowed_on_a_running_job_reach_the_child(cluster: EmulatorServer, operator: OperatorThread) -> None:
    start_job(cluster)
    play_training_operator(cluster.api, "llama", "Running", active=1)
    wait_for(lambda: phase_is(cluster.api, "Running"))
    cluster.api.patch(TJ, "TrainingJob", "llama", {"spec": {"maxRuntimeSeconds": 3600, "priority": "high"}})

    def applied() -> bool:
        spec = cluster.api.get(PYTORCHJOB, "PyTorchJob", "llama")["spec"]
        template = spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        return (
            spec["runPolicy"].get("activeDeadlineSeconds") == 3600 and template["priorityClassName"] == "tensorone-high"
        )

    wait_for(applied)


def test_delete_cleans_up_what_the_operator_made(cluster: EmulatorServer, operator: OperatorThread) -> None:
    start_job(cluster)
    wait_for(lambda: cluster.api.find("v1", "PersistentVolumeClaim", "llama-checkpoints"))
    cluster.api.delete(TJ, "TrainingJob", "llama")
    wait_for(lambda: cluster.api.find(TJ, "TrainingJob", "llama") is None)
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None
    assert cluster.api.find("v1", "ConfigMap", "llama-config") is None
    assert cluster.api.find("v1", "PersistentVolumeClaim", "llama-checkpoints") is None


def test_a_claim_the_user_names_is_never_created_or_deleted(cluster: EmulatorServer, operator: OperatorThread) -> None:
    child = start_job(cluster, checkpointStorage={"claimName": "team-checkpoints"})
    volumes = child["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"]
    assert {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "team-checkpoints"}} in volumes
    assert cluster.api.list("v1", "PersistentVolumeClaim", "default") == []
    cluster.api.delete(TJ, "TrainingJob", "llama")
    wait_for(lambda: cluster.api.find(TJ, "TrainingJob", "llama") is None)


def test_stuck_deletion_is_released_by_the_force_annotation(cluster: EmulatorServer, operator: OperatorThread) -> None:
    start_job(cluster)
    cluster.emulator.faults[("DELETE", "pytorchjobs")] = 500  # the clean-up cannot delete the child
    cluster.api.delete(TJ, "TrainingJob", "llama")
    wait_for(lambda: cluster.api.get(TJ, "TrainingJob", "llama")["metadata"].get("deletionTimestamp"))
    assert cluster.api.find(TJ, "TrainingJob", "llama") is not None
    cluster.api.patch(
        TJ, "TrainingJob", "llama", {"metadata": {"annotations": {"training.tensorone.ai/force-delete": "true"}}}
    )
    wait_for(lambda: cluster.api.find(TJ, "TrainingJob", "llama") is None)


def test_finalizers_null_releases_a_deletion_without_operator(cluster: EmulatorServer) -> None:
    cluster.api.create(dataset())
    with OperatorThread(cluster):
        cluster.api.create(training_job())
        wait_for(lambda: child_job(cluster.api))
    cluster.api.delete(TJ, "TrainingJob", "llama")
    assert cluster.api.get(TJ, "TrainingJob", "llama")["metadata"]["deletionTimestamp"]
    # The documented escape hatch: kubectl patch tj llama --type=merge -p '{"metadata":{"finalizers":null}}'
    cluster.api.patch(TJ, "TrainingJob", "llama", {"metadata": {"finalizers": None}})
    assert cluster.api.find(TJ, "TrainingJob", "llama") is None
    # The garbage collector removes the children through their ownerReferences.
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None


def test_custom_job_runs_the_users_container(cluster: EmulatorServer, operator: OperatorThread) -> None:
    cluster.api.create(dataset())
    custom = {"image": "registry.example/me/train:1", "command": ["python", "train.py"], "args": ["--lr", "1e-4"]}
    cluster.api.create(training_job(modelType="custom", config={"custom": custom}))
    child = wait_for(lambda: child_job(cluster.api))
    container = child["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["command"], container["args"]) == (
        "registry.example/me/train:1",
        ["python", "train.py"],
        ["--lr", "1e-4"],
    )
    wait_for(lambda: phase_is(cluster.api, "Pending"))


def test_dataset_status_shows_whether_its_source_is_usable(cluster: EmulatorServer, operator: OperatorThread) -> None:
    cluster.api.create(dataset())
    on_claim = dataset("on-claim")
    on_claim["spec"]["source"] = {"pvc": {"claimName": "corpus"}}
    cluster.api.create(on_claim)

    def ready(name: str) -> dict[str, object]:
        status = cluster.api.get(TJ, "Dataset", name).get("status") or {}
        return condition(status, "Ready")

    wait_for(lambda: ready("chat").get("status") == "True")
    assert cluster.api.get(TJ, "Dataset", "chat")["status"]["records"] == 2
    wait_for(lambda: ready("on-claim").get("reason") == "CLAIM_NOT_FOUND")
