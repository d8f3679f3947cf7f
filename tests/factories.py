"""The objects the tests and bench/ put into a cluster, each built from its model and returned in
wire form (a dict with camelCase keys, as a client sends it).

TrainingJobs and Datasets go through the API models (``TrainingJobSpec``, ``DatasetSpec``): a field
misspelt or out of range in a test fails where the object is built, not in the API server. Only
the fields given are written; the API server (or the emulator) fills in the schema's defaults, as it
does for a user's manifest. Keyword overrides take the field's wire name or its Python name
(``gpuType`` or ``gpu_type``). An object the API must refuse is made by editing the dict a factory
returns.

GPU Nodes and Pods go through the Kubernetes client's models; a PyTorchJob's status through
``tests.kube.training_operator``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The models are bound here, once: the client loads them lazily, and that loading is not safe
# from several threads at once (the benchmarks build pods in a thread pool).
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStatus,
    V1Node,
    V1NodeStatus,
    V1ObjectMeta,
    V1OwnerReference,
    V1Pod,
    V1PodStatus,
)
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from tensorone.api.v1alpha1 import Dataset, DatasetSpec, TrainingJob, TrainingJobSpec
from tensorone.api.v1alpha1.trainingjob import ObjectMeta

REPO = Path(__file__).resolve().parents[1]
API: str = TrainingJob.model_fields["api_version"].default  # training.tensorone.ai/v1alpha1
PYTORCHJOB = "kubeflow.org/v1"

LLAMA_7B = "meta-llama/Llama-2-7b-hf"
# The tiny Llama-style model and instruction records shipped in examples/: the real trainer runs
# them in seconds on a CPU.
TINY_MODEL = str(REPO / "examples" / "models" / "tiny-llama")
RECORDS: list[dict[str, Any]] = [
    json.loads(line) for line in (REPO / "examples" / "data" / "tiny-instructions.jsonl").read_text().splitlines()
]
# Hyperparameters under which the tiny model learns visibly within a few epochs of short sequences.
TINY_TRAINING: dict[str, Any] = {"batchSize": 8, "learningRate": 0.01, "maxSeqLength": 64}

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_RESOURCE = "nvidia.com/gpu"


def now() -> datetime:
    """The current time to the second, in UTC: the precision of Kubernetes timestamps."""
    return datetime.now(UTC).replace(microsecond=0)


def timestamp(moment: datetime | None = None) -> str:
    """A time as the API server writes one (RFC 3339, UTC, whole seconds); now by default."""
    return (moment or now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wire(model: BaseModel) -> dict[str, Any]:
    """A model as a client sends it: camelCase keys, only the fields that were given."""
    return model.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")


def _wire_names(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {to_camel(name): value for name, value in fields.items()}


def _metadata(name: str, namespace: str | None, extra: Mapping[str, Any] | None) -> ObjectMeta:
    return ObjectMeta.model_validate({"name": name, "namespace": namespace, **(extra or {})})


def lora_config(base_model: str = LLAMA_7B, **training: Any) -> dict[str, Any]:
    """A TrainingJob's ``config``: LoRA on ``base_model``; ``training`` sets hyperparameters."""
    config: dict[str, Any] = {"baseModel": base_model, "strategy": "lora"}
    if training:
        config["training"] = _wire_names(training)
    return config


def tiny_config(base_model: str = TINY_MODEL, **training: Any) -> dict[str, Any]:
    """LoRA on the tiny model with ``TINY_TRAINING``; ``training`` overrides or adds hyperparameters."""
    return lora_config(base_model, **{**TINY_TRAINING, **_wire_names(training)})


