"""The SDK's verbs against the Kubernetes API emulator: what they write and what they refuse.

No operator runs here: the tests set the status as the operator would and check that every verb
is the declarative spec change the docs promise (so a Git commit can do the same)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from tensorone import TensorOneClient
from tensorone.api.rest import job_from_rest
from tensorone.client import Job
from tensorone.errors import (
    AlreadyExists,
    CheckpointNotFound,
    ConfigurationError,
    DatasetNotFound,
    InsufficientResources,
    InvalidJobState,
    JobNotFound,
    Unreachable,
    ValidationFailed,
)
from tests.factories import dataset, gpu_node
from tests.kube.loopback import free_port
from tests.kube.server import EmulatorServer

API = "training.tensorone.ai/v1alpha1"
LLM_CONFIG = {
    "base_model": "meta-llama/Llama-2-7b-hf",
    "strategy": "lora",
    "parameters": {"rank": 16, "alpha": 32, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
    "training": {"epochs": 3, "batch_size": 4, "learning_rate": 2e-4},
}


@pytest.fixture
def cluster() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        # What the jobs below need to pass the create-time checks: their Dataset and an A100 node.
        server.api.create(dataset("chat-data"))
        server.api.create(gpu_node())
        yield server


@pytest.fixture
def client(cluster: EmulatorServer) -> TensorOneClient:
    configuration = k8s.Configuration(host=cluster.url)
    return TensorOneClient(namespace="default", api_client=k8s.ApiClient(configuration))


def create_job(client: TensorOneClient, name: str, **overrides: Any) -> Job:
    fields: dict[str, Any] = {
        "name": name,
        "model_type": "llm",
        "dataset_id": "chat-data",
        "config": LLM_CONFIG,
        "gpu_type": "a100",
        "max_workers": 2,
    }
    fields.update(overrides)
    return client.training.jobs.create(**fields)


def set_status(cluster: EmulatorServer, name: str, status: dict[str, Any]) -> None:
    cluster.api.patch_status(API, "TrainingJob", name, status)


def test_create_accepts_the_reference_snake_case_config(client: TensorOneClient, cluster: EmulatorServer) -> None:
    job = create_job(client, "llama-7b-finetune", priority="high", tags=["demo"])
    stored = cluster.api.get(API, "TrainingJob", "llama-7b-finetune")
    assert stored["spec"]["config"]["parameters"]["targetModules"] == ["q_proj", "v_proj"]
    assert stored["spec"]["config"]["training"]["batchSize"] == 4
    assert stored["spec"]["priority"] == "high"
    assert job.id == "llama-7b-finetune"
    assert job.status == "pending"
    assert job.spec.max_workers == 2


def test_create_refuses_a_bad_learning_rate_before_sending(client: TensorOneClient, cluster: EmulatorServer) -> None:
    config = {**LLM_CONFIG, "training": {"learning_rate": 0.5}}
    with pytest.raises(ValidationFailed) as caught:
        create_job(client, "bad-lr", config=config)
    assert [e.field for e in caught.value.errors] == ["spec.config.training.learningRate"]
    assert "0.1" in str(caught.value)
    assert cluster.api.find(API, "TrainingJob", "bad-lr") is None


def test_a_long_name_is_shortened_as_t1_convert_does(client: TensorOneClient) -> None:
    job = create_job(client, "a" * 54)
    assert len(job.id) == 53 and job.name == "a" * 54
    with pytest.raises(ValidationFailed, match=r"name: required: 1 to 100 characters"):
        create_job(client, "a" * 101)


def test_get_mirrors_the_status_as_job_details(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "details")
    set_status(
        cluster,
        "details",
        {
            "phase": "Running",
            "progress": {
                "currentEpoch": 2,
                "totalEpochs": 3,
                "currentStep": 1247,
                "totalSteps": 1875,
                "percentage": 66.5,
            },
            "metrics": {"currentLoss": 0.342, "bestLoss": 0.298, "throughput": "1250 tokens/sec"},
            "checkpoints": [{"id": "ckpt-epoch-1", "epoch": 1, "step": 625, "loss": 0.456}],
        },
    )
    job = client.training.jobs.get("details")
    assert job.status == "running"
    assert job.progress.percentage == 66.5
    assert job.metrics.current_loss == 0.342
    assert [c.id for c in job.checkpoints] == ["ckpt-epoch-1"]
    with pytest.raises(JobNotFound, match="nope"):
        client.training.jobs.get("nope")


def test_list_filters_sorts_and_paginates(client: TensorOneClient, cluster: EmulatorServer) -> None:
    for name in ("job-a", "job-b", "job-c"):
        create_job(client, name)
    set_status(cluster, "job-b", {"phase": "Completed"})
    everything = client.training.jobs.list(sort="name", order="asc")
    assert [j.id for j in everything.jobs] == ["job-a", "job-b", "job-c"]
    assert not everything.pagination.has_more
    page = client.training.jobs.list(sort="name", order="desc", limit=2)
    assert [j.id for j in page.jobs] == ["job-c", "job-b"]
    assert page.pagination.total == 3 and page.pagination.has_more
    second = client.training.jobs.list(sort="name", order="desc", limit=2, offset=2)
    assert [j.id for j in second.jobs] == ["job-a"]
    assert [j.id for j in client.training.jobs.list(status="completed").jobs] == ["job-b"]
    assert client.training.jobs.list(model_type="vision").jobs == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "done"}, "status"),
        ({"model_type": "audio"}, "modelType"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sort": "size"}, "sort"),
        ({"order": "up"}, "order"),
    ],
)
def test_list_refuses_bad_filters_naming_the_field(client: TensorOneClient, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        client.training.jobs.list(**kwargs)
    assert caught.value.field == field


def test_stop_suspends_and_keeps_the_reason(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "stopper")
    set_status(cluster, "stopper", {"phase": "Running"})
    client.training.jobs.stop("stopper", reason="User requested stop")
    stored = cluster.api.get(API, "TrainingJob", "stopper")
    assert stored["spec"]["suspend"] is True
    assert stored["metadata"]["annotations"]["training.tensorone.ai/stop-reason"] == "User requested stop"
    with pytest.raises(ConfigurationError) as caught:
        client.training.jobs.stop("stopper", save_checkpoint=False)
    assert caught.value.field == "saveCheckpoint"


def test_stop_refuses_a_finished_job(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "finished")
    set_status(cluster, "finished", {"phase": "Completed"})
    with pytest.raises(InvalidJobState, match="completed"):
        client.training.jobs.stop("finished")


def test_resume_from_a_named_checkpoint(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "resumer")
    client.training.jobs.stop("resumer", reason="pause")
    set_status(
        cluster,
        "resumer",
        {"phase": "Stopped", "checkpoints": [{"id": "ckpt-epoch-1", "epoch": 1, "step": 10}]},
    )
    with pytest.raises(CheckpointNotFound, match="ckpt-epoch-1"):
        client.training.jobs.resume("resumer", checkpoint_id="ckpt-step-999")
    client.training.jobs.resume("resumer", checkpoint_id="ckpt-epoch-1")
    stored = cluster.api.get(API, "TrainingJob", "resumer")
    assert stored["spec"]["suspend"] is False
    assert stored["spec"]["resumeFrom"] == "ckpt-epoch-1"
    assert "training.tensorone.ai/stop-reason" not in stored["metadata"].get("annotations", {})


def test_resume_refuses_a_job_that_is_not_stopped(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "running")
    set_status(cluster, "running", {"phase": "Running"})
    with pytest.raises(InvalidJobState, match="not stopped"):
        client.training.jobs.resume("running")


def test_cancel_is_final(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "canceller")
    client.training.jobs.cancel("canceller")
    assert cluster.api.get(API, "TrainingJob", "canceller")["spec"]["cancel"] is True
    # The CRD's transition rule refuses undoing it, whoever tries.
    with pytest.raises(Exception, match="cancel cannot be undone"):
        cluster.api.patch(API, "TrainingJob", "canceller", {"spec": {"cancel": False}})


def test_delete_and_force_delete(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "plain")
    assert client.training.jobs.delete("plain") == "deleted"
    assert cluster.api.find(API, "TrainingJob", "plain") is None
    create_job(client, "stuck")
    cluster.api.patch(API, "TrainingJob", "stuck", {"metadata": {"finalizers": ["training.tensorone.ai/finalizer"]}})
    assert client.training.jobs.delete("stuck") == "terminating"
    assert cluster.api.get(API, "TrainingJob", "stuck")["metadata"].get("deletionTimestamp")
    assert client.training.jobs.delete("stuck", force=True) == "deleted"
    assert cluster.api.find(API, "TrainingJob", "stuck") is None
    with pytest.raises(JobNotFound):
        client.training.jobs.delete("plain")


def test_list_checkpoints_newest_first(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "ckpts")
    set_status(
        cluster,
        "ckpts",
        {
            "phase": "Running",
            "checkpoints": [
                {"id": "ckpt-epoch-1", "epoch": 1, "step": 10, "createdAt": "2026-01-01T10:00:00Z"},
                {"id": "ckpt-step-15", "epoch": 1, "step": 15, "createdAt": "2026-01-01T10:05:00Z"},
            ],
        },
    )
    assert [c.id for c in client.training.jobs.list_checkpoints("ckpts")] == ["ckpt-step-15", "ckpt-epoch-1"]


def test_the_final_model_is_listed_first_and_marked_final(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "done")
    set_status(
        cluster,
        "done",
        {
            "phase": "Completed",
            "checkpoints": [
                {"id": "ckpt-step-5", "epoch": 0, "step": 5, "loss": 0.9, "createdAt": "2026-01-01T10:00:00Z"},
                {"id": "ckpt-step-8", "epoch": 1, "step": 8, "loss": 1.1, "createdAt": "2026-01-01T10:05:00Z"},
            ],
            "bestCheckpoint": "ckpt-step-5",
            "output": {
                "path": "output",
                "kind": "adapter",
                "sizeBytes": 1_200_000,
                "size": "1.2MB",
                "sha256": "0f" * 32,
                "baseModel": "m",
                "checkpoint": "ckpt-step-5",
                "createdAt": "2026-01-01T10:06:00Z",
            },
        },
    )
    job = client.training.jobs.get("done")
    assert job.best_checkpoint == "ckpt-step-5" and job.output is not None and job.output.sha256 == "0f" * 32
    listed = client.training.jobs.list_checkpoints("done")
    assert [(c.id, c.type) for c in listed] == [
        ("final", "final"),
        ("ckpt-step-8", "intermediate"),
        ("ckpt-step-5", "intermediate"),
    ]
    assert (listed[0].step, listed[0].loss, listed[0].size) == (5, 0.9, "1.2MB")


def test_list_events_of_one_job(client: TensorOneClient, cluster: EmulatorServer) -> None:
    create_job(client, "evented")
    create_job(client, "other")
    for name, reason in (("evented", "Started"), ("other", "Started"), ("evented", "CheckpointSaved")):
        cluster.api.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{name}-", "namespace": "default"},
                "involvedObject": {"apiVersion": API, "kind": "TrainingJob", "name": name, "namespace": "default"},
                "reason": reason,
                "message": f"{reason} {name}",
                "type": "Normal",
                "count": 1,
                "lastTimestamp": "2026-01-01T10:00:00Z" if reason == "Started" else "2026-01-01T10:05:00Z",
            }
        )
    events = client.training.jobs.list_events("evented")
    assert [e.reason for e in events] == ["Started", "CheckpointSaved"]


def test_reference_ids_map_as_t1_convert_maps_them(client: TensorOneClient, cluster: EmulatorServer) -> None:
    cluster.api.create(dataset("ds-1234567890abcdef"))
    job = create_job(client, "My Job", dataset_id="ds_1234567890abcdef")
    assert (job.id, job.name, job.dataset_id) == ("my-job", "My Job", "ds_1234567890abcdef")
    stored = cluster.api.get(API, "TrainingJob", "my-job")
    converted = job_from_rest({"name": "My Job", "datasetId": "ds_1234567890abcdef", "modelType": "llm", "config": {}})
    assert stored["metadata"]["annotations"] == converted["metadata"]["annotations"]
    assert stored["spec"]["datasetId"] == converted["spec"]["datasetId"] == "ds-1234567890abcdef"


def test_create_refuses_a_job_that_could_never_start(client: TensorOneClient, cluster: EmulatorServer) -> None:
    with pytest.raises(DatasetNotFound) as missing:
        create_job(client, "no-data", dataset_id="ds_invalid_id")
    assert (missing.value.code, missing.value.field) == ("DATASET_NOT_FOUND", "spec.datasetId")
    assert missing.value.details["datasetId"] == "ds_invalid_id"
    with pytest.raises(InsufficientResources) as short:
        create_job(client, "no-gpu", gpu_type="h100")
    assert short.value.details["requestedGpuType"] == "h100"
    assert short.value.details["availableGpuTypes"] == ["a100"]
    with pytest.raises(ConfigurationError) as unknown:
        create_job(client, "no-type", gpu_type="tpu")
    assert unknown.value.field == "spec.gpuType"
    assert cluster.api.list(API, "TrainingJob") == []


def test_a_credential_that_may_not_list_nodes_leaves_the_node_check_out(cluster: EmulatorServer) -> None:
    # What a namespace's edit role gives: TrainingJobs and Datasets, nothing on Nodes (cluster-wide).
    editor = {(method, plural) for method in ("GET", "POST") for plural in ("trainingjobs", "datasets")}
    cluster.emulator.tokens.update({"": None, "editor": editor})
    configuration = k8s.Configuration(host=cluster.url)
    configuration.api_key = {"authorization": "editor"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    client = TensorOneClient(namespace="default", api_client=k8s.ApiClient(configuration))
    job = create_job(client, "no-gpu-yet", gpu_type="h100")  # no node offers h100: the operator holds it
    assert job.id == "no-gpu-yet"
    assert cluster.api.get(API, "TrainingJob", "no-gpu-yet")["spec"]["gpuType"] == "h100"


def test_a_name_in_use_is_already_exists(client: TensorOneClient) -> None:
    create_job(client, "twice")
    with pytest.raises(AlreadyExists) as caught:
        create_job(client, "twice")
    assert caught.value.code == "ALREADY_EXISTS" and caught.value.details == {"jobId": "twice"}


def test_an_unreachable_cluster_is_a_connection_error() -> None:
    configuration = k8s.Configuration(host=f"http://127.0.0.1:{free_port()}")
    configuration.retries = 0
    client = TensorOneClient(namespace="default", api_client=k8s.ApiClient(configuration))
    with pytest.raises(Unreachable) as caught:
        client.training.jobs.list()
    assert caught.value.code == "CONNECTION_ERROR"
    assert "cannot reach the Kubernetes API at http://127.0.0.1:" in str(caught.value)
    assert "object at 0x" not in str(caught.value)


def test_an_unchanged_dataset_is_created_again_without_error(client: TensorOneClient) -> None:
    spec = {"format": "jsonl", "source": {"inline": {"records": [{"text": "hello"}]}}}
    assert client.datasets.apply(name="again", spec=spec)[1] is True
    assert client.datasets.apply(name="again", spec=spec)[1] is False
    with pytest.raises(AlreadyExists, match="another spec"):
        client.datasets.create(name="again", spec={**spec, "format": "json"})
