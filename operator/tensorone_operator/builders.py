"""Pure builders: a TrainingJob (and its Dataset) plus the operator config -> child manifests.

No I/O here: every function takes plain dicts (the objects as the API server stores them) and the
``OperatorConfig``, and returns plain dicts, so they are unit-tested with literals.

The PyTorchJob has the shape Training Operator v1.9 serves (kubeflow.org/v1): ``Master`` (rank 0)
plus ``maxWorkers - 1`` ``Worker`` replicas, ``restartPolicy: OnFailure``, a container named
``pytorch``, ``spec.nprocPerNode`` = GPUs per pod, and ``runPolicy`` carrying suspend (stop),
backoffLimit (maxRestarts), activeDeadlineSeconds (maxRuntimeSeconds) and cleanPodPolicy. The
Training Operator injects MASTER_ADDR, MASTER_PORT (the ``pytorchjob-port`` container port),
WORLD_SIZE, RANK (the node rank: 0 for the master, i+1 for worker i), PET_NNODES,
PET_NPROC_PER_NODE and PET_NODE_RANK into every pod; torchrun's rendezvous arguments are built
from them with Kubernetes' ``$(VAR)`` expansion, so no shell is ever involved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorone.api import API_VERSION
from tensorone.api.report import DEFAULT_TERMINATION_LOG, REPORT_PORT_ENV
from tensorone.api.resolved import (
    DEFAULT_CHECKPOINT_DIR,
    DEFAULT_DATASET_MOUNT,
    DEFAULT_JOB_CONFIG_PATH,
    JOB_CONFIG_ENV,
    ResolvedJob,
    resolve_job,
)
from tensorone.api.v1alpha1.dataset import DatasetSpec
from tensorone.api.v1alpha1.trainingjob import TrainingJobSpec
from tensorone_operator.catalog import GPU_PRODUCT_LABEL, GPU_RESOURCE, gpu_type, gpus_per_worker
from tensorone_operator.config import OperatorConfig

PYTORCHJOB_API_VERSION = "kubeflow.org/v1"
CONTAINER_NAME = "pytorch"  # the Training Operator looks for this container name
MASTER_PORT_NAME = "pytorchjob-port"  # ... and this port name, for MASTER_PORT
MASTER_PORT = 23456
REPORT_PORT_NAME = "report"
JOB_CONFIG_KEY = "job.yaml"
JOB_CONFIG_DIR = DEFAULT_JOB_CONFIG_PATH.rsplit("/", 1)[0]
KUEUE_LABEL_PREFIX = "kueue.x-k8s.io/"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_JOB_NAME = "training.tensorone.ai/job-name"
APP_NAME = "tensorone-training"
MANAGER = "tensorone-operator"


def config_map_name(job_name: str) -> str:
    """Name of the ConfigMap holding the resolved trainer configuration."""
    return f"{job_name}-config"


def checkpoint_claim_name(job: Mapping[str, Any]) -> str:
    """The checkpoint claim: the one the user names, or ``<job>-checkpoints`` the operator creates."""
    storage = job["spec"].get("checkpointStorage") or {}
    return str(storage.get("claimName") or f"{job['metadata']['name']}-checkpoints")


def owns_checkpoint_claim(job: Mapping[str, Any]) -> bool:
    """Whether the operator creates (and later deletes) the checkpoint claim."""
    return not (job["spec"].get("checkpointStorage") or {}).get("claimName")


def child_labels(job: Mapping[str, Any]) -> dict[str, str]:
    """Labels of every child and pod: ours, plus the job's Kueue labels (never app.kubernetes.io/instance,
    by which Argo CD tracks what it applied)."""
    labels = {
        LABEL_NAME: APP_NAME,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_JOB_NAME: job["metadata"]["name"],
    }
    for key, value in (job["metadata"].get("labels") or {}).items():
        if key.startswith(KUEUE_LABEL_PREFIX):
            labels[key] = value
    return labels


def owner_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    """The controller ownerReference to the TrainingJob: children are garbage-collected with it."""
    meta = job["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": job["metadata"]["namespace"],
        "labels": child_labels(job),
        "ownerReferences": [owner_reference(job)],
    }


def resolved_job(job: Mapping[str, Any], dataset: Mapping[str, Any], config: OperatorConfig) -> ResolvedJob:
    """The operator->trainer contract: the TrainingJob's config with defaults, and the Dataset's spec,
    at the paths where the pods mount the data and checkpoint claims."""
    spec = TrainingJobSpec.model_validate(job["spec"])
    return resolve_job(
        spec,
        DatasetSpec.model_validate(dataset["spec"]),
        name=job["metadata"]["name"],
        namespace=job["metadata"]["namespace"],
        uid=job["metadata"].get("uid"),
        report_port=_report_port(job["spec"], config),
        use_gpu=spec.gpu_type is not None,
    )


def _report_port(spec: Mapping[str, Any], config: OperatorConfig) -> int:
    custom = (spec.get("config") or {}).get("custom") or {}
    return int(custom.get("progressPort") or config.report_port)


def build_config_map(job: Mapping[str, Any], dataset: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """The ConfigMap ``<job>-config`` with the resolved job as YAML under ``job.yaml``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(job, config_map_name(job["metadata"]["name"])),
        "data": {JOB_CONFIG_KEY: resolved_job(job, dataset, config).to_yaml()},
    }


