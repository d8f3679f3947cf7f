"""A TrainingJob's children: the ConfigMap, the checkpoint claim and the PyTorchJob or TrainJob
(the backend of the job's namespace, ``OperatorConfig.backend_for``). A TrainJob is kept as its
``trainjob.child_view`` from where it is read or written on.

Children are created by deterministic names, so creation is idempotent: a 409 means "already
there" (an operator restarted mid-reconcile creates no duplicates), and what is found is adopted
only when its ownerReference names the job. An object with a child's name that the job does not
own is never followed, patched nor deleted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tensorone.api import API_VERSION, DATASETS
from tensorone.api.v1alpha1 import Dataset, TrainingJob
from tensorone_operator import builders
from tensorone_operator.catalog import JobResources
from tensorone_operator.config import OperatorConfig
from tensorone_operator.kube import ApiError, KubeApi
from tensorone_operator.metrics import CHILDREN_CREATED
from tensorone_operator.observed import ObservedJob
from tensorone_operator.trainjob import child_view

JobKey = tuple[str, str]
ChildIndex = Mapping[JobKey, Mapping[str, Any]]


# The API server refuses a ConfigMap whose data is larger than this (etcd's object limit).
CONFIG_MAP_LIMIT_BYTES = 1024 * 1024


class ChildRefused(Exception):
    """A child that cannot be created as the job stands: the API server refused it for good (400,
    422), or it would be refused. Retrying does not help; a change of the job or of what it names
    does."""


class ForeignObject(ChildRefused):
    """An object with a child's name exists but is not owned by this TrainingJob."""


def _check_config_map_size(config_map: Mapping[str, Any], job: TrainingJob) -> None:
    """Refuse a ConfigMap over the API server's limit before anything is created: inline records
    of the Dataset are copied into it."""
    size = sum(len(key.encode()) + len(value.encode()) for key, value in (config_map.get("data") or {}).items())
    if size > CONFIG_MAP_LIMIT_BYTES:
        raise ChildRefused(
            f"spec.datasetId: Dataset {job.spec.dataset_id!r} makes the job's ConfigMap "
            f"{config_map['metadata']['name']!r} {size} bytes, over the Kubernetes limit of "
            f"{CONFIG_MAP_LIMIT_BYTES} bytes (1 MiB); move its inline records to a pvc, uri or "
            "huggingFace source"
        )


def owned_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    """Whether one of ``obj``'s ownerReferences is the object with that uid (the job)."""
    return any(owner.get("uid") == uid for owner in (obj.get("metadata") or {}).get("ownerReferences") or [])


