"""Every Kubernetes API call the operator makes, in one list: its own client's calls (kube.py,
from children.py, cleanup.py, datasets.py, reconcile.py and status_writer.py), kopf's watches,
patches and Events for the handlers main.py registers, and what the API server's admission asks of
the objects the operator creates.

The chart's RBAC grants exactly this list, in cluster-wide and namespaced mode (checked by
tests/chart/test_rbac.py), and every request the running operator sends is one of it (recorded
against the emulator by tests/operator/test_access.py). Nothing else reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tensorone.api import DATASETS, GROUP, TRAININGJOBS
from tensorone_operator.builders import PYTORCHJOB_GROUP, PYTORCHJOB_PLURAL, TRAINJOB_GROUP, TRAINJOB_PLURAL
from tensorone_operator.config import ChildBackend
from tensorone_operator.kueue import KUEUE_GROUP, PENDING_WORKLOADS, VISIBILITY_GROUP, WORKLOADS


class Caller(StrEnum):
    """Who sends the request."""

    OPERATOR = "operator"  # tensorone_operator.kube.KubeApi
    KOPF = "kopf"  # watches, finalizer and annotation patches, Events
    ADMISSION = "admission"  # no request: what the API server checks on the operator's creates


class WatchMode(StrEnum):
    """Where the operator watches: every namespace, or the namespaces it is given."""

    CLUSTER_WIDE = "cluster-wide"
    NAMESPACED = "namespaced"


BOTH_MODES = frozenset(WatchMode)
DEFAULT_BACKENDS = frozenset({ChildBackend.pytorchjob})


@dataclass(frozen=True)
class ApiCall:
    """Verbs on one resource, who uses them and why, and when they are needed."""

    group: str
    resource: str
    verbs: frozenset[str]
    caller: Caller
    why: str
    modes: frozenset[WatchMode] = BOTH_MODES
    # None: whatever operatorConfig.checkGpuNodes says; True: only while it is on.
    gpu_check: bool | None = None
    # A cluster-scoped resource: granted by a ClusterRole in both modes.
    cluster_scoped: bool = False
    # None: every configuration; else only while some namespace uses this backend.
    backend: ChildBackend | None = None

    def needed(
        self, mode: WatchMode, check_gpu_nodes: bool, backends: frozenset[ChildBackend] = DEFAULT_BACKENDS
    ) -> bool:
        """Whether an operator in ``mode`` with this GPU-check setting and these backends makes these calls."""
        return (
            mode in self.modes
            and (self.gpu_check is None or self.gpu_check == check_gpu_nodes)
            and (self.backend is None or self.backend in backends)
        )


def _verbs(*verbs: str) -> frozenset[str]:
    return frozenset(verbs)


API_CALLS: tuple[ApiCall, ...] = (
    ApiCall(GROUP, TRAININGJOBS, _verbs("list", "watch"), Caller.KOPF, "the handlers, index and follow loop of jobs"),
    ApiCall(
        GROUP,
        TRAININGJOBS,
        _verbs("patch"),
        Caller.KOPF,
        "kopf's finalizer and its progress and diff-base annotations; the force-delete release",
    ),
    ApiCall(GROUP, TRAININGJOBS, _verbs("get"), Caller.OPERATOR, "the newest job before a reconcile"),
    ApiCall(GROUP, "trainingjobs/status", _verbs("patch"), Caller.OPERATOR, "the status the operator mirrors"),
    ApiCall(
        GROUP,
        "trainingjobs/finalizers",
        _verbs("update"),
        Caller.ADMISSION,
        "children carry an ownerReference with blockOwnerDeletion (OwnerReferencesPermissionEnforcement)",
    ),
    ApiCall(GROUP, DATASETS, _verbs("list", "watch"), Caller.KOPF, "the Dataset index and its event handler"),
    ApiCall(GROUP, DATASETS, _verbs("get"), Caller.OPERATOR, "a Dataset the index has not seen yet"),
    ApiCall(GROUP, "datasets/status", _verbs("patch"), Caller.OPERATOR, "a Dataset's Ready condition and records"),
    ApiCall(
        PYTORCHJOB_GROUP,
        PYTORCHJOB_PLURAL,
        _verbs("list", "watch"),
        Caller.KOPF,
        "the children's index",
        backend=ChildBackend.pytorchjob,
    ),
    ApiCall(
        PYTORCHJOB_GROUP,
        PYTORCHJOB_PLURAL,
        _verbs("get", "create", "patch", "delete"),
        Caller.OPERATOR,
        "the child: created, read back, suspended or resized, deleted on cancel and delete",
        backend=ChildBackend.pytorchjob,
    ),
    ApiCall(
        TRAINJOB_GROUP,
        TRAINJOB_PLURAL,
        _verbs("list", "watch"),
        Caller.KOPF,
        "the TrainJob children's index",
        backend=ChildBackend.trainjob,
    ),
    ApiCall(
        TRAINJOB_GROUP,
        TRAINJOB_PLURAL,
        _verbs("get", "create", "patch", "delete"),
        Caller.OPERATOR,
        "the TrainJob child: created, read back, suspended (spec.suspend), deleted on cancel and delete",
        backend=ChildBackend.trainjob,
    ),
    ApiCall(
        KUEUE_GROUP,
        WORKLOADS,
        _verbs("list", "patch"),
        Caller.OPERATOR,
        "Kueue's Workload of a queued job's child: admission and preemption read, spec.active set by stop and resume",
    ),
    ApiCall(
        VISIBILITY_GROUP,
        PENDING_WORKLOADS,
        _verbs("get"),
        Caller.OPERATOR,
        "a queued job's position in its LocalQueue, from Kueue's visibility API",
    ),
    ApiCall(
        "",
        "configmaps",
        _verbs("get", "create", "patch", "delete"),
        Caller.OPERATOR,
        "the job's resolved configuration for the trainer",
    ),
    ApiCall(
        "",
        "persistentvolumeclaims",
        _verbs("get", "create", "delete"),
        Caller.OPERATOR,
        "the checkpoint claim the operator creates; a Dataset's claim is only read",
    ),
    ApiCall("", "pods", _verbs("list", "watch"), Caller.KOPF, "the training pods' addresses and termination messages"),
    ApiCall("", "events", _verbs("create"), Caller.KOPF, "Events on TrainingJobs (kopf.event)"),
    ApiCall(
        "",
        "nodes",
        _verbs("list", "watch"),
        Caller.KOPF,
        "the GPU node index (kopf watches cluster-scoped resources in both modes)",
        gpu_check=True,
        cluster_scoped=True,
    ),
    ApiCall(
        "",
        "nodes",
        _verbs("list"),
        Caller.OPERATOR,
        "the GPU check of a namespaced operator, which has no node index of its own",
        modes=frozenset({WatchMode.NAMESPACED}),
        gpu_check=True,
        cluster_scoped=True,
    ),
    ApiCall(
        "",
        "namespaces",
        _verbs("list", "watch"),
        Caller.KOPF,
        "a namespaced kopf follows which of its namespaces exist (cluster-wide, it needs no list)",
        modes=frozenset({WatchMode.NAMESPACED}),
        cluster_scoped=True,
    ),
    ApiCall(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        _verbs("list", "watch"),
        Caller.KOPF,
        "kopf notices the CRDs of its resources being installed, changed or removed",
        cluster_scoped=True,
    ),
)


def required_access(
    mode: WatchMode, check_gpu_nodes: bool, backends: frozenset[ChildBackend] = DEFAULT_BACKENDS
) -> dict[tuple[str, str], frozenset[str]]:
    """(group, resource) -> verbs an operator in ``mode`` with these child backends needs."""
    access: dict[tuple[str, str], frozenset[str]] = {}
    for call in API_CALLS:
        if call.needed(mode, check_gpu_nodes, backends):
            key = (call.group, call.resource)
            access[key] = access.get(key, frozenset()) | call.verbs
    return access
