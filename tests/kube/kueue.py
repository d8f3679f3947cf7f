"""Kueue, played for the emulator: its kinds (schemas written for this project from the pinned
release's API types, only the fields used here, strict about unknown fields) and its admission.

Pinned: Kueue **v0.14.8** (``kueue.x-k8s.io/v1beta1``; v0.15 added v1beta2). ``KueueController``
does, once a tick of the node, what Kueue's job framework and scheduler do for the PyTorchJobs and
TrainJobs labelled ``kueue.x-k8s.io/queue-name``:

- a Workload per child (named as Kueue names it: the kind, the child's name and a hash of both with
  the uid; labelled ``kueue.x-k8s.io/job-uid``; owned by the child), its pod sets and requests
  taken from the child, its priority from the pods' PriorityClass (0 without one);
- the scheduler: the pending Workloads of each ClusterQueue in queue order (priority, then the time
  they were queued: created, or evicted), each admitted when the quota of the resources the
  ClusterQueue covers allows (``status.admission``, QuotaReserved and Admitted True); one that does
  not fit, with ``preemption.withinClusterQueue: LowerPriority``, evicts the lowest-priority,
  newest admitted Workloads whose quota it needs (Evicted True reason Preempted, Preempted True
  reason InClusterQueue) and is admitted once their pods are gone;
- the job reconciler: an admitted Workload's suspended child is unsuspended (even one someone
  else suspended: Kueue's rule), an evicted one's child suspended, and its quota released (Admitted
  and QuotaReserved False, Requeued True) once the child has no pod left; ``spec.active: false``
  evicts with reason Deactivated; a finished child finishes its Workload (Finished True).

TrainJobs, as Kueue's TrainJob integration for Trainer v2.2 does it (``trainer.kubeflow.org/trainjob``
of Kueue v0.17 and later: the first releases built on Trainer v2.2's ``runtimePatches``; v0.14 to
v0.16 write Trainer v2.1's ``podTemplateOverrides`` through v2.1's types, and their update of a
v2.2 TrainJob on admission drops its ``runtimePatches`` and ``activeDeadlineSeconds``):

- its defaulting webhook (``install``) suspends a new TrainJob that names a queue and appends to
  every new TrainJob Kueue's runtime patch (manager ``kueue.x-k8s.io/manager``; the queue's label
  on the JobSet's metadata);
- the Workload's pod sets are the replicated jobs of the JobSet Trainer would make from the
  TrainJob and its runtime (count = replicas x parallelism, the pod template as it would be), as
  Kueue gets them from Trainer's own runtime code;
- admission fills Kueue's runtime patch with one replicated-job patch per pod set (the pods' label
  ``kueue.x-k8s.io/podset`` and the flavors' node labels as node selector), written while the
  TrainJob is still suspended, then unsuspends it (two writes, as Kueue does); an eviction suspends
  it, waits until its ``jobsStatus`` has no active job, empties those patches, then releases the
  quota. Without Kueue's runtime patch the TrainJob is never started ("kueue runtime patch not
  found").

Not played: cohorts and borrowing, fair sharing, admission checks, waitForPodsReady, the flavors'
node labels and taints on a PyTorchJob (no node selector is injected there), the podset
annotations of feature gates (topology-aware scheduling), and the visibility API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubernetes.utils import parse_quantity

from tests.factories import PYTORCHJOB
from tests.kube.emulator import Kind, schema_validator
from tests.kube.kubeflow_trainer import (
    TRAINER_API,
    TRAINER_GROUP,
    TRAINER_VERSION,
    _array,
    _condition,
    _object,
    core,
    crd_for,
)
from tests.kube.server import ApiStatusError
from tests.kube.trainer_controller import jobset_for

if TYPE_CHECKING:
    from tests.kube.node import LocalNode
    from tests.kube.server import EmulatorServer

GROUP, VERSION = "kueue.x-k8s.io", "v1beta1"
API = f"{GROUP}/{VERSION}"
QUEUE_LABEL = f"{GROUP}/queue-name"
JOB_UID_LABEL = f"{GROUP}/job-uid"
PODSET_LABEL = f"{GROUP}/podset"
# The manager of Kueue's entry in a TrainJob's spec.runtimePatches.
RUNTIME_PATCH_MANAGER = f"{GROUP}/manager"

KINDS = (
    Kind(GROUP, VERSION, "workloads", "Workload", namespaced=True, status_subresource=True),
    Kind(GROUP, VERSION, "localqueues", "LocalQueue", namespaced=True, status_subresource=True),
    Kind(GROUP, VERSION, "clusterqueues", "ClusterQueue", namespaced=False, status_subresource=True),
    Kind(GROUP, VERSION, "resourceflavors", "ResourceFlavor", namespaced=False),
)

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_NAME = {"type": "string", "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
_QUANTITY = {"x-kubernetes-int-or-string": True}
_RESOURCES = {"type": "object", "additionalProperties": _QUANTITY}


def workload_spec() -> dict[str, Any]:
    """WorkloadSpec: podSets (name, count, template), queueName, priority, active."""
    pod_set = _object(
        {"name": _NAME, "count": {"type": "integer", "minimum": 0}, "template": core("V1PodTemplateSpec")},
        required=("name", "count", "template"),
    )
    return _object(
        {
            "podSets": {**_array(pod_set, max_items=8), "minItems": 1},
            "queueName": _STRING,
            "priorityClassName": _STRING,
            "priority": _INT,
            "priorityClassSource": {
                "type": "string",
                "enum": ["kueue.x-k8s.io/workloadpriorityclass", "scheduling.k8s.io/priorityclass", ""],
            },
            "active": _BOOL,
        },
        required=("podSets",),
    )


def workload_status() -> dict[str, Any]:
    """WorkloadStatus: conditions and admission."""
    assignment = _object(
        {
            "name": _NAME,
            "flavors": {"type": "object", "additionalProperties": _STRING},
            "resourceUsage": _RESOURCES,
            "count": _INT,
        },
        required=("name",),
    )
    return _object(
        {
            "conditions": _array(_condition(), max_items=16),
            "admission": _object(
                {"clusterQueue": _STRING, "podSetAssignments": _array(assignment, max_items=8)},
                required=("clusterQueue", "podSetAssignments"),
            ),
        }
    )


def _queue_status() -> dict[str, Any]:
    counts = {"type": "integer", "minimum": 0}
    return _object(
        {
            "pendingWorkloads": counts,
            "reservingWorkloads": counts,
            "admittedWorkloads": counts,
            "conditions": _array(_condition(), max_items=16),
        }
    )


def cluster_queue_spec() -> dict[str, Any]:
    """ClusterQueueSpec: resourceGroups (covered resources, flavors' nominal quotas), the
    namespaceSelector, queueingStrategy and preemption within the ClusterQueue."""
    resource = _object({"name": _STRING, "nominalQuota": _QUANTITY}, required=("name", "nominalQuota"))
    flavor = _object({"name": _NAME, "resources": _array(resource, max_items=16)}, required=("name", "resources"))
    group = _object(
        {"coveredResources": _array(_STRING, max_items=16), "flavors": _array(flavor, max_items=16)},
        required=("coveredResources", "flavors"),
    )
    return _object(
        {
            "resourceGroups": _array(group, max_items=16),
            "namespaceSelector": core("V1LabelSelector"),
            "queueingStrategy": {"type": "string", "enum": ["StrictFIFO", "BestEffortFIFO"]},
            "preemption": _object(
                {
                    "withinClusterQueue": {
                        "type": "string",
                        "enum": ["Never", "LowerPriority", "LowerOrNewerEqualPriority"],
                    }
                }
            ),
        }
    )


def crds() -> dict[str, dict[str, Any]]:
    """Kind -> CustomResourceDefinition of each Kueue kind served here."""
    workload, local_queue, cluster_queue, flavor = KINDS
    return {
        "Workload": crd_for(workload, workload_spec(), workload_status()),
        "LocalQueue": crd_for(
            local_queue, _object({"clusterQueue": _STRING}, required=("clusterQueue",)), _queue_status()
        ),
        "ClusterQueue": crd_for(cluster_queue, cluster_queue_spec(), _queue_status()),
        "ResourceFlavor": crd_for(
            flavor, _object({"nodeLabels": {"type": "object", "additionalProperties": _STRING}}), None
        ),
    }


def validator() -> Any:
    """Admission of the Kueue kinds, as the API server does for the release's CRDs."""
    return schema_validator(crds())


# Kueue's webhook ---------------------------------------------------------------------------------


def trainjob_webhook(train_job: dict[str, Any]) -> None:
    """Kueue's defaulting of a new TrainJob: one that names a queue is suspended until its
    admission, and every one gets Kueue's runtime patch, which admission fills."""
    spec = train_job.setdefault("spec", {})
    template: dict[str, Any] = {"spec": {}}
    queue = (train_job.get("metadata", {}).get("labels") or {}).get(QUEUE_LABEL)
    if queue:
        spec["suspend"] = True
        template["metadata"] = {"labels": {QUEUE_LABEL: queue}}
    patch = {"manager": RUNTIME_PATCH_MANAGER, "trainingRuntimeSpec": {"template": template}}
    spec["runtimePatches"] = [*(spec.get("runtimePatches") or []), patch]


def install(server: EmulatorServer) -> None:
    """Kueue's webhooks in ``server``'s emulator (its MutatingWebhookConfiguration): the TrainJobs
    created from now on get Kueue's defaults."""
    server.emulator.mutators.setdefault((TRAINER_GROUP, TRAINER_VERSION, "trainjobs"), []).append(trainjob_webhook)


def kueue_runtime_patch(train_job: Mapping[str, Any]) -> dict[str, Any] | None:
    """Kueue's entry in the TrainJob's runtimePatches, None when it has none."""
    patches = (train_job.get("spec") or {}).get("runtimePatches") or []
    return next((dict(p) for p in patches if p.get("manager") == RUNTIME_PATCH_MANAGER), None)


# Kueue's controllers -----------------------------------------------------------------------------


def workload_name(kind: str, group: str, name: str, uid: str) -> str:
    """The Workload's name for a job, as Kueue's job framework names it."""
    digest = hashlib.sha1("\n".join((kind, group, name, uid)).encode()).hexdigest()[:5]
    return f"{kind.lower()}-{name}"[:247] + "-" + digest


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition_of(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((dict(c) for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def _is_true(obj: Mapping[str, Any], kind: str) -> bool:
    condition = _condition_of(obj, kind)
    return bool(condition and condition.get("status") == "True")


def _with(conditions: list[dict[str, Any]], kind: str, true: bool, reason: str, message: str) -> list[dict[str, Any]]:
    """The conditions with ``kind`` set (lastTransitionTime moves on a change of status only)."""
    status = "True" if true else "False"
    previous = next((c for c in conditions if c["type"] == kind), None)
    when = previous["lastTransitionTime"] if previous and previous["status"] == status else _now()
    kept = [c for c in conditions if c["type"] != kind]
    return [*kept, {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": when}]


def _requests(template: Mapping[str, Any]) -> dict[str, float]:
    """What one pod of a template requests (requests, else limits), per resource."""
    total: dict[str, float] = {}
    for container in (template.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        for name, value in {**(resources.get("limits") or {}), **(resources.get("requests") or {})}.items():
            total[name] = total.get(name, 0.0) + float(parse_quantity(value))
    return total


def _usage(workload: Mapping[str, Any], covered: set[str]) -> dict[str, float]:
    total: dict[str, float] = {}
    for pod_set in workload["spec"]["podSets"]:
        for name, value in _requests(pod_set["template"]).items():
            if name in covered:
                total[name] = total.get(name, 0.0) + value * int(pod_set["count"])
    return total


class KueueController:
    """Plays Kueue for the children in ``node``'s emulator (see the module docstring)."""

    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self.api = node.api

    # The children ---------------------------------------------------------------------------------

    def _children(self) -> list[dict[str, Any]]:
        return [
            child
            for api_version, kind in ((PYTORCHJOB, "PyTorchJob"), (TRAINER_API, "TrainJob"))
            for child in self.api.list(api_version, kind)
            if QUEUE_LABEL in (child["metadata"].get("labels") or {}) and not child["metadata"].get("deletionTimestamp")
        ]

    @staticmethod
    def _suspended(child: Mapping[str, Any]) -> bool:
        if child["kind"] == "TrainJob":
            return bool(child["spec"].get("suspend"))
        return bool((child["spec"].get("runPolicy") or {}).get("suspend"))

    @staticmethod
    def _finished(child: Mapping[str, Any]) -> bool:
        ends = ("Complete", "Failed") if child["kind"] == "TrainJob" else ("Succeeded", "Failed")
        return any(_is_true(child, kind) for kind in ends)

    def _set_suspend(self, child: Mapping[str, Any], suspend: bool) -> None:
        meta = child["metadata"]
        if child["kind"] == "TrainJob":
            self.api.patch(TRAINER_API, "TrainJob", meta["name"], {"spec": {"suspend": suspend}}, meta["namespace"])
        else:
            body = {"spec": {"runPolicy": {"suspend": suspend}}}
            self.api.patch(PYTORCHJOB, "PyTorchJob", meta["name"], body, meta["namespace"])

    def _active(self, child: Mapping[str, Any]) -> bool:
        """Whether the child still has pods: a TrainJob's ``jobsStatus`` counts active jobs (what
        Kueue reads); a PyTorchJob's pods on the node."""
        if child["kind"] == "TrainJob":
            jobs = (child.get("status") or {}).get("jobsStatus") or []
            return any(int(job.get("active") or 0) > 0 for job in jobs)
        run = self.node.runs.get((child["metadata"]["namespace"], child["metadata"]["name"]))
        return run is not None and bool(run.pods)

    def _write_runtime_patch(self, child: Mapping[str, Any], replicated_jobs: list[dict[str, Any]] | None) -> bool:
        """Kueue's runtime patch of the TrainJob with ``replicated_jobs`` (None: emptied), written
        as Kueue's update of the object it read; False on a conflict (the next tick tries again)."""
        patches = [dict(p) for p in child["spec"].get("runtimePatches") or []]
        mine = next((p for p in patches if p.get("manager") == RUNTIME_PATCH_MANAGER), None)
        if mine is None:
            return True
        template = dict((mine.get("trainingRuntimeSpec") or {}).get("template") or {})
        spec = {k: v for k, v in (template.get("spec") or {}).items() if k != "replicatedJobs"}
        if replicated_jobs:
            spec["replicatedJobs"] = replicated_jobs
        if spec == (template.get("spec") or {}):
            return True
        mine["trainingRuntimeSpec"] = {
            **(mine.get("trainingRuntimeSpec") or {}),
            "template": {**template, "spec": spec},
        }
        meta = child["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": {"runtimePatches": patches}}
        try:
            self.api.patch(TRAINER_API, "TrainJob", meta["name"], body, meta["namespace"])
        except ApiStatusError as exc:
            if exc.status != 409:
                raise
            return False
        return True

    def _pod_set_patches(self, workload: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One replicated-job patch per admitted pod set: the pods' podset label and the node labels
        of the flavors assigned to it."""
        patches = []
        for assignment in (workload.get("status") or {}).get("admission", {}).get("podSetAssignments") or []:
            node_selector: dict[str, str] = {}
            for flavor in sorted(set((assignment.get("flavors") or {}).values())):
                found = self.api.find(API, "ResourceFlavor", flavor, None)
                node_selector.update(((found or {}).get("spec") or {}).get("nodeLabels") or {})
            pod_spec: dict[str, Any] = {"nodeSelector": node_selector} if node_selector else {}
            pod = {"metadata": {"labels": {PODSET_LABEL: assignment["name"]}}, "spec": pod_spec}
            patches.append({"name": assignment["name"], "template": {"spec": {"template": pod}}})
        return patches

    def _start(self, child: Mapping[str, Any], workload: Mapping[str, Any]) -> None:
        """Kueue's start of an admitted child: a TrainJob gets its pod sets' patch while still
        suspended, then is unsuspended; a PyTorchJob is unsuspended."""
        if child["kind"] == "TrainJob":
            if kueue_runtime_patch(child) is None:
                return  # Kueue: "kueue runtime patch not found"; the TrainJob is never started
            if not self._write_runtime_patch(child, self._pod_set_patches(workload)):
                return  # a conflict: the next tick starts it
        self._set_suspend(child, False)

    @staticmethod
    def _priority(template: Mapping[str, Any]) -> int:
        """The pods' priority: the emulator serves no PriorityClass, so 0 (a test makes a Workload of
        higher priority itself, as another team's job would come with one)."""
        return 0

    def _pod_sets(self, child: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The child's pod sets (None while a TrainJob's runtime is missing: no Workload yet)."""
        if child["kind"] == "TrainJob":
            runtime = self.node.trainer.runtime(child)
            if runtime is None:
                return None
            return [
                {
                    "name": replicated["name"],
                    "count": int(replicated.get("replicas", 1))
                    * int(replicated["template"]["spec"].get("parallelism") or 1),
                    "template": replicated["template"]["spec"]["template"],
                }
                for replicated in jobset_for(child, runtime)["spec"]["replicatedJobs"]
            ]
        replicas = child["spec"]["pytorchReplicaSpecs"]
        return [
            {"name": replica.lower(), "count": int(spec.get("replicas", 1)), "template": spec["template"]}
            for replica, spec in replicas.items()
        ]

    def _ensure_workload(self, child: Mapping[str, Any], workloads: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        meta = child["metadata"]
        found = workloads.get(meta["uid"])
        pod_sets = self._pod_sets(child)
        if pod_sets is None:
            return found
        priority = self._priority(pod_sets[0]["template"])
        if found is not None:
            if found["spec"].get("priority") != priority and self._suspended(child):
                # A suspended job's new priority reaches its Workload (Kueue updates it in place).
                return self.api.patch(
                    API, "Workload", found["metadata"]["name"], {"spec": {"priority": priority}}, meta["namespace"]
                )
            return found
        group = child["apiVersion"].split("/")[0]
        workload = {
            "apiVersion": API,
            "kind": "Workload",
            "metadata": {
                "name": workload_name(child["kind"], group, meta["name"], meta["uid"]),
                "namespace": meta["namespace"],
                "labels": {JOB_UID_LABEL: meta["uid"]},
                "ownerReferences": [
                    {
                        "apiVersion": child["apiVersion"],
                        "kind": child["kind"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"queueName": meta["labels"][QUEUE_LABEL], "podSets": pod_sets, "priority": priority},
        }
        return self.api.create(workload)

    # One tick -------------------------------------------------------------------------------------

    def tick(self) -> None:
        if not self.api.list(API, "ClusterQueue", None):
            return  # Kueue is not set up in this cluster: nothing is queued
        workloads = {
            (w["metadata"].get("labels") or {}).get(JOB_UID_LABEL, w["metadata"]["name"]): w
            for w in self.api.list(API, "Workload")
        }
        children = {child["metadata"]["uid"]: child for child in self._children()}
        for uid, child in children.items():
            workload = self._ensure_workload(child, workloads)
            if workload is not None:
                workloads[uid] = workload
        for uid, workload in list(workloads.items()):
            workloads[uid] = self._reconcile(workload, children.get(uid))
        self._schedule(list(workloads.values()))

    def _write(self, workload: Mapping[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        meta = workload["metadata"]
        return self.api.patch_status(API, "Workload", meta["name"], status, meta["namespace"])

    def _reconcile(self, workload: dict[str, Any], child: Mapping[str, Any] | None) -> dict[str, Any]:
        """The job reconciler's moves for one Workload and its child."""
        conditions = list((workload.get("status") or {}).get("conditions") or [])
        if _is_true(workload, "Finished"):
            return workload
        if child is not None and self._finished(child):
            return self._write(
                workload, {"conditions": _with(conditions, "Finished", True, "Succeeded", "Job finished")}
            )
        reserved = _is_true(workload, "QuotaReserved")
        if workload["spec"].get("active") is False and reserved and not _is_true(workload, "Evicted"):
            message = "The workload is deactivated"
            workload = self._write(workload, {"conditions": _with(conditions, "Evicted", True, "Deactivated", message)})
            conditions = workload["status"]["conditions"]
        if _is_true(workload, "Evicted"):
            if child is not None and not self._suspended(child):
                self._set_suspend(child, True)
                return workload  # its pods go; the next tick sees the child as it is then
            if reserved and not (child is not None and self._active(child)):
                if child is not None and child["kind"] == "TrainJob" and not self._write_runtime_patch(child, None):
                    return workload  # a conflict: the next tick restores it
                evicted = _condition_of(workload, "Evicted") or {}
                conditions = _with(conditions, "QuotaReserved", False, "Pending", evicted.get("message", ""))
                conditions = _with(conditions, "Admitted", False, "NoReservation", "The workload has no reservation")
                conditions = _with(
                    conditions,
                    "Requeued",
                    evicted.get("reason") == "Preempted",
                    evicted.get("reason", ""),
                    evicted.get("message", ""),
                )
                return self._write(workload, {"conditions": conditions, "admission": None})
            return workload
        if child is not None and _is_true(workload, "Admitted") and self._suspended(child):
            self._start(child, workload)  # Kueue's rule: an admitted job runs
        return workload

    def _schedule(self, workloads: list[dict[str, Any]]) -> None:
        """Admit the pending Workloads that fit, in queue order; preempt for those that do not."""
        for cluster_queue in self.api.list(API, "ClusterQueue", None):
            name = cluster_queue["metadata"]["name"]
            queues = {
                (q["metadata"]["namespace"], q["metadata"]["name"])
                for q in self.api.list(API, "LocalQueue")
                if q["spec"]["clusterQueue"] == name
            }
            mine = [w for w in workloads if (w["metadata"]["namespace"], w["spec"].get("queueName")) in queues]
            quota: dict[str, tuple[str, float]] = {}
            for group in cluster_queue["spec"].get("resourceGroups") or []:
                flavor = group["flavors"][0]
                for resource in flavor["resources"]:
                    quota[resource["name"]] = (flavor["name"], float(parse_quantity(resource["nominalQuota"])))
            self._admit(cluster_queue, mine, quota)

    def _admit(
        self, cluster_queue: Mapping[str, Any], workloads: list[dict[str, Any]], quota: dict[str, tuple[str, float]]
    ) -> None:
        covered = set(quota)
        holding = [w for w in workloads if _is_true(w, "QuotaReserved")]
        used = {name: sum(_usage(w, covered).get(name, 0.0) for w in holding) for name in covered}
        pending = [
            w
            for w in workloads
            if not _is_true(w, "QuotaReserved")
            and not _is_true(w, "Finished")
            and w["spec"].get("active", True) is not False
        ]
        pending.sort(key=lambda w: (-int(w["spec"].get("priority") or 0), self._queued_at(w)))
        preempting = any(_is_true(w, "Evicted") and _is_true(w, "QuotaReserved") for w in holding)
        for workload in pending:
            need = _usage(workload, covered)
            if all(used[name] + value <= quota[name][1] for name, value in need.items()):
                used = {name: used[name] + need.get(name, 0.0) for name in covered}
                self._admit_one(cluster_queue, workload, quota, need)
                continue
            policy = (cluster_queue["spec"].get("preemption") or {}).get("withinClusterQueue", "Never")
            if policy == "Never" or preempting:
                continue
            victims = self._victims(workload, holding, used, need, quota)
            for victim in victims:
                conditions = _with(
                    victim["status"]["conditions"], "Evicted", True, "Preempted", self._preemption_message(workload)
                )
                conditions = _with(conditions, "Preempted", True, "InClusterQueue", self._preemption_message(workload))
                self._write(victim, {"conditions": conditions})
            preempting = preempting or bool(victims)

    @staticmethod
    def _queued_at(workload: Mapping[str, Any]) -> str:
        requeued = _condition_of(workload, "Requeued")
        if requeued is not None and requeued["status"] == "True":
            return requeued["lastTransitionTime"]
        return workload["metadata"].get("creationTimestamp") or ""

    @staticmethod
    def _preemption_message(preemptor: Mapping[str, Any]) -> str:
        uid = preemptor["metadata"].get("uid")
        job_uid = (preemptor["metadata"].get("labels") or {}).get(JOB_UID_LABEL, "UNKNOWN")
        return f"Preempted to accommodate a workload (UID: {uid}, JobUID: {job_uid}) due to prioritization in the ClusterQueue"

    @staticmethod
    def _victims(
        preemptor: Mapping[str, Any],
        holding: list[dict[str, Any]],
        used: dict[str, float],
        need: dict[str, float],
        quota: dict[str, tuple[str, float]],
    ) -> list[dict[str, Any]]:
        """The lowest-priority, most recently admitted Workloads whose quota makes room, or none."""
        priority = int(preemptor["spec"].get("priority") or 0)
        candidates = [
            w for w in holding if int(w["spec"].get("priority") or 0) < priority and not _is_true(w, "Evicted")
        ]
        candidates.sort(key=lambda w: (int(w["spec"].get("priority") or 0), _admitted_at_desc(w)))
        free = dict(used)
        victims: list[dict[str, Any]] = []
        for candidate in candidates:
            if all(free[name] + value <= quota[name][1] for name, value in need.items()):
                break
            victims.append(candidate)
            for name, value in _usage(candidate, set(quota)).items():
                free[name] -= value
        fits = all(free[name] + value <= quota[name][1] for name, value in need.items())
        return victims if fits else []

    def _admit_one(
        self,
        cluster_queue: Mapping[str, Any],
        workload: dict[str, Any],
        quota: dict[str, tuple[str, float]],
        need: dict[str, float],
    ) -> None:
        name = cluster_queue["metadata"]["name"]
        assignments = []
        for pod_set in workload["spec"]["podSets"]:
            per_pod = {k: v for k, v in _requests(pod_set["template"]).items() if k in quota}
            assignments.append(
                {
                    "name": pod_set["name"],
                    "flavors": {k: quota[k][0] for k in per_pod},
                    "resourceUsage": {k: f"{v * int(pod_set['count']):g}" for k, v in per_pod.items()},
                    "count": int(pod_set["count"]),
                }
            )
        conditions = list((workload.get("status") or {}).get("conditions") or [])
        conditions = _with(conditions, "QuotaReserved", True, "QuotaReserved", f"Quota reserved in ClusterQueue {name}")
        conditions = _with(conditions, "Admitted", True, "Admitted", "The workload is admitted")
        for kind in ("Evicted", "Preempted"):
            if _condition_of(workload, kind) is not None:
                conditions = _with(
                    conditions,
                    kind,
                    False,
                    "QuotaReserved",
                    "Previously: " + (_condition_of(workload, kind) or {}).get("message", ""),
                )
        self._write(
            workload, {"conditions": conditions, "admission": {"clusterQueue": name, "podSetAssignments": assignments}}
        )


def _admitted_at_desc(workload: Mapping[str, Any]) -> float:
    admitted = _condition_of(workload, "Admitted") or {}
    stamp = admitted.get("lastTransitionTime")
    return -datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
