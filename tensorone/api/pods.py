"""The pods of a TrainingJob: how they are labelled, their container, and the checkpoint claim they
mount. The operator builds the pods' template with these; the SDK finds a job's pods, their logs
and its checkpoint claim by them (``t1 logs``), without importing the operator.

The Training Operator v1.9 labels every pod of a PyTorchJob with its replica type in lower case
(``master``, ``worker``) and its index within that type, beside the labels of the pod template
(ours: the TrainingJob's name). It gives the pods node ranks in order: the Master is rank 0, Worker
``i`` is rank ``i + 1``; each pod's ``RANK`` variable says the same.

Kubeflow Trainer v2 runs a TrainJob's nodes as the pods of one indexed Job of the JobSet's
replicated job ``node``: JobSet labels each pod with the replicated job's name, and the Job with
the pod's completion index, which is its node rank (``PET_NODE_RANK``). The training container is
named ``node`` there.
"""

from __future__ import annotations

from collections.abc import Mapping

from tensorone.api.v1alpha1 import TrainingJobSpec

# The label the operator puts on every child and pod of a TrainingJob: the job's name.
LABEL_JOB_NAME = "training.tensorone.ai/job-name"
# The Training Operator's labels on each pod.
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
# The replica types of a PyTorchJob: the Master is rank 0 (it serves /progress), Workers the others.
MASTER_REPLICA = "Master"
WORKER_REPLICA = "Worker"
CONTAINER_NAME = "pytorch"  # the Training Operator looks for this container name
TRAINJOB_CONTAINER_NAME = "node"  # ... and Trainer v2 for this one
TRAINER_CONTAINERS = (CONTAINER_NAME, TRAINJOB_CONTAINER_NAME)
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
# The user and group the training pods run as (the trainer image's user): whatever they write on
# the checkpoint claim, a pod running as them can read.
TRAINING_USER = 1000
# The built-in trainer's image when the operator's configuration names none (trainerImage).
DEFAULT_TRAINER_IMAGE = "ghcr.io/tensorone/trainer:0.1.0"
# The pod condition Kubernetes sets on a pod it is about to take away: an eviction (a node drain),
# a preemption by a higher-priority pod, a NoExecute taint, the kubelet's graceful node shutdown.
DISRUPTION_TARGET = "DisruptionTarget"


def checkpoint_claim_name(job_name: str, spec: TrainingJobSpec) -> str:
    """The checkpoint claim: the one the job names, or ``<job>-checkpoints`` the operator creates."""
    storage = spec.checkpoint_storage
    return storage.claim_name if storage and storage.claim_name else f"{job_name}-checkpoints"


def pod_rank(labels: Mapping[str, str]) -> int | None:
    """The node rank of a training pod from its labels; None for a pod that is not a replica."""
    if labels.get(REPLICATED_JOB_LABEL) == TRAINJOB_CONTAINER_NAME:
        completion = labels.get(COMPLETION_INDEX_LABEL, "")
        return int(completion) if completion.isdigit() else None
    replica, index = labels.get(REPLICA_TYPE_LABEL, "").lower(), labels.get(REPLICA_INDEX_LABEL, "")
    if not index.isdigit():
        return None
    if replica == MASTER_REPLICA.lower():
        return int(index)
    if replica == WORKER_REPLICA.lower():
        return int(index) + 1
    return None
