"""The Python SDK: the reference API's verbs over the Kubernetes API.

    from tensorone import TensorOneClient
    client = TensorOneClient(namespace="ml")
    job = client.training.jobs.create(name="llama-7b-finetune", model_type="llm", dataset_id="chat-data",
                                      config={"base_model": "meta-llama/Llama-2-7b-hf", "strategy": "lora"},
                                      gpu_type="a100", max_workers=2)
    while job.status in ("pending", "queued", "running"):
        job = client.training.jobs.get(job.id)
        print(job.progress.percentage, job.metrics.current_loss)

A job's id is its TrainingJob name. Every verb is a declarative change of the TrainingJob
(``spec.suspend``, ``spec.resumeFrom``, ``spec.cancel``), so what the SDK does, a GitOps commit can
do too; the operator does the rest and reports in the status.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from tensorone.api import API_VERSION, GROUP, VERSION
from tensorone.api.timestamps import parse_time
from tensorone.api.v1alpha1 import Checkpoint, Dataset, ModelType, Phase, TrainingJob, TrainingJobSpec
from tensorone.api.v1alpha1.trainingjob import (
    TERMINAL_PHASES,
    EstimatedCost,
    Metrics,
    Progress,
    ResourceAllocation,
    ResourceUsage,
)
from tensorone.errors import (
    CheckpointNotFound,
    ConfigurationError,
    DatasetNotFound,
    InvalidJobState,
    JobNotFound,
    TensorOneError,
)

STOP_REASON_ANNOTATION = f"{GROUP}/stop-reason"
# A job's status in the reference API: its phase, in lower case.
JOB_STATUSES = tuple(phase.value.lower() for phase in Phase)
SORT_KEYS = ("created_at", "updated_at", "name")


@dataclass(frozen=True)
class Job:
    """A TrainingJob as the reference API's job details: ``job.status`` is the lower-case phase,
    ``job.progress.percentage``, ``job.metrics.current_loss``, ``job.checkpoints``..."""

    id: str
    name: str
    namespace: str
    status: str
    model_type: str
    dataset_id: str
    spec: TrainingJobSpec
    progress: Progress
    metrics: Metrics
    resource_allocation: ResourceAllocation
    estimated_cost: EstimatedCost
    resource_usage: ResourceUsage
    checkpoints: list[Checkpoint]
    conditions: list[dict[str, Any]]
    message: str | None
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    estimated_completion: datetime | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Job:
        """Build the view from a TrainingJob object as the API server returns it."""
        model = TrainingJob.model_validate(
            {"apiVersion": obj.get("apiVersion", API_VERSION), "kind": "TrainingJob", **_strip(obj)}
        )
        status = model.status
        metadata = obj.get("metadata", {})
        phase = _status(Phase(status.phase) if status and status.phase else Phase.Pending)
        return cls(
            id=metadata["name"],
            name=metadata.get("annotations", {}).get(f"{GROUP}/display-name", metadata["name"]),
            namespace=metadata.get("namespace", "default"),
            status=phase,
            model_type=model.spec.model_type,
            dataset_id=model.spec.dataset_id,
            spec=model.spec,
            progress=(status.progress if status and status.progress else Progress()),
            metrics=(status.metrics if status and status.metrics else Metrics()),
            resource_allocation=(
                status.resource_allocation if status and status.resource_allocation else ResourceAllocation()
            ),
            estimated_cost=(status.estimated_cost if status and status.estimated_cost else EstimatedCost()),
            resource_usage=(status.resource_usage if status and status.resource_usage else ResourceUsage()),
            checkpoints=list(status.checkpoints or []) if status else [],
            conditions=list(obj.get("status", {}).get("conditions", [])),
            message=status.message if status else None,
            created_at=parse_time(metadata.get("creationTimestamp")),
            updated_at=_last_update(obj),
            started_at=status.started_at if status else None,
            completed_at=status.completed_at if status else None,
            estimated_completion=status.estimated_completion if status else None,
            raw=dict(obj),
        )

    @property
    def is_terminal(self) -> bool:
        return Phase(self.status.capitalize()) in TERMINAL_PHASES


@dataclass(frozen=True)
class Pagination:
    total: int
    limit: int
    offset: int
    has_more: bool


@dataclass(frozen=True)
class JobList:
    jobs: list[Job]
    pagination: Pagination


@dataclass(frozen=True)
class JobEvent:
    """A Kubernetes Event about a job: lifecycle steps, checkpoints, errors."""

    type: str
    reason: str
    message: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None


def _strip(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k in ("metadata", "spec", "status")}


def _status(phase: Phase) -> str:
    """The reference API's status of a job in that phase."""
    return phase.value.lower()


