"""Pure builders: a TrainingJob (and its Dataset) plus the operator config -> child manifests.

No I/O here: every function takes the API models (``TrainingJob``, ``Dataset``, parsed once where
the object was read) and the ``OperatorConfig``, and returns the child manifests as plain dicts (the
wire form). A job's catalog entry is looked up once (``catalog.job_resources``) and handed down.

The PyTorchJob has the shape Training Operator v1.9 serves (kubeflow.org/v1): ``Master`` (rank 0)
plus ``maxWorkers - 1`` ``Worker`` replicas, ``restartPolicy`` (``restart_policy``), a container named
``pytorch``, ``spec.nprocPerNode`` = GPUs per pod, and ``runPolicy`` carrying suspend (stop),
backoffLimit (maxRestarts), activeDeadlineSeconds (maxRuntimeSeconds) and cleanPodPolicy. The
Training Operator injects MASTER_ADDR, MASTER_PORT (the ``pytorchjob-port`` container port),
WORLD_SIZE, RANK (the node rank: 0 for the master, i+1 for worker i), PET_NNODES,
PET_NPROC_PER_NODE and PET_NODE_RANK into every pod; torchrun's rendezvous arguments are built
from them with Kubernetes' ``$(VAR)`` expansion, so no shell is ever involved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tensorone.api import API_VERSION, preflight
from tensorone.api.exit_codes import RETRYABLE_FROM, follows_table
from tensorone.api.export import ACCESS_KEY_ID_ENV, SECRET_ACCESS_KEY_ENV, SESSION_TOKEN_ENV
from tensorone.api.pods import (
    CONTAINER_NAME,
    LABEL_JOB_NAME,
    MASTER_REPLICA,
    TRAINING_USER,
    TRAINJOB_CONTAINER_NAME,
    WORKER_REPLICA,
    checkpoint_claim_name,
)
from tensorone.api.report import (
    DEFAULT_TERMINATION_LOG,
    MAX_DRAIN_SECONDS,
    REPORT_DRAIN_ENV,
    REPORT_HOST_ENV,
    REPORT_PORT_ENV,
)
from tensorone.api.resolved import (
    DEFAULT_CHECKPOINT_DIR,
    DEFAULT_DATASET_MOUNT,
    DEFAULT_JOB_CONFIG_PATH,
    JOB_CONFIG_ENV,
    ResolvedJob,
    resolve_job,
)
from tensorone.api.v1alpha1 import Dataset, ModelType, TrainingJob, TrainingJobSpec
from tensorone_operator.catalog import GPU_PRODUCT_LABEL, GPU_RESOURCE, JobResources, job_resources
from tensorone_operator.config import ChildBackend, OperatorConfig

PYTORCHJOB_GROUP, PYTORCHJOB_VERSION, PYTORCHJOB_PLURAL = "kubeflow.org", "v1", "pytorchjobs"
PYTORCHJOB_API_VERSION = f"{PYTORCHJOB_GROUP}/{PYTORCHJOB_VERSION}"
TRAINJOB_GROUP, TRAINJOB_VERSION, TRAINJOB_PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
TRAINJOB_API_VERSION = f"{TRAINJOB_GROUP}/{TRAINJOB_VERSION}"
RUNTIME_KIND = "ClusterTrainingRuntime"
# Who owns the TrainJob's runtime patch (spec.runtimePatches is a map keyed by manager).
RUNTIME_PATCH_MANAGER = "training.tensorone.ai/operator"
# HOME of the trainer image's user (the Dockerfile's trainer stage); HF_HOME is under it.
TRAINER_HOME = "/home/trainer"
MASTER_PORT_NAME = "pytorchjob-port"  # ... and this port name, for MASTER_PORT
MASTER_PORT = preflight.MASTER_PORT
REPORT_PORT_NAME = "report"
JOB_CONFIG_KEY = "job.yaml"
JOB_CONFIG_DIR = DEFAULT_JOB_CONFIG_PATH.rsplit("/", 1)[0]
KUEUE_LABEL_PREFIX = "kueue.x-k8s.io/"
KUEUE_QUEUE_LABEL = KUEUE_LABEL_PREFIX + "queue-name"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "tensorone-training"
MANAGER = "tensorone-operator"


def config_map_name(job_name: str) -> str:
    """Name of the ConfigMap holding the resolved trainer configuration."""
    return f"{job_name}-config"


def owns_checkpoint_claim(job: TrainingJob) -> bool:
    """Whether the operator creates (and later deletes) the checkpoint claim."""
    storage = job.spec.checkpoint_storage
    return not (storage and storage.claim_name)


def child_labels(job: TrainingJob) -> dict[str, str]:
    """Labels of every child and pod: ours, plus the job's Kueue labels (never app.kubernetes.io/instance,
    by which Argo CD tracks what it applied)."""
    labels = {
        LABEL_NAME: APP_NAME,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_JOB_NAME: str(job.metadata.name),
    }
    for key, value in (job.metadata.labels or {}).items():
        if key.startswith(KUEUE_LABEL_PREFIX):
            labels[key] = value
    return labels


def queue_managed(job: TrainingJob) -> bool:
    """Whether Kueue admits the job (it names a queue): its child is created suspended, and only
    Kueue lifts that suspension."""
    return KUEUE_QUEUE_LABEL in (job.metadata.labels or {})


def owner_reference(job: TrainingJob) -> dict[str, Any]:
    """The controller ownerReference to the TrainingJob: children are garbage-collected with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "name": job.metadata.name,
        "uid": job.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(job: TrainingJob, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": job.metadata.namespace,
        "labels": child_labels(job),
        "ownerReferences": [owner_reference(job)],
    }


