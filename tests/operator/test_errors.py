"""Error conditions (reference error codes, Kubernetes-style), waiting that resolves by itself,
operator restarts, and the operator's metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from types import SimpleNamespace
from typing import cast

import kopf
import pytest
from prometheus_client import REGISTRY
from tensorone_operator import main
from tensorone_operator.children import ChildRefused, Children
from tensorone_operator.config import OperatorConfig
from tensorone_operator.indexes import INDEX_NODES, INDEX_WAITING
from tensorone_operator.kube import KubeApi
from tensorone_operator.reconcile import Reconciler

from tensorone.api.v1alpha1 import TrainingJob
from tests.kube.emulator import FaithfulEmulator
from tests.kube.polling import wait_for
from tests.kube.server import ApiClient, EmulatorServer
from tests.operator.kit import (
    PYTORCHJOB,
    TJ,
    child_job,
    condition,
    dataset,
    event_with,
    gpu_node,
    job_status,
    play_training_operator,
    reason_of,
    training_job,
)
from tests.operator.runner import OperatorThread


@pytest.fixture
def retries_only_in_an_hour(cluster: EmulatorServer) -> Iterator[OperatorThread]:
    """An operator whose daemons tick far beyond any wait of a test: what resumes a waiting job
    within the test is the watch of the Dataset or Node it waits for, whatever the machine's load."""
    with OperatorThread(cluster, OperatorConfig(progress_poll_seconds=3600)) as running:
        yield running


@pytest.mark.usefixtures("retries_only_in_an_hour")
def test_dataset_not_found_waits_then_proceeds_when_it_appears(cluster: EmulatorServer) -> None:
    cluster.api.create(training_job())
    wait_for(lambda: reason_of(cluster.api, "DatasetReady") == "DATASET_NOT_FOUND")
    status = job_status(cluster.api)
    assert status["phase"] == "Pending"
    assert "spec.datasetId" in condition(status, "DatasetReady")["message"]
    assert "'chat'" in condition(status, "DatasetReady")["message"]
    assert condition(status, "Stalled")["status"] == "False"  # waiting, not stuck
    wait_for(lambda: event_with(cluster.api, "DATASET_NOT_FOUND", "Warning"))
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None
    # GitOps applies in any order: the Dataset arrives later and the job proceeds by itself, long
    # before its re-check is due.
    cluster.api.create(dataset())
    wait_for(lambda: child_job(cluster.api))
    wait_for(lambda: reason_of(cluster.api, "DatasetReady") == "Checked")


@pytest.mark.usefixtures("retries_only_in_an_hour")
def test_insufficient_resources_lists_types_then_proceeds_when_a_node_joins(cluster: EmulatorServer) -> None:
    cluster.api.create(dataset())
    cluster.api.create(gpu_node("v100-1", "Tesla-V100-SXM2-16GB"))
    cluster.api.create(gpu_node("l4-1", "NVIDIA-L4"))
    cluster.api.create(training_job(gpuType="h100"))
    wait_for(lambda: reason_of(cluster.api, "ResourcesAvailable") == "INSUFFICIENT_RESOURCES")
    message = condition(job_status(cluster.api), "ResourcesAvailable")["message"]
    assert "available GPU types: l4, v100" in message and "spec.gpuType" in message
    wait_for(lambda: event_with(cluster.api, "INSUFFICIENT_RESOURCES", "Warning"))
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None
    cluster.api.create(gpu_node("h100-1", "NVIDIA-H100-80GB-HBM3"))
    wait_for(lambda: child_job(cluster.api))


