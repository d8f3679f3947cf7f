"""Every kopf handler of the operator, and nothing else: the work is in reconcile.py and the pure
modules it calls (checks, builders, status, catalog)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from tensorone.api import GROUP, VERSION
from tensorone_operator.builders import LABEL_JOB_NAME, LABEL_MANAGED_BY, MANAGER
from tensorone_operator.catalog import GPU_PRODUCT_LABEL
from tensorone_operator.cleanup import FORCE_DELETE_ANNOTATION
from tensorone_operator.config import load_config
from tensorone_operator.indexes import (
    INDEX_WAITING,
    indexes_of,
    retry_delay,
    slim_node,
    waiting_keys,
)
from tensorone_operator.settings import build_reconciler, configure_kopf

JOBS = (GROUP, VERSION, "trainingjobs")
DATASETS = (GROUP, VERSION, "datasets")
PYTORCHJOBS = ("kubeflow.org", "v1", "pytorchjobs")
OURS = {LABEL_MANAGED_BY: MANAGER}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    configure_kopf(settings)
    build_reconciler(memo)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    await memo.reconciler.close()


@kopf.index(*DATASETS)
def datasets_by_name(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace or "", name): dict(body)}


@kopf.index(*PYTORCHJOBS, labels=OURS)
def children_by_job(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace or "", labels[LABEL_JOB_NAME]): dict(body)} if LABEL_JOB_NAME in labels else {}


def gpu_nodes(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {None: slim_node(body)}


@kopf.index(*JOBS)
def jobs_waiting(namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[Any, Any]:
    return {key: (namespace, name) for key in waiting_keys(namespace or "", spec, status)}


# backoff: an API error is retried after 5 s, not kopf's default 60 s.
@kopf.on.resume(*JOBS, backoff=5)
@kopf.on.create(*JOBS, backoff=5)
@kopf.on.update(*JOBS, backoff=5)
async def reconcile_job(body: kopf.Body, memo: Any, retry: int, **kwargs: Any) -> None:
    outcome = await memo.reconciler.reconcile(body, current=True, **indexes_of(kwargs))
    if outcome.waiting:
        # Waiting is not terminal: kopf retries with backoff (the Dataset and Node watches below
        # usually resume the job sooner).
        raise kopf.TemporaryError(outcome.problem.message, delay=retry_delay(retry))


@kopf.on.event(*PYTORCHJOBS, labels=OURS)
async def child_changed(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, type: str | None, memo: Any, **kwargs: Any
) -> None:
    job_name = labels.get(LABEL_JOB_NAME)
    if job_name and type != "DELETED":
        await memo.reconciler.child_changed(namespace or "", job_name, body, **indexes_of(kwargs))


@kopf.on.event("v1", "pods", labels={LABEL_JOB_NAME: kopf.PRESENT, LABEL_MANAGED_BY: MANAGER})
async def pod_changed(labels: kopf.Labels, body: kopf.Body, type: str | None, memo: Any, **_: Any) -> None:
    namespace = body.get("metadata", {}).get("namespace") or ""
    await memo.reconciler.pod_changed(namespace, labels[LABEL_JOB_NAME], body, deleted=type == "DELETED")


@kopf.on.event(*DATASETS)
async def dataset_changed(
    namespace: str | None, name: str, body: kopf.Body, type: str | None, memo: Any, **kwargs: Any
) -> None:
    if type != "DELETED":
        await memo.reconciler.dataset_changed(body)
    for job_namespace, job_name in kwargs[INDEX_WAITING].get(("dataset", namespace or "", name), []):
        await memo.reconciler.reconcile(
            {"metadata": {"namespace": job_namespace, "name": job_name}}, **indexes_of(kwargs)
        )


async def gpu_node_changed(memo: Any, **kwargs: Any) -> None:
    for job_namespace, job_name in kwargs[INDEX_WAITING].get(("gpu",), []):
        await memo.reconciler.reconcile(
            {"metadata": {"namespace": job_namespace, "name": job_name}}, **indexes_of(kwargs)
        )


# Nodes are watched only when the GPU-availability check is on: without it the operator needs,
# and the chart grants, no access to Nodes, and a watch refused with 403 would hold kopf's indexes.
if load_config().check_gpu_nodes:
    kopf.index("v1", "nodes", labels={GPU_PRODUCT_LABEL: kopf.PRESENT})(gpu_nodes)
    kopf.on.event("v1", "nodes", labels={GPU_PRODUCT_LABEL: kopf.PRESENT})(gpu_node_changed)


@kopf.daemon(*JOBS, cancellation_timeout=5.0)
async def follow_job(body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **kwargs: Any) -> None:
    while not stopped and not memo.reconciler.finished(body):
        # asyncio.sleep, not stopped.wait(): kopf cancels async daemons after cancellation_timeout,
        # and awaiting the flag's wait() made kopf.run raise TimeoutError on some plain SIGTERMs.
        await asyncio.sleep(memo.reconciler.config.progress_poll_seconds)
        if not stopped:
            await memo.reconciler.follow(body, **indexes_of(kwargs))


@kopf.on.event(*JOBS, annotations={FORCE_DELETE_ANNOTATION: "true"})
async def force_delete(body: kopf.Body, memo: Any, **_: Any) -> None:
    await memo.reconciler.release(body)


@kopf.on.delete(*JOBS, backoff=5)
async def delete_job(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    deleted = await memo.reconciler.finalize(body)
    if deleted:
        logger.info("deleted %s", ", ".join(deleted))