def report_port(spec: TrainingJobSpec, config: OperatorConfig) -> int:
    """Where rank 0 serves /progress and /metrics: a custom image's own port, else the operator's."""
    custom = spec.config.custom
    return custom.progress_port if custom and custom.progress_port else config.report_port


def start_id(job: TrainingJob) -> str:
    """The start of the job that its current spec makes: ``<uid>:<generation>`` (ResolvedJob.start_id)."""
    return f"{job.metadata.uid}:{job.metadata.generation}"


def resolved_job(
    job: TrainingJob, dataset: Dataset, config: OperatorConfig, *, start: str | None = None
) -> ResolvedJob:
    """The operator->trainer contract: the TrainingJob's config with defaults, and the Dataset's spec,
    at the paths where the pods mount the data and checkpoint claims; ``start``: the start of the
    job it is for (see ``start_id``; the current spec's when not given)."""
    return resolve_job(
        job.spec,
        dataset.spec,
        name=str(job.metadata.name),
        namespace=str(job.metadata.namespace),
        uid=job.metadata.uid,
        report_port=report_port(job.spec, config),
        use_gpu=job.spec.gpu_type is not None,
        start_id=start or start_id(job),
    )


def build_config_map(
    job: TrainingJob, dataset: Dataset, config: OperatorConfig, *, start: str | None = None
) -> dict[str, Any]:
    """The ConfigMap ``<job>-config`` with the resolved job as YAML under ``job.yaml``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(job, config_map_name(str(job.metadata.name))),
        "data": {JOB_CONFIG_KEY: resolved_job(job, dataset, config, start=start).to_yaml()},
    }


def configured_start(config_map: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(start id, resumeFrom) of the resolved job in a job's ConfigMap; (None, None) when unreadable."""
    try:
        data: Any = yaml.safe_load(((config_map.get("data") or {}).get(JOB_CONFIG_KEY)) or "")
    except yaml.YAMLError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    start, resume_from = data.get("startId"), data.get("resumeFrom")
    return (start if isinstance(start, str) else None), (resume_from if isinstance(resume_from, str) else None)


def build_checkpoint_claim(job: TrainingJob, config: OperatorConfig) -> dict[str, Any]:
    """The checkpoint PVC the operator creates: ReadWriteMany, shared by every worker."""
    storage = job.spec.checkpoint_storage
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": (storage.size if storage else None) or config.checkpoint_storage.size}},
    }
    storage_class = (storage.storage_class_name if storage else None) or config.checkpoint_storage.storage_class_name
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(job, checkpoint_claim_name(str(job.metadata.name), job.spec)),
        "spec": spec,
    }