async def test_a_node_event_ahead_of_the_jobs_own_status_event_still_wakes_the_job(cluster: EmulatorServer) -> None:
    """The TrainingJob watch and the Node watch are separate streams: the Node event that ends a
    wait can come before the event of the status that made the job wait, while the index of
    waiting jobs (fed by the TrainingJob watch) does not list the job yet. The wake still finds
    it: the reconciler keeps what it wrote."""
    api = KubeApi(cluster.url, {}, False)
    reconciler = Reconciler(OperatorConfig(), api, lambda job, kind, reason, message: None)
    memo = SimpleNamespace(reconciler=reconciler)
    try:
        cluster.api.create(dataset())
        cluster.api.create(gpu_node("l4-1", "NVIDIA-L4"))
        cluster.api.create(training_job(gpuType="h100"))
        outcome = await reconciler.reconcile({"metadata": {"namespace": "default", "name": "llama"}})
        assert outcome.waiting and reason_of(cluster.api, "ResourcesAvailable") == "INSUFFICIENT_RESOURCES"
        h100 = cluster.api.create(gpu_node("h100-1", "NVIDIA-H100-80GB-HBM3"))
        # The index of GPU nodes as kopf keeps it, from the operator's own indexing function.
        nodes = {
            None: [
                (await main.gpu_nodes(body=kopf.Body(cast(kopf.RawBody, node))))[None]
                for node in (cluster.api.get("v1", "Node", "l4-1"), h100)
            ]
        }
        await main.gpu_node_changed(memo, **{INDEX_WAITING: {}, INDEX_NODES: nodes})  # the index lags
        assert child_job(cluster.api)["metadata"]["name"] == "llama"
    finally:
        await reconciler.close()