def build_checkpoint_claim(job: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """The checkpoint PVC the operator creates: ReadWriteMany, shared by every worker."""
    storage = job["spec"].get("checkpointStorage") or {}
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": storage.get("size") or config.checkpoint_storage.size}},
    }
    storage_class = storage.get("storageClassName") or config.checkpoint_storage.storage_class_name
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(job, checkpoint_claim_name(job)),
        "spec": spec,
    }


def _resources(spec: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    entry = gpu_type(spec, config)
    if entry is None:
        amounts = {"cpu": config.cpu_job.cpu, "memory": config.cpu_job.memory}
        return {"requests": dict(amounts), "limits": dict(amounts)}
    gpus = gpus_per_worker(spec)
    requests = {
        "cpu": _times(entry.cpu_per_gpu, gpus),
        "memory": _times(entry.host_memory_per_gpu, gpus),
        GPU_RESOURCE: str(gpus),
    }
    # Extended resources need limit == request; memory is limited too (no overcommit of host RAM).
    limits = {"memory": requests["memory"], GPU_RESOURCE: str(gpus)}
    return {"requests": requests, "limits": limits}


def _times(quantity: str, count: int) -> str:
    """A quantity multiplied by an integer, keeping its suffix (``12`` x 2 = ``24``, ``120Gi`` x 2 = ``240Gi``)."""
    number = quantity.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    suffix = quantity[len(number) :]
    value = float(number) * count
    return f"{value:g}{suffix}"


def _env(job: Mapping[str, Any], config: OperatorConfig) -> list[dict[str, Any]]:
    spec = job["spec"]
    env: list[dict[str, Any]] = [
        {"name": JOB_CONFIG_ENV, "value": DEFAULT_JOB_CONFIG_PATH},
        {"name": "TENSORONE_JOB_NAME", "value": job["metadata"]["name"]},
        # Where rank 0 serves /progress and /metrics; a custom image's Reporter reads it.
        {"name": REPORT_PORT_ENV, "value": str(_report_port(spec, config))},
    ]
    token = spec.get("hubTokenSecret")
    if token:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": token["name"], "key": token.get("key") or "token"}},
            }
        )
    custom = (spec.get("config") or {}).get("custom") or {}
    env.extend({"name": item["name"], "value": item.get("value", "")} for item in custom.get("env") or [])
    return env


def _command(job: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    spec = job["spec"]
    if spec["modelType"] == "custom":
        custom = spec["config"]["custom"]
        container: dict[str, Any] = {"image": custom["image"]}
        # An argument vector exactly as the user wrote it: never joined into a shell string.
        if custom.get("command"):
            container["command"] = list(custom["command"])
        if custom.get("args"):
            container["args"] = list(custom["args"])
        return container
    nodes = int(spec.get("maxWorkers") or 1)
    processes = max(gpus_per_worker(spec), 1)
    return {
        "image": config.trainer_image,
        # trainer.launch is torchrun (same options) that exits 0 when the trainer stopped cleanly
        # on SIGTERM; torchrun alone exits 1 then, and a stop would look like a failure.
        "command": [
            "python",
            "-m",
            "trainer.launch",
            f"--nnodes={nodes}",
            f"--nproc-per-node={processes}",
            # Set by the Training Operator on every pod; expanded by the kubelet, not a shell.
            "--node-rank=$(RANK)",
            "--master-addr=$(MASTER_ADDR)",
            "--master-port=$(MASTER_PORT)",
        ],
    }


def _affinity_or_selector(spec: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    entry = gpu_type(spec, config)
    if entry is None:
        return {}
    if len(entry.products) == 1:
        return {"nodeSelector": {GPU_PRODUCT_LABEL: entry.products[0]}}
    # A node selector takes one value per key: several products need a required node affinity.
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": list(entry.products)}
                            ]
                        }
                    ]
                }
            }
        }
    }