def _resources(resources: JobResources, config: OperatorConfig) -> dict[str, Any]:
    # Node disk is bounded too: a pod that fills it is evicted rather than the node's other pods.
    disk = config.ephemeral_storage
    entry = resources.entry
    if entry is None:
        amounts = {"cpu": config.cpu_job.cpu, "memory": config.cpu_job.memory}
        return {
            "requests": {**amounts, "ephemeral-storage": disk.request},
            "limits": {**amounts, "ephemeral-storage": disk.limit},
        }
    gpus = resources.gpus_per_worker
    requests = {
        "cpu": _times(entry.cpu_per_gpu, gpus),
        "memory": _times(entry.host_memory_per_gpu, gpus),
        "ephemeral-storage": disk.request,
        GPU_RESOURCE: str(gpus),
    }
    # Extended resources need limit == request; memory is limited too (no overcommit of host RAM).
    limits = {"memory": requests["memory"], "ephemeral-storage": disk.limit, GPU_RESOURCE: str(gpus)}
    return {"requests": requests, "limits": limits}


def _times(quantity: str, count: int) -> str:
    """A quantity multiplied by an integer, keeping its suffix (``12`` x 2 = ``24``, ``120Gi`` x 2 = ``240Gi``)."""
    number = quantity.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    suffix = quantity[len(number) :]
    value = float(number) * count
    return f"{value:g}{suffix}"


def drain_seconds(config: OperatorConfig) -> float:
    """How long an ended trainer waits for its last metric records to be read: two polls and the
    time a read may take."""
    return min(MAX_DRAIN_SECONDS, 2 * config.progress_poll_seconds + 2)


