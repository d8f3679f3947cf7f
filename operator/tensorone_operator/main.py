"""Every kopf handler of the operator, kopf's settings, and nothing else: the work is in reconcile.py
and the modules it sequences.

Nothing is registered at import: ``register`` puts the handlers into a registry for a loaded
configuration (``python -m tensorone_operator`` and the tests call it), and the ``Reconciler`` the
handlers call is given in kopf's memo by whoever starts kopf.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from tensorone.api import DATASETS, GROUP, TRAININGJOBS, VERSION
from tensorone_operator.builders import (
    LABEL_JOB_NAME,
    LABEL_MANAGED_BY,
    MANAGER,
    PYTORCHJOB_GROUP,
    PYTORCHJOB_PLURAL,
    PYTORCHJOB_VERSION,
    TRAINJOB_GROUP,
    TRAINJOB_PLURAL,
    TRAINJOB_VERSION,
)
from tensorone_operator.catalog import GPU_PRODUCT_LABEL
from tensorone_operator.cleanup import FINALIZER, FORCE_DELETE_ANNOTATION
from tensorone_operator.config import ChildBackend, OperatorConfig
from tensorone_operator.follower import Follower
from tensorone_operator.indexes import (
    INDEX_TRAINJOBS,
    INDEX_WAITING,
    indexes_of,
    packed,
    slim_child,
    slim_dataset,
    slim_node,
    waiting_keys,
)
from tensorone_operator.trainjob import child_view

JOB_RESOURCE = (GROUP, VERSION, TRAININGJOBS)
DATASET_RESOURCE = (GROUP, VERSION, DATASETS)
PYTORCHJOBS = (PYTORCHJOB_GROUP, PYTORCHJOB_VERSION, PYTORCHJOB_PLURAL)
TRAINJOBS = (TRAINJOB_GROUP, TRAINJOB_VERSION, TRAINJOB_PLURAL)
PODS = ("v1", "pods")
NODES = ("v1", "nodes")
OURS = {LABEL_MANAGED_BY: MANAGER}
OUR_PODS: dict[str, Any] = {LABEL_JOB_NAME: kopf.PRESENT, LABEL_MANAGED_BY: MANAGER}
GPU_NODES = {GPU_PRODUCT_LABEL: kopf.PRESENT}
# An API error of a TrainingJob handler is retried after 5 s, not kopf's default 60 s.
BACKOFF_SECONDS = 5
# Objects per page of kopf's initial lists.
LIST_CHUNK_SIZE = 20
# How long kopf's task for one object's events waits for more before it ends.
KOPF_IDLE_SECONDS = 0.5


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Storage and finalizer under our domain (nothing under kopf.zalando.org); Events only for
    warnings and our own Events."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # kopf would post an Event for every INFO log line of a handler: keep Events meaningful.
    settings.posting.level = logging.WARNING
    # A dropped watch is re-established quickly; the API server closes idle ones anyway.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # The initial lists come in chunks: one list of every Dataset (up to ~1.5 MB each) would be
    # read and parsed whole, at start and after every expired watch.
    settings.watching.chunk_size = LIST_CHUNK_SIZE
    # kopf handles each object's events in a task of its own, which keeps the object's last body
    # while it waits for more: a relist of thousands of objects would otherwise hold thousands of
    # bodies for seconds. (No limit on the number of tasks: at start-up each one waits until every
    # object is indexed, so with a limit below the number of objects none would ever proceed.)
    settings.queueing.idle_timeout = KOPF_IDLE_SECONDS


def post_event(body: Any, event_type: str, reason: str, message: str) -> None:
    """A Kubernetes Event on the TrainingJob (kopf posts it in the background)."""
    kopf.event(body, type=event_type, reason=reason, message=message[:1024])


async def startup(settings: kopf.OperatorSettings, memo: Any, **kwargs: Any) -> None:
    configure_kopf(settings)
    # One follow loop for every job (follower.py); kopf gives startup handlers its live indexes.
    memo.follower = Follower(memo.reconciler, indexes=kwargs)


async def cleanup(memo: Any, **_: Any) -> None:
    await memo.follower.stop()
    await memo.reconciler.close()


# The indexing functions are coroutines: kopf runs a plain function in a thread pool, and each
# pool thread would get its own allocator arena for the (up to 1 MB) bodies it slims.
async def datasets_by_name(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace or "", name): packed(slim_dataset(body))}


async def children_by_job(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace or "", labels[LABEL_JOB_NAME]): packed(slim_child(body))} if LABEL_JOB_NAME in labels else {}


async def gpu_nodes(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {None: packed(slim_node(body))}


async def jobs_waiting(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[Any, Any]:
    return {key: (namespace, name) for key in waiting_keys(namespace or "", spec, status)}


async def reconcile_job(body: kopf.Body, memo: Any, logger: kopf.Logger, **kwargs: Any) -> None:
    outcome = await memo.reconciler.reconcile(body, current=True, **indexes_of(kwargs))
    if outcome.waiting:
        # Waiting is normal, not a handler failure: the Dataset and Node watches below resume the
        # job, and the follow loop checks it again now and then.
        logger.info("waiting: %s", outcome.problem.message)


async def child_changed(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, type: str | None, memo: Any, **kwargs: Any
) -> None:
    job_name = labels.get(LABEL_JOB_NAME)
    if job_name and type != "DELETED":
        await memo.reconciler.child_changed(namespace or "", job_name, child_view(body), **indexes_of(kwargs))


async def pod_changed(labels: kopf.Labels, body: kopf.Body, type: str | None, memo: Any, **kwargs: Any) -> None:
    namespace = body.get("metadata", {}).get("namespace") or ""
    children = indexes_of(kwargs)["children"]
    await memo.reconciler.pod_changed(
        namespace, labels[LABEL_JOB_NAME], body, deleted=type == "DELETED", children=children
    )


async def dataset_changed(
    namespace: str | None, name: str, body: kopf.Body, type: str | None, memo: Any, **kwargs: Any
) -> None:
    if type != "DELETED":
        await memo.reconciler.dataset_changed(body)
    await _wake(memo, ("dataset", namespace or "", name), kwargs)


async def gpu_node_changed(memo: Any, **kwargs: Any) -> None:
    await _wake(memo, ("gpu",), kwargs)


async def _wake(memo: Any, waiting_on: tuple[str, ...], kwargs: dict[str, Any]) -> None:
    """Reconcile every job waiting on ``waiting_on``: those the index of the TrainingJob watch
    holds, and those this process has just written as waiting (their status may not have come
    back through the watch yet). The jobs are copied out first: each reconcile takes its job out
    while the loop runs."""
    jobs = {*kwargs[INDEX_WAITING].get(waiting_on, []), *memo.reconciler.waiting.on(waiting_on)}
    for job_namespace, job_name in sorted(jobs):
        await memo.reconciler.reconcile(
            {"metadata": {"namespace": job_namespace, "name": job_name}}, **indexes_of(kwargs)
        )


async def job_seen(body: kopf.Body, type: str | None, memo: Any, **_: Any) -> None:
    memo.follower.job_seen(body, deleted=type == "DELETED")
    # Started from a handler, the loop runs in kopf's handler context (kopf.event needs it).
    memo.follower.start()


async def force_delete(body: kopf.Body, memo: Any, **_: Any) -> None:
    await memo.reconciler.release(body)


async def delete_job(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    deleted = await memo.reconciler.finalize(body)
    if deleted:
        logger.info("deleted %s", ", ".join(deleted))


def register(config: OperatorConfig, registry: kopf.OperatorRegistry) -> kopf.OperatorRegistry:
    """Put the operator's handlers into ``registry`` for this configuration; returns the registry."""
    kopf.on.startup(registry=registry)(startup)
    kopf.on.cleanup(registry=registry)(cleanup)
    kopf.index(*DATASET_RESOURCE, registry=registry)(datasets_by_name)
    # Only the child kinds some namespace uses are watched: a cluster with Kubeflow Trainer v2
    # alone serves no PyTorchJob, and the reverse.
    backends = config.backends()
    if ChildBackend.pytorchjob in backends:
        kopf.index(*PYTORCHJOBS, labels=OURS, registry=registry)(children_by_job)
        kopf.on.event(*PYTORCHJOBS, labels=OURS, registry=registry)(child_changed)
    if ChildBackend.trainjob in backends:
        kopf.index(*TRAINJOBS, labels=OURS, id=INDEX_TRAINJOBS, registry=registry)(children_by_job)
        kopf.on.event(*TRAINJOBS, labels=OURS, id="trainjob_changed", registry=registry)(child_changed)
    kopf.index(*JOB_RESOURCE, registry=registry)(jobs_waiting)
    for reason in (kopf.on.update, kopf.on.create, kopf.on.resume):
        reason(*JOB_RESOURCE, backoff=BACKOFF_SECONDS, registry=registry)(reconcile_job)
    kopf.on.event(*PODS, labels=OUR_PODS, registry=registry)(pod_changed)
    kopf.on.event(*DATASET_RESOURCE, registry=registry)(dataset_changed)
    # Nodes are watched only when the GPU-availability check is on: without it the operator needs,
    # and the chart grants, no access to Nodes, and a watch refused with 403 would hold kopf's indexes.
    if config.check_gpu_nodes:
        kopf.index(*NODES, labels=GPU_NODES, registry=registry)(gpu_nodes)
        kopf.on.event(*NODES, labels=GPU_NODES, registry=registry)(gpu_node_changed)
    kopf.on.event(*JOB_RESOURCE, registry=registry)(job_seen)
    kopf.on.event(*JOB_RESOURCE, annotations={FORCE_DELETE_ANNOTATION: "true"}, registry=registry)(force_delete)
    kopf.on.delete(*JOB_RESOURCE, backoff=BACKOFF_SECONDS, registry=registry)(delete_job)
    return registry
