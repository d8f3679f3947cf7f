"""The kinds of Kubeflow Trainer v2 and JobSet as the emulator serves them: schemas written for
this project from the pinned releases' documented API types, strict about unknown fields.

Pinned: Kubeflow Trainer **v2.2** (``trainer.kubeflow.org/v1alpha1``: TrainJob with
``runtimePatches`` and ``activeDeadlineSeconds``, TrainingRuntime, ClusterTrainingRuntime; v2.3
serves the same TrainJob fields plus one the operator does not use) and the JobSet release it
depends on, **v0.11** (``jobset.x-k8s.io/v1alpha2``). Trainer v2.0 (``podSpecOverrides``) and
v2.1 (``podTemplateOverrides``) named the runtime patch differently and are refused here as the
API server of a v2.2 installation refuses them.

The Trainer and JobSet fields are declared below by hand; the Kubernetes types they embed
(EnvVar, ResourceRequirements, Volume, Affinity, Toleration, PodSecurityContext, JobSpec, ...)
come from the field lists of the kubernetes client's models (Kubernetes' own OpenAPI), so every
field of those is known and anything else is refused. Embedded ObjectMeta of templates takes
labels and annotations only. A few CEL rules of the releases are kept: the TrainJob fields that
are immutable (runtimeRef, trainer, activeDeadlineSeconds, managedBy) and ``managedBy``'s values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from tests.kube.emulator import Kind, Validator, schema_validator

TRAINER_GROUP, TRAINER_VERSION = "trainer.kubeflow.org", "v1alpha1"
JOBSET_GROUP, JOBSET_VERSION = "jobset.x-k8s.io", "v1alpha2"
TRAINER_API = f"{TRAINER_GROUP}/{TRAINER_VERSION}"
JOBSET_API = f"{JOBSET_GROUP}/{JOBSET_VERSION}"

KINDS = (
    Kind(TRAINER_GROUP, TRAINER_VERSION, "trainjobs", "TrainJob", namespaced=True, status_subresource=True),
    Kind(TRAINER_GROUP, TRAINER_VERSION, "trainingruntimes", "TrainingRuntime", namespaced=True),
    Kind(TRAINER_GROUP, TRAINER_VERSION, "clustertrainingruntimes", "ClusterTrainingRuntime", namespaced=False),
    Kind(JOBSET_GROUP, JOBSET_VERSION, "jobsets", "JobSet", namespaced=True, status_subresource=True),
)

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}
_IMMUTABLE = [{"rule": "self == oldSelf", "message": "field is immutable"}]


def owned_by_train_job(train_job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ownerReferences of what Trainer v2's controller makes for ``train_job`` (its JobSet, the
    ConfigMap of the status endpoint's CA)."""
    meta = train_job["metadata"]
    reference = {"apiVersion": TRAINER_API, "kind": "TrainJob", "name": meta["name"], "uid": meta["uid"]}
    return [{**reference, "controller": True, "blockOwnerDeletion": True}]