def test_a_dataset_too_large_for_the_jobs_config_map_is_refused_before_anything_is_created(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    # Under 1 MiB as the Dataset's JSON, over it as the YAML of the job's ConfigMap (long lines fold).
    cluster.api.create(dataset(records=[{"text": ("wordy " * 170)[:1000]} for _ in range(1000)]))
    cluster.api.create(training_job())
    wait_for(lambda: reason_of(cluster.api, "ConfigurationValid") == "CONFIGURATION_ERROR")
    status = job_status(cluster.api)
    message = condition(status, "ConfigurationValid")["message"]
    assert "Dataset 'chat'" in message and "limit of 1048576 bytes" in message, message
    assert condition(status, "Stalled")["status"] == "True"
    assert cluster.api.find("v1", "ConfigMap", "llama-config") is None
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None


async def test_a_child_the_api_server_refuses_is_a_configuration_error_with_its_message(
    cluster: EmulatorServer,
) -> None:
    api = KubeApi(cluster.url, {}, False)
    children = Children(OperatorConfig(), api)
    job = TrainingJob.model_validate(cluster.api.create(training_job()))
    refused = {"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "default", "name": "llama-config"}}
    try:
        with pytest.raises(ChildRefused, match="the API server refused the Secret 'llama-config': expected v1"):
            await children._ensure(job, "v1", "configmaps", refused)
    finally:
        await api.close()


def held_by(api: ApiClient, kind: str, reason: str, name: str) -> bool:
    """Whether the job's condition ``kind`` has ``reason``."""
    return reason_of(api, kind, name) == reason


def woken(api: ApiClient, names: list[str], touch: Callable[[int], object]) -> bool:
    """Whether every job has its child; else ``touch`` the object they wait on again (kopf's index
    of waiting jobs follows its watch, and may not yet hold a job the API shows waiting)."""
    missing = [name for name in names if api.find(PYTORCHJOB, "PyTorchJob", name) is None]
    if missing:
        touch(len(missing))
    return not missing


def no_index_errors(caplog: pytest.LogCaptureFixture) -> None:
    changed = [r.getMessage() for r in caplog.records if "changed size during iteration" in r.getMessage()]
    assert not changed, changed


@pytest.mark.usefixtures("retries_only_in_an_hour")
def test_every_job_waiting_on_a_dataset_is_woken_when_it_appears(
    cluster: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"waiting-{i}" for i in range(4)]
    for name in names:
        cluster.api.create(training_job(name))
    for name in names:
        wait_for(partial(held_by, cluster.api, "DatasetReady", "DATASET_NOT_FOUND", name))
    cluster.api.create(dataset())

    def touch(count: int) -> None:
        cluster.api.patch(TJ, "Dataset", "chat", {"metadata": {"labels": {"touched": str(count)}}})

    wait_for(lambda: woken(cluster.api, names, touch), "every job woken by the Dataset")
    no_index_errors(caplog)


@pytest.mark.usefixtures("retries_only_in_an_hour")
def test_every_job_waiting_on_a_gpu_node_is_woken_when_one_joins(
    cluster: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"waiting-{i}" for i in range(4)]
    cluster.api.create(dataset())
    for name in names:
        cluster.api.create(training_job(name, gpuType="h100"))
    for name in names:
        wait_for(partial(held_by, cluster.api, "ResourcesAvailable", "INSUFFICIENT_RESOURCES", name))
    cluster.api.create(gpu_node("h100-1", "NVIDIA-H100-80GB-HBM3"))

    def touch(count: int) -> None:
        cluster.api.patch("v1", "Node", "h100-1", {"metadata": {"labels": {"touched": str(count)}}})

    wait_for(lambda: woken(cluster.api, names, touch), "every job woken by the node")
    no_index_errors(caplog)


def test_a_waiting_job_is_logged_at_info_with_its_reason(
    cluster: EmulatorServer, operator: OperatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cluster.api.create(training_job())
    wait_for(lambda: reason_of(cluster.api, "DatasetReady") == "DATASET_NOT_FOUND")
    wait_for(lambda: any("waiting: spec.datasetId" in r.getMessage() for r in caplog.records))
    waiting = [r for r in caplog.records if "spec.datasetId" in r.getMessage()]
    assert {r.levelno for r in waiting} == {logging.INFO}, [r.getMessage() for r in waiting]


def test_a_dataset_of_the_wrong_format_is_rechecked_when_it_is_fixed(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    cluster.api.create(dataset(format="imagefolder", source={"uri": "s3://bucket/images/"}))
    cluster.api.create(training_job())
    wait_for(lambda: reason_of(cluster.api, "ConfigurationValid") == "CONFIGURATION_ERROR")
    cluster.api.patch(TJ, "Dataset", "chat", {"spec": {"format": "jsonl"}})
    wait_for(lambda: child_job(cluster.api))
    wait_for(lambda: reason_of(cluster.api, "ConfigurationValid") == "Checked")


def test_a_foreign_object_in_the_way_is_rechecked_once_it_is_gone(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "llama-config", "namespace": "default"}}
    cluster.api.create(foreign)
    cluster.api.create(dataset())
    cluster.api.create(training_job())
    wait_for(lambda: reason_of(cluster.api, "ConfigurationValid") == "CONFIGURATION_ERROR")
    cluster.api.delete("v1", "ConfigMap", "llama-config", "default")
    wait_for(lambda: child_job(cluster.api))


def test_a_stale_dataset_condition_goes_while_the_job_waits_on_gpus(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    cluster.api.create(training_job(gpuType="h100"))
    wait_for(lambda: reason_of(cluster.api, "DatasetReady") == "DATASET_NOT_FOUND")
    cluster.api.create(dataset())
    wait_for(lambda: reason_of(cluster.api, "ResourcesAvailable") == "INSUFFICIENT_RESOURCES")
    assert condition(job_status(cluster.api), "DatasetReady")["status"] == "True"


def test_a_dataset_that_is_not_ready_holds_the_job_until_it_is(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    cluster.api.create(dataset(source={"pvc": {"claimName": "data"}}))
    cluster.api.create(training_job())
    wait_for(lambda: reason_of(cluster.api, "DatasetReady") == "CLAIM_NOT_FOUND")
    status = job_status(cluster.api)
    assert condition(status, "Stalled")["status"] == "False" and "'chat' is not Ready" in status["message"]
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cluster.api.create(claim)
    wait_for(lambda: child_job(cluster.api))


@pytest.mark.slow  # two operator lifetimes: kopf's start, and its stop with daemons cancelled
def test_waiting_job_proceeds_after_a_restart_when_the_dataset_appeared_meanwhile(cluster: EmulatorServer) -> None:
    with OperatorThread(cluster):
        cluster.api.create(training_job())
        wait_for(lambda: reason_of(cluster.api, "DatasetReady") == "DATASET_NOT_FOUND")
    cluster.api.create(dataset())
    with OperatorThread(cluster):
        wait_for(lambda: child_job(cluster.api))


def test_unknown_gpu_type_lists_the_catalog(cluster: EmulatorServer, operator: OperatorThread) -> None:
    cluster.api.create(dataset())
    cluster.api.create(training_job(gpuType="tpu-v5"))
    wait_for(lambda: reason_of(cluster.api, "ConfigurationValid") == "CONFIGURATION_ERROR")
    status = job_status(cluster.api)
    message = condition(status, "ConfigurationValid")["message"]
    assert message.startswith("spec.gpuType: unknown GPU type 'tpu-v5'")
    assert "a100" in message and "rtx4090" in message
    assert condition(status, "Stalled")["status"] == "True"
    assert status["phase"] == "Pending"
    wait_for(lambda: event_with(cluster.api, "CONFIGURATION_ERROR", "Warning"))
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None


def test_the_reference_yolov8_request_is_refused_before_anything_is_scheduled(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    # Everything else is in place: a Dataset of images and a node with the GPU type.
    cluster.api.create(dataset("objects", format="coco", source={"pvc": {"claimName": "images"}}))
    cluster.api.create(gpu_node("v100-1", "Tesla-V100-SXM2-16GB"))
    vision = {"architecture": "yolov8", "inputSize": [640, 640], "numClasses": 80}
    cluster.api.create(
        training_job("detector", modelType="vision", datasetId="objects", gpuType="v100", maxWorkers=4, config=vision)
    )
    wait_for(lambda: reason_of(cluster.api, "ConfigurationValid", "detector") == "CONFIGURATION_ERROR")
    status = job_status(cluster.api, "detector")
    message = condition(status, "ConfigurationValid")["message"]
    assert message.startswith("spec.config.architecture: architecture 'yolov8' is not built"), message
    assert "Ultralytics, licensed AGPL-3.0" in message and "Supported: rt-detr-r18, rt-detr-r50" in message
    assert condition(status, "Stalled")["status"] == "True"
    assert status["phase"] == "Pending"
    assert "resourceUsage" not in status  # nothing ran, nothing is billed
    wait_for(lambda: event_with(cluster.api, "CONFIGURATION_ERROR", "Warning", "detector"))
    for api_version, kind, name in (
        (PYTORCHJOB, "PyTorchJob", "detector"),
        ("v1", "ConfigMap", "detector-config"),
        ("v1", "PersistentVolumeClaim", "detector-checkpoints"),
    ):
        assert cluster.api.find(api_version, kind, name) is None, kind


def test_configuration_error_names_the_field(cluster: EmulatorServer, operator: OperatorThread) -> None:
    cluster.api.create(dataset())
    custom = {"image": "me/train:1", "env": [{"name": "WORLD_SIZE", "value": "1"}]}
    cluster.api.create(training_job(modelType="custom", config={"custom": custom}))
    wait_for(lambda: reason_of(cluster.api, "ConfigurationValid") == "CONFIGURATION_ERROR")
    message = condition(job_status(cluster.api), "ConfigurationValid")["message"]
    assert message.startswith("spec.config.custom.env[0].name: WORLD_SIZE is set by the operator")
    event = wait_for(lambda: event_with(cluster.api, "CONFIGURATION_ERROR", "Warning"))
    assert "spec.config.custom.env[0].name" in str(event["message"])


def test_a_foreign_object_with_the_childs_name_is_never_adopted(
    cluster: EmulatorServer, operator: OperatorThread
) -> None:
    cluster.api.create(dataset())
    cluster.api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "llama-config"}, "data": {}})
    cluster.api.create(training_job())
    wait_for(lambda: reason_of(cluster.api, "ConfigurationValid") == "CONFIGURATION_ERROR")
    assert "not owned by this TrainingJob" in condition(job_status(cluster.api), "ConfigurationValid")["message"]
    assert cluster.api.get("v1", "ConfigMap", "llama-config")["data"] == {}


@pytest.mark.slow  # two operator lifetimes, and the first one's retry of the failed create
def test_restart_mid_reconcile_creates_no_duplicates_and_converges(cluster: EmulatorServer) -> None:
    cluster.api.create(dataset())
    # The operator dies between creating the ConfigMap and the PyTorchJob.
    cluster.emulator.faults[("POST", "pytorchjobs")] = 500
    with OperatorThread(cluster):
        cluster.api.create(training_job())
        wait_for(lambda: cluster.api.find("v1", "PersistentVolumeClaim", "llama-checkpoints"))
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama") is None
    del cluster.emulator.faults[("POST", "pytorchjobs")]
    with OperatorThread(cluster):
        wait_for(lambda: job_status(cluster.api).get("childName") == "llama")
        play_training_operator(cluster.api, "llama", "Running", active=1)
        wait_for(lambda: job_status(cluster.api).get("phase") == "Running")
    for api_version, kind, name in [
        ("v1", "ConfigMap", "llama-config"),
        ("v1", "PersistentVolumeClaim", "llama-checkpoints"),
        (PYTORCHJOB, "PyTorchJob", "llama"),
    ]:
        versions = cluster.emulator.versions(api_version, kind, "default", name)
        uids = {v["metadata"]["uid"] for v in versions}
        assert len(uids) == 1, f"{kind} {name} was created {len(uids)} times"

    def writes() -> dict[str, int]:
        """How many versions of each object the emulator has stored."""
        return {
            kind: len(cluster.emulator.versions(api_version, kind, "default", name))
            for api_version, kind, name in [
                (TJ, "TrainingJob", "llama"),
                (PYTORCHJOB, "PyTorchJob", "llama"),
                ("v1", "ConfigMap", "llama-config"),
            ]
        }

    # A third start with nothing to do writes nothing: the operator converged.
    before = writes()
    with OperatorThread(cluster) as third:
        wait_for(lambda: third.reconciler.phases.count("Running") == 1)
    after = writes()
    assert after["PyTorchJob"] == before["PyTorchJob"] and after["ConfigMap"] == before["ConfigMap"]
    assert job_status(cluster.api)["phase"] == "Running"


def test_restart_while_running_keeps_following_the_child(cluster: EmulatorServer) -> None:
    cluster.api.create(dataset())
    with OperatorThread(cluster):
        cluster.api.create(training_job())
        wait_for(lambda: child_job(cluster.api))
        play_training_operator(cluster.api, "llama", "Running", active=1)
        wait_for(lambda: job_status(cluster.api).get("phase") == "Running")
    # The child finishes while no operator runs.
    play_training_operator(cluster.api, "llama", "Succeeded", succeeded=1)
    with OperatorThread(cluster):
        wait_for(lambda: job_status(cluster.api).get("phase") == "Completed")


def test_metrics_count_reconciles_errors_and_jobs_by_phase(cluster: EmulatorServer) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    reconciles = sample("tensorone_operator_reconciles_total", result="ok")
    missing = sample("tensorone_operator_errors_total", reason="DATASET_NOT_FOUND")
    durations = sample("tensorone_operator_reconcile_duration_seconds_count")
    with OperatorThread(cluster, OperatorConfig(progress_poll_seconds=0.5)) as operator:
        cluster.api.create(training_job(name="waits", datasetId="later"))
        cluster.api.create(dataset())
        cluster.api.create(training_job())
        wait_for(lambda: operator.reconciler.phases.count("Pending") == 2)
        wait_for(lambda: sample("tensorone_operator_reconciles_total", result="ok") > reconciles)
        # A reconcile records its job's phase as it writes the status, and counts its outcome when
        # it returns: the counters may lag the phase book by one reconcile.
        wait_for(
            lambda: sample("tensorone_operator_errors_total", reason="DATASET_NOT_FOUND") > missing,
            what="a DATASET_NOT_FOUND counted",
        )
        wait_for(
            lambda: sample("tensorone_operator_reconcile_duration_seconds_count") > durations,
            what="a reconcile duration observed",
        )
        assert sample("tensorone_operator_jobs", phase="Pending") >= 2
        cluster.api.delete(TJ, "TrainingJob", "waits")
        wait_for(lambda: operator.reconciler.phases.count("Pending") == 1)


def test_an_operator_started_beside_hundreds_of_jobs_reconciles_every_one() -> None:
    # More jobs than any number of kopf tasks one might think enough: at start-up each task waits
    # until every object is indexed, so a limit on them would hold every job forever.
    count = 300
    with EmulatorServer(FaithfulEmulator(validate_writes=False)) as cluster:
        cluster.api.create(dataset())
        for index in range(count):
            cluster.api.create(training_job(f"job-{index}"))
        with OperatorThread(cluster, OperatorConfig(progress_poll_seconds=3600)):

            def children() -> int:
                made = len(cluster.api.list(PYTORCHJOB, "PyTorchJob", "default"))
                assert made == count, f"{made} of {count} PyTorchJobs"
                return made

            wait_for(children, f"{count} PyTorchJobs")