def _last_update(obj: Mapping[str, Any]) -> datetime | None:
    times = [
        parse_time(c.get("lastTransitionTime"))
        for c in obj.get("status", {}).get("conditions", [])
        if c.get("lastTransitionTime")
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else parse_time(obj.get("metadata", {}).get("creationTimestamp"))


def _parse_spec(fields: dict[str, Any]) -> TrainingJobSpec:
    """The typed spec from SDK arguments (snake_case or camelCase), refusing bad values with the
    field path of the manifest (``spec.config.training.learningRate``)."""
    from pydantic import ValidationError

    from tensorone.errors import FieldError, ValidationFailed, field_path

    try:
        return TrainingJobSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        problems = []
        for item in error.errors():
            parts = [_camel(part) if isinstance(part, str) else part for part in item["loc"]]
            problems.append(FieldError(field_path(["spec", *parts]), item["msg"]))
        raise ValidationFailed(problems) from None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _Kube:
    """The few Kubernetes calls the SDK makes, with API errors turned into the project's errors."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client as k8s

        self.api_client = api_client
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = cast(
                dict[str, Any], self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            )
        except ApiException as error:
            if error.status == 404:
                if plural == "datasets":
                    raise DatasetNotFound(f"dataset {name!r} not found in namespace {namespace!r}") from error
                raise JobNotFound(f"training job {name!r} not found in namespace {namespace!r}") from error
            raise _api_error(error) from error
        return obj

    def list(self, plural: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            result = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, label_selector=label_selector or ""
            )
        except ApiException as error:
            raise _api_error(error) from error
        items: list[dict[str, Any]] = cast(dict[str, Any], result).get("items", [])
        return items

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = cast(
                dict[str, Any], self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
            )
        except ApiException as error:
            raise _api_error(error) from error
        return obj

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = cast(
                dict[str, Any],
                self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch),
            )
        except ApiException as error:
            if error.status == 404:
                raise JobNotFound(f"{plural[:-1]} {name!r} not found in namespace {namespace!r}") from error
            raise _api_error(error) from error
        return obj

    def delete(self, plural: str, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as error:
            if error.status == 404:
                raise JobNotFound(f"{plural[:-1]} {name!r} not found in namespace {namespace!r}") from error
            raise _api_error(error) from error


def _api_error(error: Any) -> TensorOneError:
    """An API server refusal as a project error; a 422 carries the field causes."""
    import json

    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") or f"{error.status} {error.reason}"
    if error.status in (400, 422):
        return ConfigurationError(message)
    if error.status == 409:
        return TensorOneError(message)
    return TensorOneError(f"Kubernetes API error: {message}")


class Jobs:
    """``client.training.jobs``: create, get, list, stop, resume, cancel, delete, events, checkpoints."""

    def __init__(self, kube: _Kube, namespace: str) -> None:
        self._kube = kube
        self.namespace = namespace

    def create(
        self,
        *,
        name: str,
        model_type: str,
        dataset_id: str,
        config: Mapping[str, Any],
        description: str | None = None,
        tags: list[str] | None = None,
        gpu_type: str | None = None,
        max_workers: int = 1,
        priority: str = "normal",
        **spec_fields: Any,
    ) -> Job:
        """Create a TrainingJob; the body is validated by the models before it is sent (the API
        server validates it again with the CRD schema and CEL rules)."""
        from tensorone.api.admission import validate

        spec = _parse_spec(
            {
                "model_type": model_type,
                "dataset_id": dataset_id,
                "config": dict(config),
                "description": description,
                "tags": tags,
                "gpu_type": gpu_type,
                "max_workers": max_workers,
                "priority": priority,
                **spec_fields,
            }
        )
        body = {"apiVersion": API_VERSION, "kind": "TrainingJob", "metadata": {"name": name}, "spec": spec.to_wire()}
        validate(body)
        return Job.from_object(self._kube.create("trainingjobs", self.namespace, body))

    def apply(self, manifest: Mapping[str, Any]) -> Job:
        """Create a TrainingJob from a whole manifest."""
        from tensorone.api.admission import validate

        body = dict(manifest)
        validate(body)
        namespace = body.get("metadata", {}).get("namespace") or self.namespace
        return Job.from_object(self._kube.create("trainingjobs", namespace, body))

    def get(self, job_id: str) -> Job:
        return Job.from_object(self._kube.get("trainingjobs", self.namespace, job_id))

    def list(
        self,
        *,
        status: str | None = None,
        model_type: str | None = None,
        limit: int = 50,
        offset: int = 0,
        sort: Literal["created_at", "updated_at", "name"] = "created_at",
        order: Literal["asc", "desc"] = "desc",
        tag: str | None = None,
    ) -> JobList:
        """List jobs with the reference API's filters and pagination."""
        if status is not None and status not in JOB_STATUSES:
            raise ConfigurationError(f"must be one of {', '.join(JOB_STATUSES)}, got {status!r}", field="status")
        if model_type is not None and model_type not in tuple(ModelType):
            raise ConfigurationError(f"must be one of {', '.join(ModelType)}, got {model_type!r}", field="modelType")
        if not 1 <= limit <= 100:
            raise ConfigurationError(f"must be between 1 and 100, got {limit}", field="limit")
        if offset < 0:
            raise ConfigurationError(f"must be 0 or more, got {offset}", field="offset")
        if sort not in SORT_KEYS:
            raise ConfigurationError(f"must be one of {', '.join(SORT_KEYS)}, got {sort!r}", field="sort")
        if order not in ("asc", "desc"):
            raise ConfigurationError(f"must be asc or desc, got {order!r}", field="order")
        jobs = [Job.from_object(obj) for obj in self._kube.list("trainingjobs", self.namespace)]
        jobs = [
            job
            for job in jobs
            if (status is None or job.status == status)
            and (model_type is None or job.model_type == model_type)
            and (tag is None or tag in (job.spec.tags or []))
        ]
        epoch = datetime.min.replace(tzinfo=UTC)
        keys = {
            "created_at": lambda job: (job.created_at or epoch, job.id),
            "updated_at": lambda job: (job.updated_at or epoch, job.id),
            "name": lambda job: (job.name, job.id),
        }
        jobs.sort(key=keys[sort], reverse=order == "desc")
        page = jobs[offset : offset + limit]
        return JobList(page, Pagination(len(jobs), limit, offset, offset + len(page) < len(jobs)))

    def stop(self, job_id: str, *, save_checkpoint: bool = True, reason: str | None = None) -> Job:
        """Stop a job: the pods get SIGTERM, the trainer saves a checkpoint, phase Stopped."""
        if not save_checkpoint:
            raise ConfigurationError(
                "a stop always saves a checkpoint (the trainer saves on SIGTERM); to end a job without one, cancel it",
                field="saveCheckpoint",
            )
        job = self.get(job_id)
        if job.is_terminal:
            raise InvalidJobState(
                f"job {job_id!r} is {job.status}; only a pending, queued or running job can be stopped"
            )
        patch: dict[str, Any] = {"spec": {"suspend": True}}
        if reason:
            patch["metadata"] = {"annotations": {STOP_REASON_ANNOTATION: reason[:1024]}}
        return Job.from_object(self._kube.patch("trainingjobs", self.namespace, job_id, patch))

    def resume(self, job_id: str, *, checkpoint_id: str | None = None) -> Job:
        """Resume a stopped job from the named checkpoint, or from the latest one."""
        job = self.get(job_id)
        if job.is_terminal:
            raise InvalidJobState(f"job {job_id!r} is {job.status}; only a stopped job can be resumed")
        if not job.spec.suspend:
            raise InvalidJobState(f"job {job_id!r} is {job.status}, not stopped; stop it before resuming")
        if checkpoint_id is not None and checkpoint_id not in ("latest", "none"):
            known = [c.id for c in job.checkpoints]
            if checkpoint_id not in known:
                raise CheckpointNotFound(
                    f"checkpoint {checkpoint_id!r} not found for job {job_id!r}; available: "
                    + (", ".join(known) or "none"),
                    field="checkpointId",
                )
        spec: dict[str, Any] = {"suspend": False, "resumeFrom": checkpoint_id or "latest"}
        patch = {"spec": spec, "metadata": {"annotations": {STOP_REASON_ANNOTATION: None}}}
        return Job.from_object(self._kube.patch("trainingjobs", self.namespace, job_id, patch))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job for good: pods deleted, checkpoints kept."""
        job = self.get(job_id)
        if job.status in (_status(Phase.Completed), _status(Phase.Failed)):
            raise InvalidJobState(f"job {job_id!r} is already {job.status}")
        if job.status == _status(Phase.Cancelled):
            return job
        return Job.from_object(self._kube.patch("trainingjobs", self.namespace, job_id, {"spec": {"cancel": True}}))

    def delete(self, job_id: str, *, force: bool = False) -> None:
        """Delete a job and what the operator made for it. ``force`` also removes the finalizer, for
        when the operator is gone and the deletion would otherwise hang."""
        self._kube.delete("trainingjobs", self.namespace, job_id)
        if force:
            with contextlib.suppress(JobNotFound):
                self._kube.patch("trainingjobs", self.namespace, job_id, {"metadata": {"finalizers": None}})

    def list_checkpoints(self, job_id: str) -> builtins.list[Checkpoint]:
        """The job's checkpoints, most recent first."""
        epoch = datetime.min.replace(tzinfo=UTC)
        checkpoints = list(self.get(job_id).checkpoints)
        return sorted(checkpoints, key=lambda c: (c.created_at or epoch, c.step or 0), reverse=True)

    def list_events(self, job_id: str) -> builtins.list[JobEvent]:
        """Kubernetes Events about the job, oldest first."""
        self.get(job_id)
        selector = f"involvedObject.kind=TrainingJob,involvedObject.name={job_id}"
        result = self._kube.core.list_namespaced_event(self.namespace, field_selector=selector)
        events = [
            JobEvent(
                type=e.type or "Normal",
                reason=e.reason or "",
                message=e.message or "",
                count=e.count or 1,
                first_seen=e.first_timestamp or e.event_time,
                last_seen=e.last_timestamp or e.event_time or e.first_timestamp,
            )
            for e in result.items
            if e.involved_object is not None and e.involved_object.name == job_id
        ]
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(events, key=lambda e: e.last_seen or epoch)


class Datasets:
    """``client.datasets``: create, get, list, delete."""

    def __init__(self, kube: _Kube, namespace: str) -> None:
        self._kube = kube
        self.namespace = namespace

    def create(self, *, name: str, spec: Mapping[str, Any]) -> Dataset:
        from tensorone.api.admission import validate

        body = {"apiVersion": API_VERSION, "kind": "Dataset", "metadata": {"name": name}, "spec": dict(spec)}
        validate(body)
        return Dataset.model_validate(_strip(self._kube.create("datasets", self.namespace, body)))

    def get(self, name: str) -> Dataset:
        return Dataset.model_validate(_strip(self._kube.get("datasets", self.namespace, name)))

    def list(self) -> builtins.list[Dataset]:
        return [Dataset.model_validate(_strip(obj)) for obj in self._kube.list("datasets", self.namespace)]

    def delete(self, name: str) -> None:
        self._kube.delete("datasets", self.namespace, name)


class Training:
    """``client.training``: the job verbs live under ``jobs``, as in the reference SDK."""

    def __init__(self, kube: _Kube, namespace: str) -> None:
        self.jobs = Jobs(kube, namespace)


class TensorOneClient:
    """Entry point of the SDK. Talks to the Kubernetes API with the caller's kubeconfig (or the
    in-cluster account); ``api_key`` is accepted for compatibility with the hosted API's examples
    and used as a bearer token when given."""

    def __init__(
        self,
        *,
        namespace: str | None = None,
        context: str | None = None,
        kubeconfig: str | None = None,
        api_client: Any = None,
        api_key: str | None = None,
    ) -> None:
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        if api_client is None:
            configuration = k8s.Configuration()
            # Read KUBECONFIG now: the kubernetes package reads it once, at import.
            config_file = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            try:
                k8s_config.load_kube_config(
                    config_file=config_file, context=context, client_configuration=configuration
                )
                if namespace is None:
                    _, active = k8s_config.list_kube_config_contexts(config_file=config_file)
                    namespace = (active or {}).get("context", {}).get("namespace")
            except (k8s_config.ConfigException, FileNotFoundError, TypeError) as no_kubeconfig:
                try:
                    k8s_config.load_incluster_config(client_configuration=configuration)
                except k8s_config.ConfigException:
                    raise TensorOneError(
                        f"cannot reach a cluster: no usable kubeconfig ({no_kubeconfig}) and not running in a pod; "
                        "set KUBECONFIG or pass --kubeconfig"
                    ) from no_kubeconfig
            if api_key:
                configuration.api_key = {"authorization": api_key}
                configuration.api_key_prefix = {"authorization": "Bearer"}
            api_client = k8s.ApiClient(configuration)
        self.namespace = namespace or "default"
        kube = _Kube(api_client)
        self.training = Training(kube, self.namespace)
        self.datasets = Datasets(kube, self.namespace)
