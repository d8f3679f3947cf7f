"""The reconciler: reads the world, runs the pure checks and builders, writes children and status.

One ``Reconciler`` per operator process (in kopf's memo). Every entry point (a TrainingJob's
create/update/resume handler, a child's watch event, a Dataset or Node appearing, the timer)
ends in ``reconcile``, which is idempotent: children are created by deterministic names and a 409
means "already there" (an operator restarted mid-reconcile creates no duplicates), the status is
computed from scratch and written only when it differs, and the spec is never written.

Datasets, children and nodes come from kopf indexes kept by watches (no API call per reconcile),
falling back to a GET when the index has not seen an object yet (just after creating it).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tensorone.api import API_VERSION, GROUP
from tensorone.api.report import LossPoint, ProgressReport, TrainerState
from tensorone.errors import ConfigurationError
from tensorone_operator import builders, catalog, checks
from tensorone_operator.config import OperatorConfig
from tensorone_operator.kube import ApiError, KubeApi
from tensorone_operator.live_status import (
    EventLimiter,
    live_fields,
    master_pod_view,
    newer,
    report_baseline,
    report_events,
    report_from_text,
    running_time,
    usage,
)
from tensorone_operator.metrics import CHILDREN_CREATED, ERRORS, RECONCILE_SECONDS, RECONCILES, PhaseBook
from tensorone_operator.status import (
    TERMINAL,
    Problem,
    condition_is,
    dataset_status,
    set_condition,
    status_from,
    transitions,
)

logger = logging.getLogger("tensorone_operator")

FORCE_DELETE_ANNOTATION = f"{GROUP}/force-delete"
# A /progress answer takes milliseconds; a pod that does not answer in this time is skipped.
PROGRESS_TIMEOUT_SECONDS = 2.0
# A running job whose step did not move (a long step, evaluation) still gets its running time
# and cost refreshed, but at most this often, to spare the API server.
VOLATILE_WRITE_SECONDS = 30.0
FINALIZER = f"{GROUP}/finalizer"
EventPoster = Callable[[Mapping[str, Any], str, str, str], None]


class ForeignObject(Exception):
    """An object with a child's name exists but is not owned by this TrainingJob."""


def utc_now() -> str:
    """Now, as the RFC 3339 seconds timestamp Kubernetes writes."""
    return datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Outcome:
    """What one reconcile did: the status written (or kept) and whether the job waits on something."""

    status: dict[str, Any]
    problem: Problem | None = None
    created: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        return self.problem is not None and self.problem.waiting