def _object(properties: dict[str, Any], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _array(items: dict[str, Any], *, max_items: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": items}
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


# Embedded ObjectMeta of a template: what a controller copies to the objects it makes.
_TEMPLATE_METADATA = _object({"labels": _STRING_MAP, "annotations": _STRING_MAP})

_SCALARS = {"str": _STRING, "int": _INT, "bool": _BOOL, "float": {"type": "number"}, "datetime": _STRING}
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(\w+, (.+)\)|Dict\[\w+, (.+)\])$")


@functools.cache
def core(model: str) -> dict[str, Any]:
    """The structural schema of a Kubernetes type from the kubernetes client's model of it (its
    ``openapi_types`` and ``attribute_map``: the fields of Kubernetes' OpenAPI document)."""
    from kubernetes.client import models

    if model == "V1ObjectMeta":
        return _TEMPLATE_METADATA
    cls = getattr(models, model)
    return _object({cls.attribute_map[name]: _type(kind) for name, kind in cls.openapi_types.items()})


def _type(kind: str) -> dict[str, Any]:
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "object":  # IntOrString, and the like
        return {"x-kubernetes-int-or-string": True}
    if match := _LIST.match(kind):
        return _array(_type(match.group(1)))
    if match := _DICT.match(kind):
        return {"type": "object", "additionalProperties": _type(match.group(1) or match.group(2))}
    return core(kind)


def _condition() -> dict[str, Any]:
    return _object(
        {
            "type": _STRING,
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": _STRING,
            "message": _STRING,
            "lastTransitionTime": _STRING,
            "observedGeneration": _INT,
        },
        required=("type", "status", "reason", "message", "lastTransitionTime"),
    )


def _jobs_status() -> dict[str, Any]:
    counts = {"type": "integer", "minimum": 0}
    return _object(
        {
            "name": _STRING,
            "ready": counts,
            "succeeded": counts,
            "failed": counts,
            "active": counts,
            "suspended": counts,
        },
        required=("name",),
    )


# JobSet v0.11 ----------------------------------------------------------------------------------


def jobset_spec() -> dict[str, Any]:
    """JobSetSpec (v0.11)."""
    replicated_job = _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 63},
            "groupName": _STRING,
            "template": _object({"metadata": _TEMPLATE_METADATA, "spec": core("V1JobSpec")}),
            "replicas": {"type": "integer", "minimum": 0, "default": 1},
            "dependsOn": _array(
                _object({"name": _STRING, "status": {"type": "string", "enum": ["Ready", "Complete"]}}), max_items=1
            ),
        },
        required=("name", "template"),
    )
    rule = _object(
        {
            "name": _STRING,
            "action": {"type": "string", "enum": ["FailJobSet", "RestartJobSet", "RestartJobSetAndIgnoreMaxRestarts"]},
            "onJobFailureReasons": _array(_STRING),
            "onJobFailureMessagePatterns": _array(_STRING),
            "targetReplicatedJobs": _array(_STRING),
        },
        required=("name", "action"),
    )
    return _object(
        {
            "replicatedJobs": _array(replicated_job),
            "network": _object({"enableDNSHostnames": _BOOL, "subdomain": _STRING, "publishNotReadyAddresses": _BOOL}),
            "successPolicy": _object(
                {"operator": {"type": "string", "enum": ["All", "Any"]}, "targetReplicatedJobs": _array(_STRING)},
                required=("operator",),
            ),
            "failurePolicy": _object(
                {
                    "maxRestarts": {"type": "integer", "minimum": 0},
                    "restartStrategy": {"type": "string", "enum": ["Recreate", "BlockingRecreate", "InPlaceRestart"]},
                    "rules": _array(rule),
                }
            ),
            "startupPolicy": _object(
                {"startupPolicyOrder": {"type": "string", "enum": ["AnyOrder", "InOrder"]}},
                required=("startupPolicyOrder",),
            ),
            "suspend": _BOOL,
            "coordinator": _object({"replicatedJob": _STRING, "jobIndex": _INT, "podIndex": _INT}),
            "managedBy": _STRING,
            "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
        }
    )


def jobset_status() -> dict[str, Any]:
    """JobSetStatus (v0.11)."""
    return _object(
        {
            "conditions": _array(_condition()),
            "restarts": _INT,
            "restartsCountTowardsMax": _INT,
            "terminalState": _STRING,
            "replicatedJobsStatus": _array(_jobs_status()),
        }
    )


# Kubeflow Trainer v2.2 -------------------------------------------------------------------------


def _container_patch() -> dict[str, Any]:
    return _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 253},
            "env": _array(core("V1EnvVar"), max_items=128),
            "volumeMounts": _array(core("V1VolumeMount"), max_items=128),
            "securityContext": core("V1SecurityContext"),
        },
        required=("name",),
    )


def _pod_spec_patch() -> dict[str, Any]:
    return _object(
        {
            "serviceAccountName": {"type": "string", "maxLength": 253},
            "volumes": _array(core("V1Volume"), max_items=128),
            "initContainers": _array(_container_patch(), max_items=64),
            "containers": _array(_container_patch(), max_items=64),
            "imagePullSecrets": _array(core("V1LocalObjectReference"), max_items=64),
            "securityContext": core("V1PodSecurityContext"),
            "nodeSelector": _STRING_MAP,
            "affinity": core("V1Affinity"),
            "tolerations": _array(core("V1Toleration"), max_items=128),
            "schedulingGates": _array(core("V1PodSchedulingGate"), max_items=16),
        }
    )


def _runtime_patch() -> dict[str, Any]:
    pod_template = _object({"metadata": _TEMPLATE_METADATA, "spec": _pod_spec_patch()})
    job_template = _object({"metadata": _TEMPLATE_METADATA, "spec": _object({"template": pod_template})})
    replicated_job = _object(
        {"name": {"type": "string", "minLength": 1, "maxLength": 253}, "template": job_template}, required=("name",)
    )
    template = _object(
        {"metadata": _TEMPLATE_METADATA, "spec": _object({"replicatedJobs": _array(replicated_job, max_items=100)})}
    )
    return _object(
        {
            "manager": {"type": "string", "minLength": 1, "maxLength": 253},
            "time": _STRING,
            "trainingRuntimeSpec": _object({"template": template}),
        },
        required=("manager",),
    )


def _initializer_source() -> dict[str, Any]:
    return _object(
        {
            "storageUri": {"type": "string", "maxLength": 2048},
            "env": _array(core("V1EnvVar")),
            "secretRef": core("V1LocalObjectReference"),
        }
    )


