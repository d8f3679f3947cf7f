"""The reconciler: sequences the checks, the children, the live status and the status write of a job.

One ``Reconciler`` per operator process. Every entry point (a TrainingJob's create/update/resume
handler, a child's watch event, a Dataset or Node appearing, a pod's termination message, the
follow loop's tick) ends in ``reconcile``, which is idempotent: children are created by deterministic
names (``Children``), the status is computed from scratch and written only when it differs
(``StatusWriter``), and the spec is never written. The work of each concern is in its own class:

- ``Children`` (children.py): create, adopt and sync the ConfigMap, claim and PyTorchJob;
- ``TrainerReports`` (trainer_reports.py): poll /progress (or read a TrainJob's trainerStatus), keep
  the newest report, say what changed;
- ``MetricStore`` (metric_store.py): read the trainer's per-step records, keep them in the job's
  metric store (a ConfigMap);
- ``Events`` (events.py): post Events within per-job limits;
- ``StatusWriter`` (status_writer.py): write the status when it changed;
- ``Datasets`` (datasets.py): find Datasets and keep their status;
- ``Restarts`` (restarts.py): count the restarted pod failures against spec.maxRestarts;
- ``Queues`` (queues.py): Kueue's Workload of a job that names a queue: admission, preemption,
  position, and its deactivation while the job is stopped;
- ``Cleanup`` (cleanup.py): finalize or release a job being deleted.

Datasets, children and nodes come from kopf indexes kept by watches (no API call per reconcile),
falling back to a GET when the index has not seen an object yet (just after creating it).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tensorone.api import API_VERSION, TRAININGJOBS
from tensorone.api.timestamps import now, utc_now
from tensorone.api.v1alpha1 import TERMINAL_PHASES, ConditionType, Dataset, Phase, Reason
from tensorone_operator import builders, catalog, checks
from tensorone_operator.budget import over_budget
from tensorone_operator.builders import restart_policy
from tensorone_operator.catalog import JobResources
from tensorone_operator.children import ChildIndex, ChildRefused, Children, owned_by
from tensorone_operator.cleanup import Cleanup
from tensorone_operator.config import OperatorConfig
from tensorone_operator.datasets import DatasetIndex, Datasets
from tensorone_operator.events import EventPoster, Events
from tensorone_operator.indexes import WaitingBook
from tensorone_operator.kube import KubeApi
from tensorone_operator.kueue import QueueState
from tensorone_operator.live_status import with_live
from tensorone_operator.metric_store import MetricStore
from tensorone_operator.metrics import ERRORS, RECONCILE_SECONDS, RECONCILES, PhaseBook
from tensorone_operator.observed import ObservedJob
from tensorone_operator.queues import Queues
from tensorone_operator.restarts import Restarts, job_runs, preempted
from tensorone_operator.status import Ended, Problem, condition_is, resumed, status_from, suspend_asked
from tensorone_operator.status_writer import StatusWriter
from tensorone_operator.trainer_reports import TrainerReports
from tensorone_operator.trainjob import child_view, posted_status

Nodes = list[Mapping[str, Any]] | None


@dataclass
class Outcome:
    """What one reconcile did: the status written (or kept) and whether the job waits on something."""

    status: dict[str, Any]
    problem: Problem | None = None
    created: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        return self.problem is not None and self.problem.waiting


def _as_seen(fresh: ObservedJob, seen: ObservedJob) -> bool:
    """Whether a job just read has the generation and status of a copy seen earlier."""
    return fresh.generation == seen.generation and fresh.status == seen.status


def _ref(namespace: str, name: str) -> dict[str, Any]:
    """A job named, to be read by ``reconcile``."""
    return {"metadata": {"namespace": namespace, "name": name}}


@dataclass
class _JobLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # reconciles that hold it or wait for it


class JobLocks:
    """One lock per job, kept only while a reconcile holds it or waits for it: a lock for each of
    thousands of idle jobs would be memory kept for nothing."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], _JobLock] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def held(self, key: tuple[str, str]) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block."""
        job = self._locks.setdefault(key, _JobLock())
        job.users += 1
        try:
            async with job.lock:
                yield
        finally:
            job.users -= 1
            if not job.users:
                del self._locks[key]