def _env(job: TrainingJob, config: OperatorConfig) -> list[dict[str, Any]]:
    spec = job.spec
    env: list[dict[str, Any]] = [
        {"name": JOB_CONFIG_ENV, "value": DEFAULT_JOB_CONFIG_PATH},
        {"name": "TENSORONE_JOB_NAME", "value": job.metadata.name},
        # Where rank 0 serves /progress and /metrics; a custom image's Reporter reads it.
        {"name": REPORT_PORT_ENV, "value": str(report_port(spec, config))},
        {"name": REPORT_HOST_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        # A trainer that ended serves its last metric records until the next poll has read them.
        {"name": REPORT_DRAIN_ENV, "value": f"{drain_seconds(config):g}"},
    ]
    token = spec.hub_token_secret
    if token:
        env.append(_secret_env("HF_TOKEN", token.name, token.key))
    env.extend(_tracking_env(spec))
    env.extend(_output_env(spec))
    custom = spec.config.custom
    env.extend({"name": item.name, "value": item.value} for item in (custom.env if custom else None) or [])
    return env


def cpu_cores(quantity: str) -> float | None:
    """A CPU quantity in cores (``4``, ``2.5``, ``500m``); None for one in another form."""
    try:
        return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    except ValueError:
        return None


def threads_per_process(resources: JobResources, config: OperatorConfig) -> int | None:
    """torch's threads for each training process: the CPUs the pod asks for, shared among its
    processes, at least one. Left to torch (None) when the quantity is of another form."""
    entry = resources.entry
    cpu = config.cpu_job.cpu if entry is None else _times(entry.cpu_per_gpu, resources.gpus_per_worker)
    cores = cpu_cores(cpu)
    return None if cores is None else max(1, int(cores // resources.processes_per_worker))


def _threads_env(spec: TrainingJobSpec, resources: JobResources, config: OperatorConfig) -> list[dict[str, Any]]:
    """OMP_NUM_THREADS for the built-in trainer: torch otherwise starts a thread per core of the
    node, whatever the pod's share (the cgroup's quota is not what it counts), and a pod on a big
    node then spends its time descheduled. A custom image sets its own in ``custom.env``."""
    threads = threads_per_process(resources, config)
    if spec.model_type == ModelType.custom or threads is None:
        return []
    return [{"name": "OMP_NUM_THREADS", "value": str(threads)}]


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    """An environment variable read from a key of a Secret in the job's namespace: the kubelet
    fills it in, so the value never appears in the PyTorchJob, the ConfigMap or the job."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _tracking_env(spec: TrainingJobSpec) -> list[dict[str, Any]]:
    """The trackers' credentials, under the names their client libraries read."""
    tracking = spec.config.tracking
    if tracking is None:
        return []
    env: list[dict[str, Any]] = []
    mlflow = tracking.mlflow
    if mlflow is not None and mlflow.credentials_secret is not None:
        basic = mlflow.credentials_secret
        env.append(_secret_env("MLFLOW_TRACKING_USERNAME", basic.name, basic.username_key))
        env.append(_secret_env("MLFLOW_TRACKING_PASSWORD", basic.name, basic.password_key))
    if mlflow is not None and mlflow.token_secret is not None:
        env.append(_secret_env("MLFLOW_TRACKING_TOKEN", mlflow.token_secret.name, mlflow.token_secret.key))
    wandb = tracking.wandb
    if wandb is not None and wandb.api_key_secret is not None:
        env.append(_secret_env("WANDB_API_KEY", wandb.api_key_secret.name, wandb.api_key_secret.key))
    return env


def _output_env(spec: TrainingJobSpec) -> list[dict[str, Any]]:
    """spec.output's access key pair, under the trainer's own names (tensorone.api.export)."""
    secret = spec.output.credentials_secret if spec.output is not None else None
    if secret is None:
        return []
    env = [
        _secret_env(ACCESS_KEY_ID_ENV, secret.name, secret.access_key_id_key),
        _secret_env(SECRET_ACCESS_KEY_ENV, secret.name, secret.secret_access_key_key),
    ]
    if secret.session_token_key is not None:
        env.append(_secret_env(SESSION_TOKEN_ENV, secret.name, secret.session_token_key))
    return env


# The variables each backend's controller sets on every pod, for torchrun's rendezvous: the node
# rank, the rank-0 pod's address and its port.
PYTORCHJOB_RANK_VARIABLES = ("RANK", "MASTER_ADDR", "MASTER_PORT")
TRAINJOB_RANK_VARIABLES = ("PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")


def _command(
    spec: TrainingJobSpec,
    resources: JobResources,
    config: OperatorConfig,
    rank_variables: tuple[str, str, str] = PYTORCHJOB_RANK_VARIABLES,
) -> dict[str, Any]:
    custom = spec.config.custom
    if spec.model_type == ModelType.custom and custom is not None:
        container: dict[str, Any] = {"image": custom.image}
        # An argument vector exactly as the user wrote it: never joined into a shell string.
        if custom.command:
            container["command"] = list(custom.command)
        if custom.args:
            container["args"] = list(custom.args)
        return container
    return {
        "image": config.trainer_image,
        # trainer.launch is torchrun (same options) that exits 0 when the trainer stopped cleanly
        # on SIGTERM; torchrun alone exits 1 then, and a stop would look like a failure.
        "command": [
            "python",
            "-m",
            "trainer.launch",
            f"--nnodes={resources.workers}",
            f"--nproc-per-node={resources.processes_per_worker}",
            # Set by the Training Operator (Trainer v2) on every pod; expanded by the kubelet, not a shell.
            f"--node-rank=$({rank_variables[0]})",
            f"--master-addr=$({rank_variables[1]})",
            f"--master-port=$({rank_variables[2]})",
        ],
    }


def pod_placement(resources: JobResources) -> dict[str, Any]:
    """Where a job's pods may run, as pod spec fields (``nodeSelector``, ``affinity``,
    ``tolerations``): the nodes of its GPU type, on the type's spot capacity for a spot job; {} on
    CPU. Every GPU pod tolerates the ``nvidia.com/gpu`` taint; a spot pod also tolerates the taints
    of the spot nodes and selects their labels."""
    entry = resources.entry
    if entry is None:
        return {}
    placement: dict[str, Any] = {}
    selector: dict[str, str] = {}
    if len(entry.products) == 1:
        selector[GPU_PRODUCT_LABEL] = entry.products[0]
    else:
        # A node selector takes one value per key: several products need a required node affinity.
        placement["affinity"] = {
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
    tolerations: list[dict[str, Any]] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    spot = resources.spot
    if spot is not None:
        selector.update(spot.node_selector)
        tolerations.extend(toleration.to_wire() for toleration in spot.tolerations)
    if selector:
        placement["nodeSelector"] = selector
    placement["tolerations"] = tolerations
    return placement


def _pull_policy(spec: TrainingJobSpec, config: OperatorConfig) -> str:
    """The built-in trainer's pull policy from the configuration; a custom image is pulled every
    time unless pinned by digest: with IfNotPresent, a tenant naming another tenant's private
    image would run the copy cached on the node without the pull secret that guards it."""
    custom = spec.config.custom
    if spec.model_type != ModelType.custom or custom is None:
        return config.trainer_image_pull_policy
    return "IfNotPresent" if "@sha256:" in custom.image else "Always"


def _container(job: TrainingJob, resources: JobResources, config: OperatorConfig) -> dict[str, Any]:
    """The training container (the Training Operator finds it by its name)."""
    return {
        "name": CONTAINER_NAME,
        **_command(job.spec, resources, config),
        "imagePullPolicy": _pull_policy(job.spec, config),
        "env": _env(job, config) + _threads_env(job.spec, resources, config),
        "ports": [
            {"name": MASTER_PORT_NAME, "containerPort": MASTER_PORT, "protocol": "TCP"},
            {"name": REPORT_PORT_NAME, "containerPort": report_port(job.spec, config), "protocol": "TCP"},
        ],
        "resources": _resources(resources, config),
        "terminationMessagePath": DEFAULT_TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": container_security_context(read_only_root=_ours(job.spec)),
    }


def _ours(spec: TrainingJobSpec) -> bool:
    """Whether the pods run our trainer image, whose writes are known: a read-only root
    filesystem with writable scratch folders. A custom image may write anywhere in its own
    filesystem, so its root stays writable (within the ephemeral-storage limit)."""
    return spec.model_type != ModelType.custom


def _scratch(spec: TrainingJobSpec) -> list[tuple[str, str]]:
    """(volume, mount path) of the writable emptyDirs: /tmp for every image (torchrun, the
    launcher, compilers), and our trainer's home, which holds the Hugging Face cache (HF_HOME),
    the downloaded data and the torch and triton caches."""
    folders = [("tmp", "/tmp")]
    if _ours(spec):
        folders.append(("home", TRAINER_HOME))
    return folders


def _volumes(
    job: TrainingJob, dataset: Dataset, config: OperatorConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pods' volumes and the training container's mounts of them: the job's configuration,
    the checkpoint claim, /dev/shm, the writable scratch folders and the Dataset's claim."""
    volumes: list[dict[str, Any]] = [
        {"name": "job-config", "configMap": {"name": config_map_name(str(job.metadata.name))}},
        {
            "name": "checkpoints",
            "persistentVolumeClaim": {"claimName": checkpoint_claim_name(str(job.metadata.name), job.spec)},
        },
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": config.shm_size}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "job-config", "mountPath": JOB_CONFIG_DIR, "readOnly": True},
        {"name": "checkpoints", "mountPath": DEFAULT_CHECKPOINT_DIR},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    for name, path in _scratch(job.spec):
        volumes.append({"name": name, "emptyDir": {}})  # on the node's disk, within ephemeral-storage
        mounts.append({"name": name, "mountPath": path})
    data_claim = dataset.spec.source.pvc
    if data_claim is not None:
        volumes.append(
            {"name": "dataset", "persistentVolumeClaim": {"claimName": data_claim.claim_name, "readOnly": True}}
        )
        mounts.append({"name": "dataset", "mountPath": DEFAULT_DATASET_MOUNT, "readOnly": True})
    return volumes, mounts


def pod_security_context() -> dict[str, Any]:
    """The training pods' securityContext (the restricted Pod Security Standard)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": TRAINING_USER,
        "runAsGroup": TRAINING_USER,
        "fsGroup": TRAINING_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(*, read_only_root: bool) -> dict[str, Any]:
    """The training container's securityContext; the root filesystem is read-only for our trainer image."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "readOnlyRootFilesystem": read_only_root,
    }


def build_pod_template(
    job: TrainingJob, dataset: Dataset, config: OperatorConfig, resources: JobResources | None = None
) -> dict[str, Any]:
    """The pod template of every replica (the Training Operator adds the rank environment).
    ``resources`` is the job's catalog lookup when the caller made it already."""
    if resources is None:
        resources = job_resources(job.spec, config)
    container = _container(job, resources, config)
    volumes, mounts = _volumes(job, dataset, config)
    container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": config.termination_grace_period_seconds,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        **pod_placement(resources),
    }
    if config.training_service_account:
        pod_spec["serviceAccountName"] = config.training_service_account
    priority_class = config.priority_classes.for_priority(job.spec.priority)
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    return {"metadata": {"labels": child_labels(job)}, "spec": pod_spec}


def restart_policy(spec: TrainingJobSpec) -> str:
    """The replicas' restartPolicy. When the pods' exit code says whether a restart can help (our
    trainer's, and a custom image's that follows the same table: ``exit_codes.follows_table``),
    ``ExitCode`` restarts only 128-255 and fails the job at once for a permanent error. The Training
    Operator then does not apply backoffLimit to those restarts, so the operator counts them against
    spec.maxRestarts (restarts.py). Other custom images' exit codes follow no such table (a Python
    exception exits 1): they keep ``OnFailure`` within backoffLimit."""
    return "ExitCode" if follows_table(spec) else "OnFailure"


def build_run_policy(spec: TrainingJobSpec, *, hold: bool = False) -> dict[str, Any]:
    """``runPolicy``: the parts of the child the user may change on a running job. ``hold``
    suspends it whatever the spec says: the operator's own stop (a job over its spec.maxCost)."""
    policy: dict[str, Any] = {
        # Running pods are deleted when the job ends; the status keeps what they reported.
        "cleanPodPolicy": "Running",
        "backoffLimit": spec.max_restarts,
        "suspend": spec.suspend or hold,
    }
    if spec.max_runtime_seconds:
        policy["activeDeadlineSeconds"] = spec.max_runtime_seconds
    return policy


def build_pytorchjob(
    job: TrainingJob, dataset: Dataset, config: OperatorConfig, resources: JobResources | None = None
) -> dict[str, Any]:
    """The child PyTorchJob named like the TrainingJob. ``resources`` is the job's catalog lookup
    when the caller made it already."""
    if resources is None:
        resources = job_resources(job.spec, config)
    template = build_pod_template(job, dataset, config, resources)
    policy = restart_policy(job.spec)
    replicas: dict[str, Any] = {
        MASTER_REPLICA: {"replicas": 1, "restartPolicy": policy, "template": template},
    }
    if resources.workers > 1:
        replicas[WORKER_REPLICA] = {"replicas": resources.workers - 1, "restartPolicy": policy, "template": template}
    return {
        "apiVersion": PYTORCHJOB_API_VERSION,
        "kind": "PyTorchJob",
        "metadata": _metadata(job, str(job.metadata.name)),
        "spec": {
            # A queued job's child waits suspended for its admission, as Kueue expects it to be created.
            "runPolicy": build_run_policy(job.spec, hold=queue_managed(job)),
            "nprocPerNode": str(resources.processes_per_worker),
            "pytorchReplicaSpecs": replicas,
        },
    }


def child_drift(
    job: TrainingJob,
    child: Mapping[str, Any],
    config: OperatorConfig,
    *,
    hold: bool = False,
    awaiting_admission: bool = False,
) -> dict[str, Any] | None:
    """A merge patch bringing the child's mutable parts (runPolicy, priority) in line with the job's
    spec (suspended also while the operator ``hold``s it), or None when they already agree. A
    child ``awaiting_admission`` (a queue holds it suspended) is never unsuspended here: its
    queue admits it by lifting the suspension itself.

    runPolicy changes take effect at once (suspend stops or resumes the pods). The priority class
    is written to the pod templates, so it applies to pods created afterwards (after a resume).
    """
    wanted_policy = build_run_policy(job.spec, hold=hold)
    current_policy = (child.get("spec") or {}).get("runPolicy") or {}
    patch: dict[str, Any] = {}
    policy_patch = {key: value for key, value in wanted_policy.items() if current_policy.get(key) != value}
    if awaiting_admission and policy_patch.get("suspend") is False:
        del policy_patch["suspend"]
    if "activeDeadlineSeconds" in current_policy and "activeDeadlineSeconds" not in wanted_policy:
        policy_patch["activeDeadlineSeconds"] = None
    if policy_patch:
        patch["runPolicy"] = policy_patch
    wanted_class = config.priority_classes.for_priority(job.spec.priority) or None
    replica_patch: dict[str, Any] = {}
    for replica, replica_spec in ((child.get("spec") or {}).get("pytorchReplicaSpecs") or {}).items():
        current_class = ((replica_spec.get("template") or {}).get("spec") or {}).get("priorityClassName")
        if current_class != wanted_class:
            replica_patch[replica] = {"template": {"spec": {"priorityClassName": wanted_class}}}
    if replica_patch:
        patch["pytorchReplicaSpecs"] = replica_patch
    return {"spec": patch} if patch else None


# Kubeflow Trainer v2 (TrainJob) ---------------------------------------------------------------


def runtime_name(spec: TrainingJobSpec, config: OperatorConfig) -> str:
    """The ClusterTrainingRuntime a job's TrainJob names: one per image kind and priority, because
    a TrainJob can set neither the pods' priority class nor the container's pull policy."""
    kind = RUNTIME_IMAGE_KINDS[0] if _ours(spec) else RUNTIME_IMAGE_KINDS[1]
    return f"{config.train_job_runtime_prefix}-{kind}-{spec.priority}"


def build_trainjob(
    job: TrainingJob, dataset: Dataset, config: OperatorConfig, resources: JobResources | None = None
) -> dict[str, Any]:
    """The child TrainJob named like the TrainingJob (Kubeflow Trainer v2.2's API). What the
    runtime cannot know comes from the job: spec.trainer (image, command, env, nodes, processes
    and resources per node) and one runtime patch of ours (the pods' labels, volumes and mounts,
    placement). The runtime (runtime_name) holds the rest: security contexts, service account,
    priority class, grace period, and the restart policy of the exit-code table."""
    if resources is None:
        resources = job_resources(job.spec, config)
    container = _container(job, resources, config)
    volumes, mounts = _volumes(job, dataset, config)
    trainer: dict[str, Any] = {
        **_command(job.spec, resources, config, TRAINJOB_RANK_VARIABLES),
        "env": container["env"],
        "numNodes": resources.workers,
        "numProcPerNode": resources.processes_per_worker,
        "resourcesPerNode": container["resources"],
    }
    pod_patch: dict[str, Any] = {
        "volumes": volumes,
        "containers": [{"name": TRAINJOB_CONTAINER_NAME, "volumeMounts": mounts}],
        **pod_placement(resources),
    }
    labels = child_labels(job)
    patch = {
        "manager": RUNTIME_PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": TRAINJOB_CONTAINER_NAME,
                            "template": {
                                "spec": {"template": {"metadata": {"labels": labels}, "spec": pod_patch}},
                            },
                        }
                    ]
                }
            }
        },
    }
    spec: dict[str, Any] = {
        "runtimeRef": {"name": runtime_name(job.spec, config), "apiGroup": TRAINJOB_GROUP, "kind": RUNTIME_KIND},
        "trainer": trainer,
        "runtimePatches": [patch],
        # A queued job's child waits suspended for its admission, as Kueue expects it to be created.
        "suspend": job.spec.suspend or queue_managed(job),
    }
    if job.spec.max_runtime_seconds:
        spec["activeDeadlineSeconds"] = job.spec.max_runtime_seconds
    return {
        "apiVersion": TRAINJOB_API_VERSION,
        "kind": "TrainJob",
        "metadata": _metadata(job, str(job.metadata.name)),
        "spec": spec,
    }