def training_job(
    name: str = "llama",
    namespace: str | None = "default",
    *,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A TrainingJob: an llm LoRA job of Llama-2-7b on the Dataset ``chat``, CPU-only unless
    ``gpuType`` is given. ``spec`` overrides spec fields (``config`` as a whole); ``metadata`` adds
    fields such as ``uid`` or ``creationTimestamp``; ``namespace=None`` leaves it to the client."""
    fields = {"modelType": "llm", "datasetId": "chat", "config": lora_config(), **_wire_names(spec)}
    extra = {**(metadata or {}), **({"labels": dict(labels)} if labels else {})}
    job = TrainingJob(
        api_version=API,
        kind="TrainingJob",
        metadata=_metadata(name, namespace, extra),
        spec=TrainingJobSpec.model_validate(fields),
    )
    return wire(job)


def dataset(
    name: str = "chat",
    namespace: str | None = "default",
    *,
    records: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Dataset of inline jsonl ``records`` (two lines of text unless given); ``spec`` overrides
    spec fields (``source`` or ``columns``, for example)."""
    source = {"inline": {"records": records if records is not None else [{"text": "hello"}, {"text": "world"}]}}
    fields = {"format": "jsonl", "source": source, **_wire_names(spec)}
    data = Dataset(
        api_version=API,
        kind="Dataset",
        metadata=_metadata(name, namespace, None),
        spec=DatasetSpec.model_validate(fields),
    )
    return wire(data)


def tiny_dataset(
    name: str = "tiny", namespace: str | None = "default", *, records: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    """A Dataset of the tiny instruction records (``RECORDS`` unless given)."""
    return dataset(name, namespace, records=RECORDS if records is None else records, **spec)


def tiny_training_job(
    name: str,
    namespace: str | None = "default",
    *,
    dataset_id: str = "tiny",
    max_restarts: int = 0,
    **training: Any,
) -> dict[str, Any]:
    """A TrainingJob the real trainer runs in seconds: ``tiny_config`` with seed 7 over the Dataset
    ``dataset_id``, and no restart by default (a failing pod fails the job at once). ``training``
    sets hyperparameters (``epochs``, ...)."""
    config = tiny_config(seed=7, **training)
    return training_job(name, namespace, datasetId=dataset_id, maxRestarts=max_restarts, config=config)


def stop_reason(progress: Mapping[str, Any]) -> str:
    """The reason the trainer gives the checkpoint it saves on a stop, from a report or a status's
    progress: a stop on an epoch's last step saves one checkpoint there, named for the epoch (with
    ``checkpointEveryEpoch``, the default)."""
    step = progress.get("currentStep", progress.get("step"))
    steps_per_epoch = progress["totalSteps"] // progress["totalEpochs"]
    return "epoch" if step % steps_per_epoch == 0 else "stop"


def gpu_node(name: str = "gpu-a100-1", product: str = "NVIDIA-A100-SXM4-80GB", gpus: int = 8) -> dict[str, Any]:
    """A Node as GPU Feature Discovery labels it, with its GPUs allocatable."""
    node = V1Node(
        api_version="v1",
        kind="Node",
        metadata=V1ObjectMeta(name=name, labels={GPU_PRODUCT_LABEL: product, GPU_COUNT_LABEL: str(gpus)}),
        status=V1NodeStatus(allocatable={GPU_RESOURCE: str(gpus), "cpu": "96", "memory": "1000Gi"}),
    )
    return _kube_wire(node)


def pod(
    name: str,
    owner: Mapping[str, Any],
    *,
    spec: Mapping[str, Any],
    labels: Mapping[str, str],
    finalizers: list[str] | None = None,
) -> dict[str, Any]:
    """A Pod controlled by ``owner`` (a PyTorchJob), in its namespace, running ``spec`` (a pod spec
    in wire form, as the owner's replica template holds it)."""
    meta = owner["metadata"]
    reference = V1OwnerReference(
        api_version=owner["apiVersion"],
        kind=owner["kind"],
        name=meta["name"],
        uid=meta["uid"],
        controller=True,
        block_owner_deletion=True,
    )
    obj = V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(
            name=name,
            namespace=meta["namespace"],
            labels=dict(labels),
            finalizers=finalizers,
            owner_references=[reference],
        ),
        spec=dict(spec),
    )
    return _kube_wire(obj)


def running_pod_status(
    container: Mapping[str, Any],
    *,
    pod_ip: str,
    started_at: datetime,
    restarts: int = 0,
    last_exit_code: int = 1,
) -> dict[str, Any]:
    """The status a kubelet writes once the pod's one container runs; after ``restarts`` restarts
    of the container, the last run's end (``last_exit_code``) is its ``lastState``."""
    state = V1ContainerState(running=V1ContainerStateRunning(started_at=started_at))
    last_state = None
    if restarts:
        ended = V1ContainerStateTerminated(
            exit_code=last_exit_code, reason="Completed" if last_exit_code == 0 else "Error", finished_at=started_at
        )
        last_state = V1ContainerState(terminated=ended)
    status = V1PodStatus(
        phase="Running",
        pod_ip=pod_ip,
        start_time=started_at,
        container_statuses=[
            _container_status(container, ready=True, state=state, restart_count=restarts, last_state=last_state)
        ],
    )
    return _kube_wire(status)


def terminated_pod_status(
    container: Mapping[str, Any], *, exit_code: int, message: str, finished_at: datetime, restarts: int = 0
) -> dict[str, Any]:
    """The status a kubelet writes once the pod's one container has exited (after ``restarts``
    restarts): the exit code and the termination message."""
    terminated = V1ContainerStateTerminated(
        exit_code=exit_code,
        reason="Completed" if exit_code == 0 else "Error",
        message=message,
        finished_at=finished_at,
    )
    status = V1PodStatus(
        phase="Succeeded" if exit_code == 0 else "Failed",
        container_statuses=[
            _container_status(
                container, ready=False, state=V1ContainerState(terminated=terminated), restart_count=restarts
            )
        ],
    )
    return _kube_wire(status)


def _container_status(
    container: Mapping[str, Any], *, ready: bool, state: Any, restart_count: int = 0, last_state: Any = None
) -> Any:
    image = str(container.get("image", ""))
    return V1ContainerStatus(
        name=container["name"],
        image=image,
        image_id=image,
        ready=ready,
        restart_count=restart_count,
        state=state,
        last_state=last_state,
    )


def _kube_wire(obj: Any) -> dict[str, Any]:
    """A Kubernetes client model in wire form (its JSON: timestamps in RFC 3339 with Z)."""
    wired: dict[str, Any] = json.loads(obj.to_json())
    return wired