class Reconciler:
    """Turns TrainingJobs into PyTorchJobs and keeps their status true."""

    def __init__(self, config: OperatorConfig, api: KubeApi, post_event: EventPoster) -> None:
        self.config = config
        self.api = api
        self.post_event = post_event
        self.phases = PhaseBook()
        # False when nodes are not watched (namespaced mode): the GPU check lists them instead.
        self.nodes_indexed = True
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # What each child looked like when its job was last reconciled (status and runPolicy).
        self._child_states: dict[tuple[str, str], str] = {}
        # Live status: each job's rank-0 pod (where to poll it), the newest progress report seen
        # (from /progress or a termination message) with when it was read, the report last
        # mirrored into the status (for Events), and when only volatile fields were last written.
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._reports: dict[tuple[str, str], tuple[ProgressReport, str]] = {}
        self._applied: dict[tuple[str, str], ProgressReport] = {}
        self._volatile_written: dict[tuple[str, str], float] = {}
        # The child as this operator last patched it, until the index has caught up with that write.
        self._patched_children: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.events = EventLimiter()
        self._http: aiohttp.ClientSession | None = None

    def _lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def finished(self, job: Mapping[str, Any]) -> bool:
        """Whether a job reached a terminal phase (its daemon ends: nothing more to follow)."""
        return (job.get("status") or {}).get("phase") in TERMINAL

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept about a deleted job."""
        key = (namespace, name)
        self._locks.pop(key, None)
        self._child_states.pop(key, None)
        for kept in (self._pods, self._reports, self._applied, self._volatile_written, self._patched_children):
            kept.pop(key, None)
        self.events.forget(key)
        self.phases.record(namespace, name, None)

    async def close(self) -> None:
        """Close the connections (the API's and the progress polls')."""
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.api.close()

    # Live status -------------------------------------------------------------------------------

    async def pod_changed(self, namespace: str, job_name: str, pod: Mapping[str, Any], *, deleted: bool) -> None:
        """A watch event of a job's pod: remember where its rank-0 trainer serves /progress, and
        take the report it left in its termination message (also from the last state of a pod
        being deleted, as on a stop), mirroring it into the status at once."""
        view = master_pod_view(pod)
        if view is None:
            return
        key = (namespace, job_name)
        final = view.pop("report")
        # A resumed job's new pod has the same name as the one that went, and the watch events of
        # two objects come in no set order: an old pod never displaces a running new one.
        kept = self._pods.get(key)
        if deleted:
            if kept is not None and kept.get("uid") == view["uid"]:
                self._pods.pop(key, None)
        elif kept is None or kept.get("uid") == view["uid"] or view["running"] or not kept.get("running"):
            self._pods[key] = view
        if final is not None and self._remember(key, final):
            await self.reconcile({"metadata": {"namespace": namespace, "name": job_name}})

    def _remember(self, key: tuple[str, str], report: ProgressReport) -> bool:
        """Keep ``report`` if it is newer than the one kept; whether it was."""
        kept = self._reports.get(key)
        best = newer(kept[0] if kept else None, report)
        if kept is not None and best is kept[0]:
            return False
        if kept is not None and not report.loss_history and kept[0].started_at == report.started_at:
            # A termination message carries no curves: keep the ones this process reported.
            curve = list(kept[0].loss_history)
            if report.loss is not None and math.isfinite(report.loss) and (not curve or curve[-1].step < report.step):
                curve.append(LossPoint(step=report.step, loss=report.loss))
            report = report.model_copy(update={"loss_history": curve, "eval_history": kept[0].eval_history})
        self._reports[key] = (report, utc_now())
        return True

    async def _poll_progress(self, key: tuple[str, str]) -> None:
        """GET /progress from the job's rank-0 pod (its IP and report port); quiet on failure (the
        pod may be starting or gone: the termination message covers the end)."""
        pod = self._pods.get(key)
        if not pod or not pod.get("running") or not pod.get("podIP") or not pod.get("reportPort"):
            return
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROGRESS_TIMEOUT_SECONDS))
        url = f"http://{pod['podIP']}:{pod['reportPort']}/progress"
        try:
            async with self._http.get(url) as response:
                text = await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("progress of %s/%s not read from %s: %s", *key, url, exc)
            return
        report = report_from_text(text)
        if report is not None:
            self._remember(key, report)

    def _with_live(self, job: Mapping[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """``status`` with the live fields: the newest progress report mirrored, running time,
        GPU-hours and cost brought up to now, and a trainer's failure reason on a Failed job."""
        meta, spec = job["metadata"], job.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        stored = job.get("status") or {}
        now = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)
        result = dict(status)
        kept = self._reports.get(key)
        report = kept[0] if kept else None
        was_running = stored.get("phase") == "Running"
        try:
            entry = catalog.gpu_type(spec, self.config)
        except ConfigurationError:
            return result  # an unknown GPU type: the job never runs, nothing to measure
        if was_running or result.get("phase") == "Running":
            seconds, measured = running_time(stored.get("resourceUsage"), was_running=was_running, now=now)
            gpus = catalog.gpus_per_worker(spec) * int(spec.get("maxWorkers") or 1)
            result["resourceUsage"] = usage(
                running_seconds=seconds,
                measured_at=measured,
                gpus=gpus,
                hourly_price_per_gpu=entry.hourly_price if entry else 0.0,
                report=report,
            )
        if report is None:
            return result
        running_seconds = float((result.get("resourceUsage") or {}).get("runningSeconds") or 0.0)
        fields = live_fields(report, now=now, running_seconds=running_seconds)
        fields["lastReportTime"] = kept[1] if kept else fields["lastReportTime"]
        if "estimatedCompletion" not in fields:
            fields["estimatedCompletion"] = None  # no longer running: no estimate
        for name, value in fields.items():
            if value in (None, []):
                if name not in ("lossHistory", "evalLossHistory"):  # curves stay when a report has none
                    result.pop(name, None)
            else:
                result[name] = value
        remaining = (fields.get("progress") or {}).get("remainingTime")
        if remaining is not None:
            spent = float((result.get("resourceUsage") or {}).get("cost") or 0.0)
            result["estimatedCost"] = catalog.estimated_cost(
                spec, self.config, spent=spent, remaining_seconds=float(remaining)
            )
        if result.get("phase") == "Failed" and report.state in (TrainerState.failed, TrainerState.diverged):
            reason = report.reason or ("Diverged" if report.state == TrainerState.diverged else "TrainingFailed")
            message = f"the trainer ended: {reason}: {report.message or report.state}"
            result["message"] = message[:4096]
            result["conditions"] = set_condition(
                list(result.get("conditions") or []),
                "Failed",
                "True",
                reason,
                message[:32768],
                generation=meta.get("generation"),
                now=utc_now(),
            )
        return result

    def _report_events(self, job: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
        """Events for what the newest report says happened since the last one mirrored."""
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        kept = self._reports.get(key)
        if kept is None:
            return
        report = kept[0]
        previous = self._applied.get(key) or report_baseline(stored, report)
        if previous is report:
            return
        for kind, reason, message in report_events(previous, report):
            if self.events.allow(key, reason, kind, time.monotonic()):
                self.post_event(job, kind, reason, message)
        self._applied[key] = report

    async def reconcile(
        self,
        job: Mapping[str, Any],
        *,
        datasets: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        children: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        nodes: list[Mapping[str, Any]] | None = None,
        current: bool = False,
    ) -> Outcome:
        """Bring one TrainingJob's children and status in line with its spec (idempotent).

        ``datasets``, ``children`` and ``nodes`` are the kopf indexes' views; absent entries are
        read from the API. ``current`` says ``job`` is the newest body (a kopf handler's); else
        the job is read first.
        """
        meta = job["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        started = time.perf_counter()
        async with self._lock(namespace, name):
            try:
                # A kopf handler's body is the newest the watch delivered; other callers pass
                # only the name, and the job is read.
                fresh = (
                    copy.deepcopy(dict(job))
                    if current and "spec" in job
                    else await self.api.get(API_VERSION, "trainingjobs", namespace, name)
                )
                if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                    return Outcome(status=dict(job.get("status") or {}))
                outcome = await self._reconcile(fresh, datasets or {}, children or {}, nodes)
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

    async def child_changed(
        self,
        namespace: str,
        job_name: str,
        child: Mapping[str, Any],
        *,
        datasets: Mapping[tuple[str, str], Mapping[str, Any]],
        children: Mapping[tuple[str, str], Mapping[str, Any]],
        nodes: list[Mapping[str, Any]] | None,
    ) -> Outcome | None:
        """A watch event of a child: reconcile its job when the child's status or runPolicy moved
        (the event of the child's own creation, for one, changes nothing)."""
        seen = _child_state(child)
        if self._child_states.get((namespace, job_name)) == seen:
            return None
        outcome = await self.reconcile(
            {"metadata": {"namespace": namespace, "name": job_name}}, datasets=datasets, children=children, nodes=nodes
        )
        self._child_states[(namespace, job_name)] = seen
        return outcome

    async def dataset_changed(self, dataset: Mapping[str, Any]) -> None:
        """Keep a Dataset's status (Ready, records) in line with its source."""
        meta = dataset["metadata"]
        if meta.get("deletionTimestamp"):
            return
        claim = ((dataset.get("spec") or {}).get("source") or {}).get("pvc", {}).get("claimName")
        exists = None
        if claim:
            exists = await self.api.get("v1", "persistentvolumeclaims", meta["namespace"], claim) is not None
        status = dataset_status(dataset, claim_exists=exists, now=utc_now())
        current = dict(dataset.get("status") or {})
        if status != current:
            patch = {"status": {key: status.get(key) for key in set(status) | set(current)}}
            await self.api.merge_patch(
                API_VERSION, "datasets", meta["namespace"], meta["name"], patch, subresource="status"
            )

    async def follow(
        self,
        job: Mapping[str, Any],
        *,
        datasets: Mapping[tuple[str, str], Mapping[str, Any]],
        children: Mapping[tuple[str, str], Mapping[str, Any]],
        nodes: list[Mapping[str, Any]] | None,
    ) -> Outcome | None:
        """One tick of a job's daemon (every progressPollSeconds).

        A job that follows its child reads the rank-0 trainer's /progress, then is reconciled only
        when the status computed from the child and the newest report (``_with_live``) differs from
        the stored one, and at most every VOLATILE_WRITE_SECONDS when only running time, cost and
        estimates moved. A job waiting on a Dataset or a GPU node is re-checked (the safety net
        beside the Dataset and Node watches).
        """
        meta = job["metadata"]
        status = dict(job.get("status") or {})
        if status.get("phase") in TERMINAL or meta.get("deletionTimestamp"):
            return None
        self.phases.record(meta["namespace"], meta["name"], status.get("phase"))
        child = self._newest_child(children, (meta["namespace"], meta["name"]))
        if _spec_changed(job):
            return await self.reconcile(job, datasets=datasets, children=children, nodes=nodes)
        if child is None and condition_is(status, "Stalled", "True"):
            return None  # a configuration error: only a change of the job (or a restart) helps
        if child is not None and _owned_by(child, job):
            key = (meta["namespace"], meta["name"])
            await self._poll_progress(key)
            desired = self._with_live(job, status_from(job, child, now=utc_now()))
            if desired == status:
                return None
            if _material(desired) == _material(status):
                # Only running time, cost and estimates moved: write those at most every
                # VOLATILE_WRITE_SECONDS (a running job's step changes are written every tick).
                last = self._volatile_written.get(key, 0.0)
                if time.monotonic() - last < VOLATILE_WRITE_SECONDS:
                    return None
        return await self.reconcile(job, datasets=datasets, children=children, nodes=nodes)

    async def _reconcile(
        self,
        job: dict[str, Any],
        datasets: Mapping[tuple[str, str], Mapping[str, Any]],
        children: Mapping[tuple[str, str], Mapping[str, Any]],
        nodes: list[Mapping[str, Any]] | None,
    ) -> Outcome:
        meta, spec = job["metadata"], job["spec"]
        namespace, name = meta["namespace"], meta["name"]
        phase = (job.get("status") or {}).get("phase")
        child = self._newest_child(children, (namespace, name))
        if child is None and (job.get("status") or {}).get("childName"):
            # Created before but not in the index yet (just created, or the index lags).
            child = await self.api.get(builders.PYTORCHJOB_API_VERSION, "pytorchjobs", namespace, name)
        if child is not None and not _owned_by(child, job):
            child = None  # never follow or touch an object that is not ours

        if spec.get("cancel"):
            if child is not None:
                await self.api.delete(builders.PYTORCHJOB_API_VERSION, "pytorchjobs", namespace, name)
            return await self._write_status(job, status_from(job, None, now=utc_now()))
        if phase in TERMINAL:
            return await self._write_status(job, status_from(job, child, now=utc_now()))

        extra: dict[str, Any] = {}
        problem = checks.check_gpu_type(spec, self.config)
        dataset: Mapping[str, Any] | None = None
        if problem is None:
            extra = {
                "resourceAllocation": catalog.resource_allocation(spec, self.config),
                "estimatedCost": _merge_cost(job, catalog.estimated_cost(spec, self.config)),
            }
        if child is not None:
            # Running already: follow it, and apply what may change on a running job.
            if _spec_changed(job):
                child = await self._sync_child(job, child)
            return await self._write_status(
                job, status_from(job, child, now=utc_now(), extra={**extra, "childName": name})
            )
        if problem is None:
            dataset = datasets.get((namespace, spec["datasetId"])) or await self.api.get(
                API_VERSION, "datasets", namespace, spec["datasetId"]
            )
            problem = checks.check_dataset(namespace, spec, dataset)
        if problem is None and dataset is not None:
            problem = checks.check_configuration(spec, dataset)
        if problem is None and spec.get("gpuType") and self.config.check_gpu_nodes:
            indexed = nodes if self.nodes_indexed else None
            visible = indexed if indexed is not None else await self.api.list("v1", "nodes")
            problem = checks.check_gpu_nodes(spec, self.config, visible)
        if problem is not None or dataset is None:
            outcome = await self._write_status(job, status_from(job, None, now=utc_now(), problem=problem, extra=extra))
            outcome.problem = problem
            return outcome

        try:
            created, child = await self._create_children(job, dataset)
        except ForeignObject as exc:
            problem = Problem("ConfigurationValid", "CONFIGURATION_ERROR", str(exc), waiting=False)
            outcome = await self._write_status(job, status_from(job, None, now=utc_now(), problem=problem, extra=extra))
            outcome.problem = problem
            return outcome
        outcome = await self._write_status(
            job, status_from(job, child, now=utc_now(), extra={**extra, "childName": name})
        )
        outcome.created = created
        return outcome

    async def _create_children(
        self, job: dict[str, Any], dataset: Mapping[str, Any]
    ) -> tuple[list[str], dict[str, Any]]:
        """ConfigMap, checkpoint claim, then the PyTorchJob (which needs both): each created, or
        found already there (a 409 after a restart) and checked to be ours."""
        namespace = job["metadata"]["namespace"]
        manifests: list[tuple[str, str, dict[str, Any]]] = [
            ("v1", "configmaps", builders.build_config_map(job, dataset, self.config))
        ]
        if builders.owns_checkpoint_claim(job):
            manifests.append(("v1", "persistentvolumeclaims", builders.build_checkpoint_claim(job, self.config)))
        manifests.append(
            (builders.PYTORCHJOB_API_VERSION, "pytorchjobs", builders.build_pytorchjob(job, dataset, self.config))
        )
        created: list[str] = []
        result: dict[str, Any] = {}
        for api_version, plural, manifest in manifests:
            result = await self._ensure(job, api_version, plural, namespace, manifest)
            if result.get("_created"):
                created.append(manifest["kind"])
                result.pop("_created")
        self._child_states[(namespace, job["metadata"]["name"])] = _child_state(result)
        return created, result

    async def _ensure(
        self, job: Mapping[str, Any], api_version: str, plural: str, namespace: str, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            obj = await self.api.create(api_version, plural, namespace, manifest)
        except ApiError as exc:
            if exc.status != 409:
                raise
            existing = await self.api.get(api_version, plural, namespace, manifest["metadata"]["name"])
            if existing is None:  # deleted in between: the next reconcile creates it
                raise
            if not _owned_by(existing, job):
                raise ForeignObject(
                    f"a {manifest['kind']} named {manifest['metadata']['name']!r} already exists in namespace "
                    f"{namespace!r} and is not owned by this TrainingJob; delete or rename it"
                ) from exc
            return existing
        CHILDREN_CREATED.labels(kind=manifest["kind"]).inc()
        return {**obj, "_created": True}

    async def _sync_child(self, job: Mapping[str, Any], child: Mapping[str, Any]) -> Mapping[str, Any]:
        """Apply the mutable parts of the spec to a running child: suspend, limits, priority, and the
        checkpoint to resume from (in the ConfigMap the trainer reads when its pods start)."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        config_map = await self.api.get("v1", "configmaps", namespace, builders.config_map_name(name))
        dataset = await self.api.get(API_VERSION, "datasets", namespace, job["spec"]["datasetId"])
        if config_map is not None and _owned_by(config_map, job) and dataset is not None:
            # First the checkpoint to resume from (the pods read it when they start), then the
            # child; without the Dataset the job keeps the configuration it started with.
            wanted = builders.build_config_map(job, dataset, self.config)["data"]
            if (config_map.get("data") or {}) != wanted:
                await self.api.merge_patch(
                    "v1", "configmaps", namespace, config_map["metadata"]["name"], {"data": wanted}
                )
        patch = builders.child_drift(job, child, self.config)
        if patch is None:
            return child
        patched: dict[str, Any] = await self.api.merge_patch(
            builders.PYTORCHJOB_API_VERSION, "pytorchjobs", namespace, name, patch
        )
        self._patched_children[(namespace, name)] = patched
        return patched

    def _newest_child(
        self, children: Mapping[tuple[str, str], Mapping[str, Any]], key: tuple[str, str]
    ) -> Mapping[str, Any] | None:
        """The job's child from the index, unless the index has not yet seen this operator's own
        last patch of it (an older metadata.generation): then the patched child. Read from a
        lagging index right after a resume, the child's old runPolicy.suspend would be taken
        for a queue's hold (phase Queued, a Queued Event) until the watch caught up."""
        indexed = children.get(key)
        patched = self._patched_children.get(key)
        if indexed is None or patched is None:
            return indexed
        if _generation(indexed) >= _generation(patched):
            del self._patched_children[key]  # the index has caught up
            return indexed
        return patched

    async def _write_status(self, job: Mapping[str, Any], status: dict[str, Any]) -> Outcome:
        """Patch the status subresource when it changed (with the live fields merged in); post
        Events for what changed."""
        meta = job["metadata"]
        current = dict(job.get("status") or {})
        status = self._with_live(job, status)
        self.phases.record(meta["namespace"], meta["name"], status.get("phase"))
        if status == current:
            return Outcome(status=current)
        patch = {"status": {key: status.get(key) for key in set(status) | set(current)}}
        await self.api.merge_patch(
            API_VERSION, "trainingjobs", meta["namespace"], meta["name"], patch, subresource="status"
        )
        self._volatile_written[(meta["namespace"], meta["name"])] = time.monotonic()
        self._report_events(job, current)
        for event_type, reason, message in transitions(current, status):
            self.post_event(job, event_type, reason, message)
        return Outcome(status=status)

    async def release(self, job: Mapping[str, Any]) -> bool:
        """Remove our finalizer from a job being deleted that carries the force-delete annotation,
        at once (the clean-up handler may be waiting out a retry). The garbage collector removes
        the children through their ownerReferences; a claim the operator created goes with them."""
        meta = job["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if not meta.get("deletionTimestamp") or FINALIZER not in finalizers:
            return False
        logger.warning("force-delete annotation set: releasing %s/%s without clean-up", meta["namespace"], meta["name"])
        remaining = [f for f in finalizers if f != FINALIZER]
        try:
            await self.api.merge_patch(
                API_VERSION,
                "trainingjobs",
                meta["namespace"],
                meta["name"],
                {"metadata": {"finalizers": remaining or None, "resourceVersion": meta.get("resourceVersion")}},
            )
        except ApiError as exc:
            if exc.status in {404, 409}:  # gone already, or changed: the next event retries
                return False
            raise
        self.forget(meta["namespace"], meta["name"])
        return True

    async def finalize(self, job: Mapping[str, Any]) -> list[str]:
        """Delete what the operator made for a job being deleted; returns what was deleted.

        The claim is deleted only when the operator created it (a claim the user named is theirs).
        The annotation ``training.tensorone.ai/force-delete: "true"`` skips the clean-up, so a
        deletion stuck on an API error can be released (the garbage collector still removes
        every child through its ownerReference).
        """
        meta = job["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if (meta.get("annotations") or {}).get(FORCE_DELETE_ANNOTATION) == "true":
            logger.warning("force-delete annotation set: skipping the clean-up of %s/%s", namespace, name)
            self.forget(namespace, name)
            return []
        targets = [
            (builders.PYTORCHJOB_API_VERSION, "pytorchjobs", name),
            ("v1", "configmaps", builders.config_map_name(name)),
        ]
        if builders.owns_checkpoint_claim(job):
            targets.append(("v1", "persistentvolumeclaims", builders.checkpoint_claim_name(job)))
        deleted = []
        for api_version, plural, child_name in targets:
            existing = await self.api.get(api_version, plural, namespace, child_name)
            if existing is not None and _owned_by(existing, job):
                await self.api.delete(api_version, plural, namespace, child_name)
                deleted.append(f"{plural}/{child_name}")
        self.forget(namespace, name)
        return deleted


def _child_state(child: Mapping[str, Any]) -> str:
    """The parts of a child its job's status depends on, as a comparable string."""
    spec = child.get("spec") or {}
    return json.dumps([child.get("status") or {}, spec.get("runPolicy") or {}], sort_keys=True)


_VOLATILE = ("resourceUsage", "estimatedCompletion", "estimatedCost", "lastReportTime")


def _material(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status without what moves with the clock alone (running time, cost, estimates)."""
    kept = {k: v for k, v in status.items() if k not in _VOLATILE}
    progress = dict(kept.get("progress") or {})
    progress.pop("elapsedTime", None)
    progress.pop("remainingTime", None)
    if progress:
        kept["progress"] = progress
    return kept


def _generation(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _spec_changed(job: Mapping[str, Any]) -> bool:
    """Whether the spec changed since the status was last written (generation moved on)."""
    observed = (job.get("status") or {}).get("observedGeneration")
    return observed != job["metadata"].get("generation")


def _owned_by(obj: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    uid = job["metadata"].get("uid")
    return any(owner.get("uid") == uid for owner in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _merge_cost(job: Mapping[str, Any], estimate: dict[str, Any]) -> dict[str, Any]:
    """The catalog's estimate, keeping the stored total when the estimate has none: ``_with_live``
    refines the total from the trainer's remaining time, and this only sets the first estimate."""
    current = (job.get("status") or {}).get("estimatedCost") or {}
    if "total" in current and "total" not in estimate:
        return {**estimate, "total": current["total"]}
    return estimate