def trainjob_drift(
    job: TrainingJob, child: Mapping[str, Any], *, hold: bool = False, awaiting_admission: bool = False
) -> dict[str, Any] | None:
    """A merge patch of a TrainJob's spec.suspend to the job's (suspended also while the operator
    ``hold``s it), or None when they agree; never an unsuspension of a child ``awaiting_admission``.
    Trainer v2 makes the rest of what a running job may change immutable (spec.trainer,
    runtimeRef, activeDeadlineSeconds): a changed priority or maxRuntimeSeconds applies to the
    next TrainJob only."""
    wanted = job.spec.suspend or hold
    current = bool((child.get("spec") or {}).get("suspend"))
    if wanted == current or (awaiting_admission and not wanted):
        return None
    return {"spec": {"suspend": wanted}}


@dataclass(frozen=True)
class ChildKind:
    """Where a backend's child lives in the API."""

    api_version: str
    plural: str
    kind: str


CHILD_KINDS = {
    ChildBackend.pytorchjob: ChildKind(PYTORCHJOB_API_VERSION, PYTORCHJOB_PLURAL, "PyTorchJob"),
    ChildBackend.trainjob: ChildKind(TRAINJOB_API_VERSION, TRAINJOB_PLURAL, "TrainJob"),
}


def child_kind(config: OperatorConfig, namespace: str) -> ChildKind:
    """The kind of child of the jobs in ``namespace``."""
    return CHILD_KINDS[config.backend_for(namespace)]