def child_state(child: Mapping[str, Any]) -> bytes:
    """The parts of a child its job's status depends on (status and runPolicy), as a digest (one is
    kept for every job; two equal digests mean equal parts). A
    TrainJob's trainerStatus is left out: the trainer posts it every few seconds, and the follow
    loop reads it at its own pace (a reconcile on every post would write the status past the
    progress budget)."""
    spec = child.get("spec") or {}
    status = {k: v for k, v in (child.get("status") or {}).items() if k != "trainerStatus"}
    parts = json.dumps([status, spec.get("runPolicy") or {}], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(parts.encode(), digest_size=16).digest()


def _generation(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


class Children:
    """Creates, adopts and syncs the children of TrainingJobs, and says which child is current."""

    def __init__(self, config: OperatorConfig, api: KubeApi) -> None:
        self.config = config
        self.api = api
        # The child as this operator last patched it, until the index has caught up with that write.
        self._patched: dict[JobKey, Mapping[str, Any]] = {}
        # What each child looked like when its job was last reconciled.
        self._states: dict[JobKey, bytes] = {}

    def forget(self, key: JobKey) -> None:
        """Drop what is kept about a deleted job's child."""
        self._patched.pop(key, None)
        self._states.pop(key, None)

    def moved(self, key: JobKey, child: Mapping[str, Any]) -> bool:
        """Whether a watched child's status or runPolicy differs from when its job was last
        reconciled (the event of the child's own creation, for one, changes nothing)."""
        return self._states.get(key) != child_state(child)

    def seen(self, key: JobKey, child: Mapping[str, Any]) -> None:
        """Note the child as its job was reconciled with it."""
        self._states[key] = child_state(child)

    def newest(self, index: ChildIndex, key: JobKey) -> Mapping[str, Any] | None:
        """The job's child from the index, unless the index has not yet seen this operator's own
        last patch of it (an older metadata.generation): then the patched child. Read from a
        lagging index right after a resume, the child's old runPolicy.suspend would be taken
        for a queue's hold (phase Queued, a Queued Event) until the watch caught up."""
        indexed = index.get(key)
        patched = self._patched.get(key)
        if indexed is None or patched is None:
            return indexed
        if _generation(indexed) >= _generation(patched):
            del self._patched[key]  # the index has caught up
            return indexed
        return patched

    async def find(self, job: ObservedJob, index: ChildIndex) -> Mapping[str, Any] | None:
        """The job's own child: from the index, else read when the status says it was created
        (just created, or the index lags); None when absent or not owned by the job."""
        child = self.newest(index, job.key)
        if child is None and job.status.get("childName"):
            kind = builders.child_kind(self.config, job.namespace)
            found = await self.api.get(kind.api_version, kind.plural, job.namespace, job.name)
            child = None if found is None else child_view(found)
        if child is not None and not owned_by(child, job.uid):
            return None
        return child

    async def create(
        self, job: TrainingJob, dataset: Dataset, resources: JobResources
    ) -> tuple[list[str], dict[str, Any]]:
        """ConfigMap, checkpoint claim, then the PyTorchJob or TrainJob (which needs both): each
        created, or found already there (a 409 after a restart) and checked to be ours. Returns the
        kinds created and the child (as its ``child_view``); raises ChildRefused for a child the API server refuses (or
        would: a ConfigMap over 1 MiB) and ForeignObject for a name taken by another owner."""
        config_map = builders.build_config_map(job, dataset, self.config)
        _check_config_map_size(config_map, job)
        manifests: list[tuple[str, str, dict[str, Any]]] = [("v1", "configmaps", config_map)]
        if builders.owns_checkpoint_claim(job):
            manifests.append(("v1", "persistentvolumeclaims", builders.build_checkpoint_claim(job, self.config)))
        kind = builders.child_kind(self.config, str(job.metadata.namespace))
        manifests.append((kind.api_version, kind.plural, builders.build_child(job, dataset, self.config, resources)))
        created: list[str] = []
        result: dict[str, Any] = {}
        for api_version, plural, manifest in manifests:
            result, was_created = await self._ensure(job, api_version, plural, manifest)
            if was_created:
                created.append(manifest["kind"])
        result = child_view(result)
        self.seen((str(job.metadata.namespace), str(job.metadata.name)), result)
        return created, result

    async def _ensure(
        self, job: TrainingJob, api_version: str, plural: str, manifest: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The object created, or the one of that name found owned by the job; and whether it was created."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            obj = await self.api.create(api_version, plural, namespace, manifest)
        except ApiError as exc:
            if exc.status in (400, 422):
                raise ChildRefused(
                    f"the API server refused the {manifest['kind']} {name!r}: {exc.message or exc.reason}"
                ) from exc
            if exc.status != 409:
                raise
            existing = await self.api.get(api_version, plural, namespace, name)
            if existing is None:  # deleted in between: the next reconcile creates it
                raise
            if not owned_by(existing, job.metadata.uid):
                raise ForeignObject(
                    f"a {manifest['kind']} named {name!r} already exists in namespace "
                    f"{namespace!r} and is not owned by this TrainingJob; delete or rename it"
                ) from exc
            return existing, False
        CHILDREN_CREATED.labels(kind=manifest["kind"]).inc()
        return obj, True

    async def sync(
        self,
        job: TrainingJob,
        child: Mapping[str, Any],
        *,
        hold: bool = False,
        awaiting_admission: bool = False,
        resumed: bool = False,
    ) -> Mapping[str, Any]:
        """Apply the mutable parts of the spec to a running child: suspend (also while the operator
        ``hold``s the job), limits, priority, and the checkpoint to resume from (in the ConfigMap
        the trainer reads when its pods start). A child ``awaiting_admission`` stays suspended.
        ``resumed``: the spec resumes a job it had stopped, which starts it again (a new start id)."""
        namespace, name = str(job.metadata.namespace), str(job.metadata.name)
        config_map = await self.api.get("v1", "configmaps", namespace, builders.config_map_name(name))
        dataset = await self.api.get(API_VERSION, DATASETS, namespace, job.spec.dataset_id)
        if config_map is not None and owned_by(config_map, job.metadata.uid) and dataset is not None:
            # First the checkpoint to resume from (the pods read it when they start), then the
            # child; without the Dataset the job keeps the configuration it started with.
            start = _start(job, config_map, resumed=resumed)
            wanted = builders.build_config_map(job, Dataset.model_validate(dataset), self.config, start=start)["data"]
            if (config_map.get("data") or {}) != wanted:
                await self.api.merge_patch(
                    "v1", "configmaps", namespace, config_map["metadata"]["name"], {"data": wanted}
                )
        if child.get("kind") == "TrainJob":
            kind = builders.CHILD_KINDS[builders.ChildBackend.trainjob]
            patch = builders.trainjob_drift(job, child, hold=hold, awaiting_admission=awaiting_admission)
        else:
            kind = builders.CHILD_KINDS[builders.ChildBackend.pytorchjob]
            patch = builders.child_drift(job, child, self.config, hold=hold, awaiting_admission=awaiting_admission)
        if patch is None:
            return child
        patched = child_view(await self.api.merge_patch(kind.api_version, kind.plural, namespace, name, patch))
        self._patched[(namespace, name)] = patched
        return patched

    async def delete_child(self, job: ObservedJob) -> None:
        """Delete the job's PyTorchJob or TrainJob (its pods go with it; the claim and ConfigMap stay)."""
        kind = builders.child_kind(self.config, job.namespace)
        await self.api.delete(kind.api_version, kind.plural, job.namespace, job.name)


def _start(job: TrainingJob, config_map: Mapping[str, Any], *, resumed: bool) -> str:
    """The start the job's pods belong to (ResolvedJob.start_id): a new one when the spec starts
    the job again (a resume of a job its spec stopped, or another resumeFrom), else the one in its
    ConfigMap, so that restarted pods continue from their own start's checkpoints. A job the
    operator held for spec.maxCost, or Kueue preempted, goes on with the start it had."""
    configured, resume_from = builders.configured_start(config_map)
    if resumed or configured is None or resume_from != job.spec.resume_from:
        return builders.start_id(job)
    return configured