class Reconciler:
    """Turns TrainingJobs into PyTorchJobs and keeps their status true."""

    def __init__(
        self, config: OperatorConfig, api: KubeApi, post_event: EventPoster, *, nodes_indexed: bool = True
    ) -> None:
        self.config = config
        self.api = api
        # False when nodes are not watched (namespaced mode): the GPU check lists them instead.
        self.nodes_indexed = nodes_indexed
        self.phases = PhaseBook()
        self.children = Children(config, api)
        self.reports = TrainerReports()
        self.metric_store = MetricStore(api)
        self.events = Events(post_event)
        self.status = StatusWriter(
            api,
            self.reports,
            self.events,
            self.phases,
            progress_writes_per_second=config.progress_writes_per_second,
            currency=config.currency,
        )
        self.datasets = Datasets(api)
        self.restarts = Restarts()
        self.queues = Queues(api)
        self.cleanup = Cleanup(api, config)
        self.waiting = WaitingBook()
        self._locks = JobLocks()

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept about a deleted job."""
        key = (namespace, name)
        self.children.forget(key)
        self.reports.forget(key)
        self.metric_store.forget(key)
        self.status.forget(key)
        self.events.forget(key)
        self.restarts.forget(key)
        self.waiting.forget(key)
        self.phases.record(namespace, name, None)

    async def close(self) -> None:
        """Close the connections (the API's and the progress polls')."""
        await self.reports.close()
        await self.metric_store.close()
        await self.api.close()

    # Entry points ------------------------------------------------------------------------------

    async def reconcile(
        self,
        job: Mapping[str, Any],
        *,
        datasets: DatasetIndex | None = None,
        children: ChildIndex | None = None,
        nodes: Nodes = None,
        current: bool = False,
    ) -> Outcome:
        """Bring one TrainingJob's children and status in line with its spec (idempotent).

        ``datasets``, ``children`` and ``nodes`` are the kopf indexes' views; absent entries are
        read from the API. ``current`` says ``job`` is the newest body (a kopf handler's); else
        the job is read first.
        """
        body = copy.deepcopy(dict(job)) if current and "spec" in job else None

        async def step(fresh: ObservedJob) -> Outcome:
            return await self._reconcile(fresh, datasets or {}, children or {}, nodes)

        return await self._locked(job, body, step)

    async def child_changed(
        self,
        namespace: str,
        job_name: str,
        child: Mapping[str, Any],
        *,
        datasets: DatasetIndex,
        children: ChildIndex,
        nodes: Nodes,
    ) -> Outcome | None:
        """A watch event of a child: reconcile its job when the child's status or runPolicy moved."""
        key = (namespace, job_name)
        if not self.children.moved(key, child):
            return None
        outcome = await self.reconcile(_ref(namespace, job_name), datasets=datasets, children=children, nodes=nodes)
        self.children.seen(key, child)
        return outcome

    async def pod_changed(
        self,
        namespace: str,
        job_name: str,
        pod: Mapping[str, Any],
        *,
        deleted: bool,
        children: ChildIndex | None = None,
    ) -> None:
        """A watch event of a job's pod: a new report in its termination message is mirrored at
        once, and so is a pod failure the Training Operator restarts (counted against maxRestarts)
        or a preemption. Whether the job let its pods run when the pod went is its child's word
        (``children``, the index; read from the API when the index has not seen it)."""
        key = (namespace, job_name)
        running = False
        if preempted(pod):
            child = self.children.newest(children or {}, key)
            if child is None:
                kind = builders.child_kind(self.config, namespace)
                found = await self.api.get(kind.api_version, kind.plural, namespace, job_name)
                child = None if found is None else child_view(found)
            running = job_runs(child)
        restarted = self.restarts.pod_changed(key, pod, running=running, deleted=deleted)
        news = self.reports.pod_changed(key, pod, deleted=deleted)
        if restarted or news:
            await self.reconcile(_ref(namespace, job_name))

    async def dataset_changed(self, dataset: Mapping[str, Any]) -> None:
        """Keep a Dataset's status (Ready, records) in line with its source."""
        await self.datasets.changed(dataset)

    async def follow(
        self,
        job: Mapping[str, Any],
        *,
        datasets: DatasetIndex,
        children: ChildIndex,
        nodes: Nodes,
    ) -> Outcome | None:
        """One tick of the follow loop for a job (every progressPollSeconds); ``job`` is the copy the
        loop keeps from the watch.

        A job that follows its child reads the rank-0 trainer's /progress, computes its status once
        (child, catalog and the newest report) and writes it only when ``StatusWriter.due`` says
        so. A job waiting on a Dataset or a GPU node is re-checked (the safety net beside the
        Dataset and Node watches).
        """
        if (job.get("status") or {}).get("phase") in TERMINAL_PHASES or job["metadata"].get("deletionTimestamp"):
            return None
        seen = ObservedJob.parse(job)
        self.phases.record(*seen.key, seen.phase)
        indexes: dict[str, Any] = {"datasets": datasets, "children": children, "nodes": nodes}
        if seen.spec_changed():
            return await self.reconcile(job, **indexes)
        child = self.children.newest(children, seen.key)
        # A job without its child is checked again on every tick: what holds it (a Dataset, a
        # node, a foreign object in the way) may have changed without an event the operator sees.
        if child is None or not owned_by(child, seen.uid) or self._past_restart_limit(seen) is not None:
            return await self.reconcile(job, **indexes)
        pod = None
        posted = posted_status(child, self.config.train_job_progress)
        if posted is not None:
            self.reports.trainer_status(seen.key, posted)
        else:
            await self.reports.poll(seen.key)
            pod = self.reports.pod(seen.key)
        kept = self.reports.latest(seen.key)
        await self.metric_store.read(seen.key, pod, kept.report if kept else None)
        await self.metric_store.write(seen)
        resources, _ = checks.check_gpu_type(seen.spec, self.config)
        # Kueue's word is read only while it may hold the child: not while it runs (admitted), and
        # not while the job is stopped or held (its phase is Stopping or Stopped whatever Kueue says;
        # the Workload was deactivated by the reconcile that stopped it).
        stopped = seen.spec.suspend or over_budget(seen.spec, seen.status)
        queue = await self._queue(seen, child) if suspend_asked(child) and not stopped else None
        desired = self._live(seen, self._followed(seen, child, resources, queue), resources)
        # A job that has just spent its spec.maxCost is held at once (and again on every tick
        # until its child is suspended: a failed patch is retried).
        hold = over_budget(seen.spec, desired) and not suspend_asked(child)
        if not hold and not self.status.due(seen, desired):
            return None

        async def step(fresh: ObservedJob) -> Outcome:
            if _as_seen(fresh, seen):
                outcome = Outcome(status=await self.status.write(fresh, desired))
                if hold:
                    await self.children.sync(fresh.resource, child, hold=True)
                return outcome
            return await self._reconcile(fresh, datasets, children, nodes)  # the loop's copy lagged

        return await self._locked(job, None, step)

    async def release(self, job: Mapping[str, Any]) -> bool:
        """Release a job being deleted that carries the force-delete annotation, at once."""
        released = await self.cleanup.release(job)
        if released:
            self.forget(job["metadata"]["namespace"], job["metadata"]["name"])
        return released

    async def finalize(self, job: Mapping[str, Any]) -> list[str]:
        """Delete what the operator made for a job being deleted; returns what was deleted."""
        observed = ObservedJob.parse(job)
        deleted = await self.cleanup.finalize(observed.resource)
        self.forget(*observed.key)
        return deleted

    # Sequencing --------------------------------------------------------------------------------

    async def _locked(
        self,
        job: Mapping[str, Any],
        body: dict[str, Any] | None,
        step: Callable[[ObservedJob], Awaitable[Outcome]],
    ) -> Outcome:
        """Run ``step`` on the newest job (``body``, else read) under the job's lock, measured."""
        meta = job["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        started = time.perf_counter()
        async with self._locks.held((namespace, name)):
            try:
                fresh = body if body is not None else await self.api.get(API_VERSION, TRAININGJOBS, namespace, name)
                if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                    return Outcome(status=dict(job.get("status") or {}))
                outcome = await step(ObservedJob.parse(fresh))
            except Exception as exc:
                RECONCILES.labels(result="error").inc()
                ERRORS.labels(reason=type(exc).__name__).inc()
                raise
            finally:
                RECONCILE_SECONDS.observe(time.perf_counter() - started)
        RECONCILES.labels(result="waiting" if outcome.waiting else "ok").inc()
        if outcome.problem is not None:
            ERRORS.labels(reason=outcome.problem.code).inc()
        return outcome

    async def _reconcile(self, job: ObservedJob, datasets: DatasetIndex, children: ChildIndex, nodes: Nodes) -> Outcome:
        child = await self.children.find(job, children)
        if job.spec.cancel:
            if child is not None:
                await self.children.delete_child(job)
            return await self._write(job, status_from(job, None, now=utc_now()), None)
        resources, problem = checks.check_gpu_type(job.spec, self.config)
        if job.phase in TERMINAL_PHASES:
            return await self._write(job, status_from(job, child, now=utc_now()), resources)
        if child is not None:
            # Running already: follow it, and apply what may change on a running job (the
            # operator's own hold included: a job over its spec.maxCost stays suspended).
            hold = over_budget(job.spec, job.status)
            # First the Workload (deactivated by a stop, before the child is suspended), read only
            # when Kueue may hold the child or the job is being stopped: not on every event of a
            # running job.
            queue = await self._queue(job, child) if suspend_asked(child) or job.spec.suspend or hold else None
            if job.spec_changed() or (hold and not suspend_asked(child)):
                # Kueue alone unsuspends a child it manages; a child another queue holds (Queued)
                # stays suspended whatever the edit.
                queued = builders.queue_managed(job.resource) or (job.phase == Phase.Queued and suspend_asked(child))
                child = await self.children.sync(
                    job.resource, child, hold=hold, awaiting_admission=queued, resumed=resumed(job, hold=hold)
                )
            ended = self._past_restart_limit(job)
            if ended is not None:
                # No pod may run on: the child goes (the checkpoint claim stays), the job is Failed.
                await self.children.delete_child(job)
                extra = {**self._allocation(job, resources), "childName": job.name, **self._restarts(job)}
                return await self._write(
                    job, status_from(job, None, now=utc_now(), ended=ended, extra=extra), resources
                )
            return await self._write(job, self._followed(job, child, resources, queue), resources)
        if resources is None:
            return await self._held(job, problem, resources)
        return await self._start(job, resources, datasets, nodes)

    async def _start(self, job: ObservedJob, resources: JobResources, datasets: DatasetIndex, nodes: Nodes) -> Outcome:
        """Check a job without a child, then create its children."""
        untrainable = checks.check_trainable(job.spec)
        if untrainable is not None:
            return await self._held(job, untrainable, resources)
        found = await self.datasets.find(datasets, job.namespace, job.spec.dataset_id)
        if found is not None and not condition_is(found.get("status") or {}, ConditionType.Ready, "True"):
            found = await self.datasets.changed(found)  # its source may have become usable since
        dataset = None if found is None else Dataset.model_validate(found)
        problem = checks.check_dataset(job.namespace, job.spec, dataset)
        if problem is None and dataset is not None:
            problem = checks.check_configuration(job.spec, dataset)
        if problem is None and resources.entry is not None and self.config.check_gpu_nodes:
            indexed = nodes if self.nodes_indexed else None
            visible = indexed if indexed is not None else await self.api.list("v1", "nodes")
            problem = checks.check_gpu_nodes(resources, self.config, visible)
        if problem is not None or dataset is None:
            return await self._held(job, problem, resources)
        try:
            created, child = await self.children.create(job.resource, dataset, resources)
        except ChildRefused as exc:
            problem = Problem(ConditionType.ConfigurationValid, Reason.CONFIGURATION_ERROR, str(exc), waiting=False)
            return await self._held(job, problem, resources)
        outcome = await self._write(job, self._followed(job, child, resources, None), resources)
        outcome.created = created
        return outcome

    async def _held(self, job: ObservedJob, problem: Problem | None, resources: JobResources | None) -> Outcome:
        """Write the status of a job held by a failed check."""
        status = status_from(job, None, now=utc_now(), problem=problem, extra=self._allocation(job, resources))
        outcome = await self._write(job, status, resources)
        outcome.problem = problem
        return outcome

    async def _write(self, job: ObservedJob, status: dict[str, Any], resources: JobResources | None) -> Outcome:
        """Write ``status`` with the live fields merged in (when it changed); when the job has
        ended, its metric records not yet written go to its store."""
        written = await self.status.write(job, self._live(job, status, resources))
        self.waiting.record(job.key, job.body.get("spec") or {}, written)
        if written.get("phase") in TERMINAL_PHASES:
            await self.metric_store.write(job, final=True)
        return Outcome(status=written)

    # Computing the status ----------------------------------------------------------------------

    def _allocation(self, job: ObservedJob, resources: JobResources | None) -> dict[str, Any]:
        """resourceAllocation and the first estimatedCost from the catalog ({} for an unknown GPU type)."""
        if resources is None:
            return {}
        estimate = catalog.estimated_cost(resources, self.config, max_runtime_seconds=job.spec.max_runtime_seconds)
        # The trainer's remaining time refines the total (live status): keep a stored total
        # when the catalog alone has none.
        stored = job.status.get("estimatedCost") or {}
        if "total" in stored and "total" not in estimate:
            estimate = {**estimate, "total": stored["total"]}
        return {"resourceAllocation": catalog.resource_allocation(resources, self.config), "estimatedCost": estimate}

    def _restarts(self, job: ObservedJob) -> dict[str, Any]:
        """status.restarts of a job whose restarts the operator counts ({} while there are none)."""
        if restart_policy(job.spec) != "ExitCode":
            return {}
        count = self.restarts.count(job.key, job.status)
        return {"restarts": count} if count else {}

    def _past_restart_limit(self, job: ObservedJob) -> Ended | None:
        """Why the job ends, when its pods failed more often than spec.maxRestarts allows."""
        count = self._restarts(job).get("restarts", 0)
        if count <= job.spec.max_restarts:
            return None
        message = (
            f"the pods failed {count} times with an exit code that is retried, more than spec.maxRestarts "
            f"({job.spec.max_restarts}); the {builders.child_kind(self.config, job.namespace).kind} is deleted, "
            "the checkpoints are kept"
        )
        code, kept = self.reports.exit_code(job.key), self.reports.latest(job.key)
        if code is not None:
            message += f"; the last failure: exit code {code}"
            if kept is not None and kept.report.reason:
                message += f", {kept.report.reason}: {kept.report.message or ''}"
        return Ended(Reason.RestartLimitExceeded, message[:4096])

    async def _queue(self, job: ObservedJob, child: Mapping[str, Any]) -> QueueState | None:
        """Kueue's word on a job that names a queue (None for the others); its Workload is
        deactivated while the job is stopped (spec.suspend, or the operator's budget hold)."""
        if not builders.queue_managed(job.resource):
            return None
        stopped = job.spec.suspend or over_budget(job.spec, job.status)
        return await self.queues.state(job.resource, child, stopped=stopped)

    def _followed(
        self, job: ObservedJob, child: Mapping[str, Any], resources: JobResources | None, queue: QueueState | None
    ) -> dict[str, Any]:
        """The status of a job that has its child (before the live fields); ``queue``: Kueue's word
        on it, when it names a queue."""
        extra = {**self._allocation(job, resources), "childName": job.name, **self._restarts(job)}
        return status_from(
            job, child, now=utc_now(), extra=extra, over_budget=over_budget(job.spec, job.status), queue=queue
        )

    def _live(self, job: ObservedJob, status: dict[str, Any], resources: JobResources | None) -> dict[str, Any]:
        """``status`` with the newest trainer report and the running time and cost up to now."""
        kept, refusal = self.reports.latest(job.key), self.reports.refusal(job.key)
        exit_code, failure = self.reports.exit_code(job.key), self.reports.failure(job.key)
        return with_live(
            job,
            status,
            kept,
            resources,
            self.config,
            now=now(),
            refusal=refusal,
            exit_code=exit_code,
            failure=failure,
            preemptions=self.restarts.preemptions(job.key, job.status),
        )