def build_child(
    job: TrainingJob, dataset: Dataset, config: OperatorConfig, resources: JobResources | None = None
) -> dict[str, Any]:
    """The child of the job's backend (``OperatorConfig.backend_for`` its namespace)."""
    if config.backend_for(str(job.metadata.namespace)) == ChildBackend.trainjob:
        return build_trainjob(job, dataset, config, resources)
    return build_pytorchjob(job, dataset, config, resources)


# The priorities a runtime is made for, and the image kinds (runtime_name).
RUNTIME_PRIORITIES = ("high", "normal", "low")
RUNTIME_IMAGE_KINDS = ("trainer", "custom")
# Restarts of a TrainJob's JobSet the runtime allows: the largest spec.maxRestarts; the operator
# itself ends a job past its own spec.maxRestarts (restarts.py).
RUNTIME_MAX_RESTARTS = 100


def build_runtime(image_kind: str, priority: str, config: OperatorConfig) -> dict[str, Any]:
    """One ClusterTrainingRuntime a TrainJob names (runtime_name): torch over a JobSet whose
    replicated job ``node`` runs the training container with our pod security, service account,
    priority class and grace period. A pod that exits with a permanent code of the exit-code table
    (1-127) fails its Job (podFailurePolicy) and the JobSet (a failure-policy rule); any other
    failure restarts the JobSet, as restartPolicy ExitCode does for a PyTorchJob."""
    ours = image_kind == "trainer"
    container = {
        "name": TRAINJOB_CONTAINER_NAME,
        "image": config.trainer_image,
        "imagePullPolicy": config.trainer_image_pull_policy if ours else "Always",
        "terminationMessagePath": DEFAULT_TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": container_security_context(read_only_root=ours),
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": config.termination_grace_period_seconds,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
    }
    if config.training_service_account:
        pod_spec["serviceAccountName"] = config.training_service_account
    priority_class = config.priority_classes.for_priority(priority)
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    permanent = list(range(1, RETRYABLE_FROM))
    job_spec = {
        "backoffLimit": 0,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": TRAINJOB_CONTAINER_NAME, "operator": "In", "values": permanent},
                }
            ]
        },
        "template": {"spec": pod_spec},
    }
    return {
        "apiVersion": TRAINJOB_API_VERSION,
        "kind": RUNTIME_KIND,
        "metadata": {
            "name": f"{config.train_job_runtime_prefix}-{image_kind}-{priority}",
            "labels": {LABEL_NAME: APP_NAME, LABEL_MANAGED_BY: MANAGER, "trainer.kubeflow.org/framework": "torch"},
        },
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": TRAINJOB_CONTAINER_NAME,
                            "replicas": 1,
                            "template": {
                                "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                                "spec": job_spec,
                            },
                        }
                    ],
                    "failurePolicy": {
                        "maxRestarts": RUNTIME_MAX_RESTARTS,
                        "rules": [
                            {
                                "name": "permanent-exit-code",
                                "action": "FailJobSet",
                                "onJobFailureReasons": ["PodFailurePolicy"],
                            }
                        ],
                    },
                }
            },
        },
    }


def build_runtimes(config: OperatorConfig) -> list[dict[str, Any]]:
    """Every ClusterTrainingRuntime the TrainJob backend names, for this configuration."""
    return [build_runtime(kind, priority, config) for kind in RUNTIME_IMAGE_KINDS for priority in RUNTIME_PRIORITIES]