def build_pod_template(job: Mapping[str, Any], dataset: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """The pod template of every replica (the Training Operator adds the rank environment)."""
    spec = job["spec"]
    name = job["metadata"]["name"]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        **_command(job, config),
        "imagePullPolicy": config.trainer_image_pull_policy,
        "env": _env(job, config),
        "ports": [
            {"name": MASTER_PORT_NAME, "containerPort": MASTER_PORT, "protocol": "TCP"},
            {"name": REPORT_PORT_NAME, "containerPort": _report_port(spec, config), "protocol": "TCP"},
        ],
        "resources": _resources(spec, config),
        "volumeMounts": [
            {"name": "job-config", "mountPath": JOB_CONFIG_DIR, "readOnly": True},
            {"name": "checkpoints", "mountPath": DEFAULT_CHECKPOINT_DIR},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "terminationMessagePath": DEFAULT_TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    volumes: list[dict[str, Any]] = [
        {"name": "job-config", "configMap": {"name": config_map_name(name)}},
        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": checkpoint_claim_name(job)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": config.shm_size}},
    ]
    data_claim = (((dataset.get("spec") or {}).get("source") or {}).get("pvc") or {}).get("claimName")
    if data_claim:
        volumes.append({"name": "dataset", "persistentVolumeClaim": {"claimName": data_claim, "readOnly": True}})
        container["volumeMounts"].append({"name": "dataset", "mountPath": DEFAULT_DATASET_MOUNT, "readOnly": True})
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": config.termination_grace_period_seconds,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **_affinity_or_selector(spec, config),
    }
    if config.training_service_account:
        pod_spec["serviceAccountName"] = config.training_service_account
    priority_class = config.priority_classes.for_priority(spec.get("priority") or "normal")
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    if spec.get("gpuType"):
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": child_labels(job)}, "spec": pod_spec}


def build_run_policy(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``runPolicy``: the parts of the child the user may change on a running job."""
    policy: dict[str, Any] = {
        # Running pods are deleted when the job ends; the status keeps what they reported.
        "cleanPodPolicy": "Running",
        "backoffLimit": int(spec.get("maxRestarts", 3)),
        "suspend": bool(spec.get("suspend", False)),
    }
    if spec.get("maxRuntimeSeconds"):
        policy["activeDeadlineSeconds"] = int(spec["maxRuntimeSeconds"])
    return policy


def build_pytorchjob(job: Mapping[str, Any], dataset: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """The child PyTorchJob named like the TrainingJob."""
    spec = job["spec"]
    template = build_pod_template(job, dataset, config)
    workers = int(spec.get("maxWorkers") or 1)
    replicas: dict[str, Any] = {
        "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template},
    }
    if workers > 1:
        replicas["Worker"] = {"replicas": workers - 1, "restartPolicy": "OnFailure", "template": template}
    return {
        "apiVersion": PYTORCHJOB_API_VERSION,
        "kind": "PyTorchJob",
        "metadata": _metadata(job, job["metadata"]["name"]),
        "spec": {
            "runPolicy": build_run_policy(spec),
            "nprocPerNode": str(max(gpus_per_worker(spec), 1)),
            "pytorchReplicaSpecs": replicas,
        },
    }


def child_drift(job: Mapping[str, Any], child: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any] | None:
    """A merge patch bringing the child's mutable parts (runPolicy, priority) in line with the job's
    spec, or None when they already agree.

    runPolicy changes take effect at once (suspend stops or resumes the pods). The priority class
    is written to the pod templates, so it applies to pods created afterwards (after a resume).
    """
    wanted_policy = build_run_policy(job["spec"])
    current_policy = (child.get("spec") or {}).get("runPolicy") or {}
    patch: dict[str, Any] = {}
    policy_patch = {key: value for key, value in wanted_policy.items() if current_policy.get(key) != value}
    if "activeDeadlineSeconds" in current_policy and "activeDeadlineSeconds" not in wanted_policy:
        policy_patch["activeDeadlineSeconds"] = None
    if policy_patch:
        patch["runPolicy"] = policy_patch
    wanted_class = config.priority_classes.for_priority(job["spec"].get("priority") or "normal") or None
    replica_patch: dict[str, Any] = {}
    for replica, replica_spec in ((child.get("spec") or {}).get("pytorchReplicaSpecs") or {}).items():
        current_class = ((replica_spec.get("template") or {}).get("spec") or {}).get("priorityClassName")
        if current_class != wanted_class:
            replica_patch[replica] = {"template": {"spec": {"priorityClassName": wanted_class}}}
    if replica_patch:
        patch["pytorchReplicaSpecs"] = replica_patch
    return {"spec": patch} if patch else None