def trainjob_spec() -> dict[str, Any]:
    """TrainJobSpec (v2.2)."""
    managers = ["trainer.kubeflow.org/trainjob-controller", "kueue.x-k8s.io/multikueue"]
    return _object(
        {
            "runtimeRef": {
                **_object(
                    {
                        "name": {"type": "string", "minLength": 1},
                        "apiGroup": {"type": "string", "default": TRAINER_GROUP},
                        "kind": {
                            "type": "string",
                            "enum": ["TrainingRuntime", "ClusterTrainingRuntime"],
                            "default": "ClusterTrainingRuntime",
                        },
                    },
                    required=("name",),
                ),
                "x-kubernetes-validations": _IMMUTABLE,
            },
            "initializer": {
                **_object({"dataset": _initializer_source(), "model": _initializer_source()}),
                "x-kubernetes-validations": _IMMUTABLE,
            },
            "trainer": {
                **_object(
                    {
                        "image": _STRING,
                        "command": _array(_STRING, max_items=128),
                        "args": _array(_STRING, max_items=128),
                        "env": _array(core("V1EnvVar"), max_items=256),
                        "numNodes": {"type": "integer", "minimum": 1},
                        "resourcesPerNode": core("V1ResourceRequirements"),
                        "numProcPerNode": {"type": "integer", "minimum": 1},
                    }
                ),
                "x-kubernetes-validations": _IMMUTABLE,
            },
            "runtimePatches": _array(_runtime_patch(), max_items=16),
            "suspend": {"type": "boolean", "default": False},
            "activeDeadlineSeconds": {"type": "integer", "minimum": 1, "x-kubernetes-validations": _IMMUTABLE},
            "managedBy": {
                "type": "string",
                "maxLength": 253,
                "default": managers[0],
                "x-kubernetes-validations": [
                    {"rule": f"self in {managers!r}", "message": f"ManagedBy must be {' or '.join(managers)} if set"},
                    *_IMMUTABLE,
                ],
            },
        },
        required=("runtimeRef",),
    )


def trainjob_status() -> dict[str, Any]:
    """TrainJobStatus (v2.2)."""
    metric = _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "value": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        required=("name", "value"),
    )
    trainer_status = _object(
        {
            "progressPercentage": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100},
            "estimatedRemainingSeconds": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 2**31 - 1},
            "metrics": {**_array(metric, max_items=256), "x-kubernetes-list-type": "atomic"},
            "lastUpdatedTime": {"type": "string", "format": "date-time"},
        }
    )
    trainer_status["x-kubernetes-validations"] = [
        {"rule": "has(self.lastUpdatedTime)", "message": "lastUpdatedTime is required when trainerStatus is present"}
    ]
    return _object(
        {
            "conditions": _array(_condition(), max_items=8),
            "jobsStatus": _array(_jobs_status(), max_items=100),
            "trainerStatus": trainer_status,
        }
    )


def runtime_spec() -> dict[str, Any]:
    """TrainingRuntimeSpec (v2.2), the spec of TrainingRuntime and ClusterTrainingRuntime."""
    return _object(
        {
            "mlPolicy": _object(
                {
                    "numNodes": {"type": "integer", "minimum": 1},
                    "torch": _object({}),
                    "jax": _object({}),
                    "xgboost": _object({}),
                    "mpi": _object(
                        {
                            "numProcPerNode": _INT,
                            "mpiImplementation": {"type": "string", "enum": ["OpenMPI", "Intel", "MPICH"]},
                            "sshAuthMountPath": _STRING,
                            "runLauncherAsNode": _BOOL,
                        }
                    ),
                }
            ),
            "podGroupPolicy": _object({"coscheduling": _object({"scheduleTimeoutSeconds": _INT})}),
            "template": _object({"metadata": _TEMPLATE_METADATA, "spec": jobset_spec()}),
        }
    )


def crd_for(kind: Kind, spec: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": _STRING,
        "kind": _STRING,
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        properties["status"] = status
    version: dict[str, Any] = {
        "name": kind.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _object(properties)},
    }
    if kind.status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{kind.group}"},
        "spec": {
            "group": kind.group,
            "names": {"kind": kind.kind, "plural": kind.plural},
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "versions": [version],
        },
    }


@functools.cache
def crds() -> dict[str, dict[str, Any]]:
    """Kind -> CustomResourceDefinition of each kind served here."""
    train_job, runtime, cluster_runtime, jobset = KINDS
    return {
        "TrainJob": crd_for(train_job, trainjob_spec(), trainjob_status()),
        "TrainingRuntime": crd_for(runtime, runtime_spec(), None),
        "ClusterTrainingRuntime": crd_for(cluster_runtime, runtime_spec(), None),
        "JobSet": crd_for(jobset, jobset_spec(), jobset_status()),
    }


def validator() -> Validator:
    """Admission of these kinds: unknown fields refused, defaults applied, schema and CEL rules
    checked, as the API server does for the releases' CRDs."""
    return schema_validator(crds())
