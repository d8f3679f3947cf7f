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
import codecs
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from tensorone.api import API_VERSION, DATASETS, GROUP, TRAININGJOBS, VERSION, catalog, preflight
from tensorone.api.catalog import CatalogSettings
from tensorone.api.events import STORE_KEY, JobEvent, in_time_order, metric_event, metric_store_name, read_store
from tensorone.api.pods import LABEL_JOB_NAME, TRAINER_CONTAINERS, checkpoint_claim_name, pod_rank
from tensorone.api.resolved import DEFAULT_CHECKPOINT_DIR, METRICS_LOG
from tensorone.api.rest import (
    DATASET_ID_ANNOTATION,
    DISPLAY_NAME_ANNOTATION,
    create_body,
    job_from_rest,
    last_update,
)
from tensorone.api.timestamps import parse_time
from tensorone.api.v1alpha1 import Checkpoint, Dataset, ModelType, Phase, TrainingJob, TrainingJobSpec
from tensorone.api.v1alpha1.trainingjob import (
    FINAL_CHECKPOINT_ID,
    TERMINAL_PHASES,
    CheckpointType,
    EstimatedCost,
    LossSample,
    Metrics,
    ModelOutput,
    Progress,
    ResourceAllocation,
    ResourceUsage,
)
from tensorone.errors import (
    AlreadyExists,
    CheckpointNotFound,
    ConfigurationError,
    DatasetNotFound,
    FieldError,
    Forbidden,
    InvalidJobState,
    JobNotFound,
    LogNotFound,
    TensorOneError,
    Unauthenticated,
    Unreachable,
    ValidationFailed,
)

if TYPE_CHECKING:
    from tensorone.download import Downloaded
    from tensorone.rest_client import RestJobs

STOP_REASON_ANNOTATION = f"{GROUP}/stop-reason"
# A job's status in the reference API: its phase, in lower case.
JOB_STATUSES = tuple(phase.value.lower() for phase in Phase)
SORT_KEYS = ("created_at", "updated_at", "name")
# The gateway's address for TensorOneClient when no base_url is given, and the key it sends when no
# api_key is given (the gateway transport only: the Kubernetes transport has the kubeconfig).
BASE_URL_ENV = "TENSORONE_BASE_URL"
API_KEY_ENV = "TENSORONE_API_KEY"
# What a delete left behind: nothing, or an object the operator's finalizer still holds.
Deletion = Literal["deleted", "terminating"]
# How long one watch request lasts before it is made again from the version it reached: API servers
# end watches after a while too, and a request that ends now and then shows a dead connection.
WATCH_SECONDS = 240.0
# A watch whose stream fails is made again after 0.5, 1, 2, 4 s; the next failure in a row is
# CONNECTION_ERROR.
WATCH_RETRIES = 4
# An object of a watch, by namespace and name.
ObjectKey = tuple[str, str]
T = TypeVar("T")


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
    loss_history: list[LossSample]
    conditions: list[dict[str, Any]]
    message: str | None
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    estimated_completion: datetime | None
    raw: dict[str, Any] = field(repr=False)
    output: ModelOutput | None = None  # the final model, once written
    best_checkpoint: str | None = None  # the checkpoint of the best evaluation, when tracked

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
            name=_display_name(obj),
            namespace=metadata.get("namespace", "default"),
            status=phase,
            model_type=model.spec.model_type,
            dataset_id=metadata.get("annotations", {}).get(DATASET_ID_ANNOTATION, model.spec.dataset_id),
            spec=model.spec,
            progress=(status.progress if status and status.progress else Progress()),
            metrics=(status.metrics if status and status.metrics else Metrics()),
            resource_allocation=(
                status.resource_allocation if status and status.resource_allocation else ResourceAllocation()
            ),
            estimated_cost=(status.estimated_cost if status and status.estimated_cost else EstimatedCost()),
            resource_usage=(status.resource_usage if status and status.resource_usage else ResourceUsage()),
            checkpoints=list(status.checkpoints or []) if status else [],
            loss_history=list(status.loss_history or []) if status else [],
            conditions=list(obj.get("status", {}).get("conditions", [])),
            message=status.message if status else None,
            created_at=parse_time(metadata.get("creationTimestamp")),
            updated_at=_last_update(obj),
            started_at=status.started_at if status else None,
            completed_at=status.completed_at if status else None,
            estimated_completion=status.estimated_completion if status else None,
            raw=dict(obj),
            output=status.output if status else None,
            best_checkpoint=status.best_checkpoint if status else None,
        )

    @property
    def is_terminal(self) -> bool:
        return Phase(self.status.capitalize()) in TERMINAL_PHASES


def final_checkpoint(output: ModelOutput, checkpoints: Sequence[Checkpoint]) -> Checkpoint:
    """The final model as an entry of the checkpoint listing."""
    source = next((c for c in checkpoints if c.id == output.checkpoint), None)
    return Checkpoint(
        id=FINAL_CHECKPOINT_ID,
        epoch=source.epoch if source else None,
        step=source.step if source else None,
        loss=source.loss if source else None,
        created_at=output.created_at,
        size=output.size,
        reason=source.reason if source else None,
        type=CheckpointType.final,
    )


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


def _strip(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k in ("metadata", "spec", "status")}


def _status(phase: Phase) -> str:
    """The reference API's status of a job in that phase."""
    return phase.value.lower()


def _last_update(obj: Mapping[str, Any]) -> datetime | None:
    return parse_time(last_update(obj))


def _object_status(obj: Mapping[str, Any]) -> str:
    """The reference API's status of a TrainingJob object, read without parsing it."""
    return str((obj.get("status") or {}).get("phase") or Phase.Pending.value).lower()


def _created(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")


def _updated(obj: Mapping[str, Any]) -> str:
    return last_update(obj) or ""


def _object_name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _display_name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return str((metadata.get("annotations") or {}).get(DISPLAY_NAME_ANNOTATION) or metadata.get("name") or "")


# Sort keys of a list, each ending with the job's name so that pages never overlap.
_SORT_KEYS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]] = {
    "created_at": lambda obj: (_created(obj), _object_name(obj)),
    "updated_at": lambda obj: (_updated(obj), _object_name(obj)),
    "name": lambda obj: (_display_name(obj), _object_name(obj)),
}


def _check_list_arguments(
    *, status: str | None, model_type: str | None, limit: int, offset: int, sort: str, order: str
) -> None:
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


def _parse_spec(fields: dict[str, Any]) -> TrainingJobSpec:
    """The typed spec from SDK arguments (snake_case or camelCase), refusing bad values with the
    field path of the manifest (``spec.config.training.learningRate``)."""
    from pydantic import ValidationError

    from tensorone.errors import field_path

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


class KubeApi:
    """The few Kubernetes calls the SDK makes, with API errors turned into the project's errors.

    ``list_seconds`` above 0 keeps each list for that long (the gateway keeps one KubeApi per
    caller, so a caller's pages share one read of the API server); a write through this object
    forgets the lists of its namespace at once. A namespace of None means every namespace.
    """

    def __init__(self, api_client: Any, *, list_seconds: float = 0.0) -> None:
        from kubernetes import client as k8s

        self.api_client = api_client
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.list_seconds = list_seconds
        self._lists: dict[tuple[str, str | None, str], tuple[float, builtins.list[dict[str, Any]]]] = {}
        self._lists_lock = threading.Lock()

    def _call(self, call: Any, *args: Any, not_found: TensorOneError | None = None, **kwargs: Any) -> Any:
        """One API call; a refusal becomes the project's error (``not_found`` for a 404), a
        connection failure CONNECTION_ERROR naming the server."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            answer = call(*args, **kwargs)
        except ApiException as error:
            if error.status == 404 and not_found is not None:
                raise not_found from error
            raise _api_error(error) from error
        except HTTPError as error:
            raise self.unreachable(error) from None
        if isinstance(answer, str) or (isinstance(answer, dict) and not isinstance(answer.get("metadata", {}), dict)):
            # The kubernetes client hands back a body it cannot read as JSON as it came.
            raise self.not_the_api(answer)
        return answer

    def not_the_api(self, answer: Any) -> Unreachable:
        """CONNECTION_ERROR for a server that answered, but not as an API server does (a proxy's
        sign-in page, a web server on the port). What it answered is not quoted: the message may
        reach a caller of the gateway."""
        what = "a body that is not JSON" if isinstance(answer, str) else "JSON that is no Kubernetes object"
        return self.unreachable(ValueError(f"it answered {what}: is this the API server's address?"))

    def unreachable(self, error: Exception) -> Unreachable:
        """CONNECTION_ERROR naming the server and the innermost reason of ``error``."""
        host = self.api_client.configuration.host
        return Unreachable(f"cannot reach the Kubernetes API at {host}: {_reason(error)}", details={"server": host})

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        call = self.custom.get_namespaced_custom_object
        missing = _missing(plural, namespace, name)
        return cast(dict[str, Any], self._call(call, GROUP, VERSION, namespace, plural, name, not_found=missing))

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap, or None when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._call(self.core.read_namespaced_config_map, name, namespace, _preload_content=False)
        except TensorOneError as error:
            if isinstance(error.__cause__, ApiException) and error.__cause__.status == 404:
                return None
            raise
        answer = json.loads(response.data)
        return answer if isinstance(answer, dict) else None

    def find(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            return self.get(plural, namespace, name)
        except (JobNotFound, DatasetNotFound):
            return None

    def _collection(self, plural: str, namespace: str | None) -> tuple[Callable[..., Any], tuple[str, ...]]:
        """The list (and watch) call of a collection: our kinds, or core Events; one namespace or all."""
        if plural == "events":
            if namespace is None:
                return self.core.list_event_for_all_namespaces, ()
            return self.core.list_namespaced_event, (namespace,)
        if namespace is None:
            return self.custom.list_cluster_custom_object, (GROUP, VERSION, plural)
        return self.custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, plural)

    def read(
        self, plural: str, namespace: str | None, *, field_selector: str = "", label_selector: str = ""
    ) -> dict[str, Any]:
        """One list answer as the API server sends it: ``items`` and ``metadata.resourceVersion``."""
        call, args = self._collection(plural, namespace)
        response = self._call(
            call, *args, field_selector=field_selector, label_selector=label_selector, _preload_content=False
        )
        try:
            answer = json.loads(response.data)
        except ValueError:
            answer = response.data.decode(errors="replace")
        if not isinstance(answer, dict) or not isinstance(answer.get("items", []), list):
            raise self.not_the_api(answer)
        return answer

    def list(self, plural: str, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Every object of the namespace (shared with other callers of this object: do not change them)."""
        key = (plural, namespace, label_selector or "")
        if self.list_seconds > 0:
            with self._lists_lock:
                kept = self._lists.get(key)
            if kept is not None and time.monotonic() - kept[0] < self.list_seconds:
                return kept[1]
        read_at = time.monotonic()
        items: list[dict[str, Any]] = (
            self.read(plural, namespace, label_selector=label_selector or "").get("items") or []
        )
        if self.list_seconds > 0:
            with self._lists_lock:
                self._lists[key] = (read_at, items)
        return items

    def open_watch(
        self, plural: str, namespace: str | None, version: str, *, field_selector: str, seconds: float
    ) -> Any:
        """A watch of a collection from ``version``: the streaming response (one JSON event a line),
        or None when the API server no longer holds that version (410 Gone)."""
        call, args = self._collection(plural, namespace)
        try:
            return self._call(
                call,
                *args,
                field_selector=field_selector,
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=int(seconds),
                _preload_content=False,
                # The server ends the watch after `seconds`; a read waiting much longer is a dead connection.
                _request_timeout=(30, seconds + 30),
            )
        except _Expired:
            return None

    def _forget(self, plural: str, namespace: str) -> None:
        """A write changed the namespace: its kept lists of that kind, and those of every namespace, are stale."""
        with self._lists_lock:
            for key in [key for key in self._lists if key[0] == plural and key[1] in (namespace, None)]:
                del self._lists[key]

    def nodes(self) -> builtins.list[dict[str, Any]] | None:
        """Every node (as plain objects), or None when the caller may not list nodes."""
        try:
            listing = self._call(self.core.list_node)
        except Forbidden:
            return None
        serialized: list[dict[str, Any]] = self.api_client.sanitize_for_serialization(listing.items)
        return serialized

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        call = self.custom.create_namespaced_custom_object
        created = cast(dict[str, Any], self._call(call, GROUP, VERSION, namespace, plural, body))
        self._forget(plural, namespace)
        return created

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        call = self.custom.patch_namespaced_custom_object
        missing = _missing(plural, namespace, name)
        return cast(dict[str, Any], self._call(call, GROUP, VERSION, namespace, plural, name, patch, not_found=missing))

    def delete(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """Delete; the answer is the object while finalizers hold it, a Status once it is gone."""
        call = self.custom.delete_namespaced_custom_object
        missing = _missing(plural, namespace, name)
        answer = self._call(call, GROUP, VERSION, namespace, plural, name, not_found=missing)
        self._forget(plural, namespace)
        return cast(dict[str, Any], answer) if isinstance(answer, dict) else {}

    def delete_and_wait(self, plural: str, namespace: str, name: str, *, force: bool, wait: float | None) -> Deletion:
        """Delete an object; ``force`` also removes its finalizers. ``"deleted"`` when it is gone,
        ``"terminating"`` while finalizers hold it; ``wait`` seconds polls until it is gone
        (``"terminating"`` if it is not by then)."""
        answer = self.delete(plural, namespace, name)
        if force:
            with contextlib.suppress(JobNotFound, DatasetNotFound):
                self.patch(plural, namespace, name, {"metadata": {"finalizers": None}})
        held = answer.get("kind") not in (None, "Status") and (answer.get("metadata") or {}).get("finalizers")
        if not held and not force:
            return "deleted"
        deadline = time.monotonic() + (wait or 0)
        while True:
            if self.find(plural, namespace, name) is None:
                return "deleted"
            if time.monotonic() >= deadline:
                return "terminating"
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))

    def pods(self, namespace: str, label_selector: str) -> builtins.list[dict[str, Any]]:
        """The pods of the namespace that the selector matches, as plain objects."""
        listing = self._call(self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        serialized: list[dict[str, Any]] = self.api_client.sanitize_for_serialization(listing.items)
        return serialized

    def pod_log(
        self, namespace: str, pod: str, *, container: str, follow: bool, previous: bool, tail_lines: int | None
    ) -> Iterator[str]:
        """The lines of a container's log (pods/log), without their newlines; with ``follow``, as
        they are written, until the container's run ends. A log the kubelet cannot serve (a
        container not started, no previous run) or a pod gone is LOG_NOT_FOUND, in the API
        server's words."""
        from urllib3.exceptions import HTTPError

        gone = LogNotFound(f"pod {pod!r} not found in namespace {namespace!r}", details={"pod": pod})
        try:
            response = self._call(
                self.core.read_namespaced_pod_log,
                pod,
                namespace,
                container=container,
                follow=follow,
                previous=previous,
                tail_lines=tail_lines,
                _preload_content=False,
                not_found=gone,
            )
        except ConfigurationError as refused:
            # A 400: the kubelet cannot serve this log (the container has not started, or has no
            # previous run), which it says in its own words.
            raise LogNotFound(refused.message, details={"pod": pod}) from refused
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        try:
            for chunk in response.stream(2**16):
                *lines, pending = (pending + decoder.decode(chunk)).split("\n")
                yield from lines
            pending += decoder.decode(b"", final=True)
            if pending:
                yield pending
        except HTTPError as error:
            host = self.api_client.configuration.host
            raise Unreachable(f"lost the log stream from the Kubernetes API at {host}: {_reason(error)}") from None
        finally:
            response.close()
            response.release_conn()

    # The download pod's calls (tensorone.download_pod): its claim, the pods, the pod, its exec.

    def core_object(self, read: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A core object read by the CoreV1Api method ``read`` (``read_namespaced_pod``), as a plain
        object; None when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            answer = self._call(getattr(self.core, read), name, namespace)
        except TensorOneError as error:
            if isinstance(error.__cause__, ApiException) and error.__cause__.status == 404:
                return None
            raise
        serialized: dict[str, Any] = self.api_client.sanitize_for_serialization(answer)
        return serialized

    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.api_client.sanitize_for_serialization(
            self._call(self.core.create_namespaced_pod, namespace, body)
        )
        return created

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod at once (no grace period: its container only sleeps); gone already is fine."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._call(self.core.delete_namespaced_pod, name, namespace, grace_period_seconds=0)
        except TensorOneError as error:
            if not (isinstance(error.__cause__, ApiException) and error.__cause__.status == 404):
                raise

    def exec_stream(self, namespace: str, pod: str, container: str, command: builtins.list[str]) -> Any:
        """``command`` run in a container (pods/exec over WebSocket, v5.channel.k8s.io or
        v4.channel.k8s.io): the open kubernetes WSClient, stdout and stderr asked for, no stdin.
        A refusal of the API server or the kubelet is the project's error, as for any call."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        try:
            return stream(
                self.core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                container=container,
                command=command,
                stdin=False,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
                binary=True,
            )
        except ApiException as error:
            raise _handshake_error(error, self.api_client.configuration.host) from None


def _handshake_error(error: Any, host: str) -> TensorOneError:
    """A refused WebSocket upgrade (the kubernetes package reports it as status 0 with the
    handshake's text: ``Handshake status 403 Forbidden -+-+- {headers} -+-+- b'{Status}'``) as the
    project's error for its HTTP status; no status at all is a connection failure."""
    import re

    text = str(error.reason or "")
    status = re.search(r"Handshake status (\d{3})", text)
    message = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', text)
    said = message.group(1).replace('\\"', '"') if message else text
    if status is None:
        return Unreachable(f"cannot open an exec stream through the Kubernetes API at {host}: {text}")
    code = int(status.group(1))
    if code == 401:
        return Unauthenticated(f"the Kubernetes API refused the credential: {said}")
    if code == 403:
        return Forbidden(f"not allowed by the cluster's RBAC: {said}")
    return TensorOneError(f"Kubernetes API error {code}: {said}")


def _missing(plural: str, namespace: str, name: str) -> TensorOneError:
    """The error of a 404 for an object of ours."""
    if plural == DATASETS:
        return DatasetNotFound(f"dataset {name!r} not found in namespace {namespace!r}", details={"datasetId": name})
    return JobNotFound(f"training job {name!r} not found in namespace {namespace!r}", details={"jobId": name})


class _Expired(TensorOneError):
    """410 Gone: the API server no longer holds the version a watch asked for."""


class Watch(Generic[T]):
    """A collection followed by a watch of the Kubernetes API, not by polling: iterating yields
    ``view`` of its objects (by namespace and name) once they are listed, then after every change.

    A stream the API server ends is made again from the last version seen; when the server no
    longer holds that version (410 Gone: compacted while the stream was down), the collection is
    listed anew, so nothing that happened meanwhile is missed. A stream that fails is made again
    after a pause (WATCH_RETRIES times in a row, then CONNECTION_ERROR). ``close()`` ends the
    iteration from any thread, at once.
    """

    def __init__(
        self,
        kube: KubeApi,
        plural: str,
        namespace: str | None,
        view: Callable[[dict[ObjectKey, dict[str, Any]]], T],
        *,
        field_selector: str = "",
        seconds: float = WATCH_SECONDS,
    ) -> None:
        self._kube = kube
        self._plural = plural
        self._namespace = namespace
        self._view = view
        self._field_selector = field_selector
        self._seconds = seconds
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None

    def close(self) -> None:
        """End the iteration; a read waiting in another thread returns at once."""
        self._closed.set()
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # already closed or released: nothing to wake
                response.shutdown()

    def __iter__(self) -> Iterator[T]:
        from urllib3.exceptions import HTTPError

        objects: dict[ObjectKey, dict[str, Any]] = {}
        version: str | None = None
        failures = 0
        listed = False  # a first list that fails is the caller's error at once; later ones are retried
        while not self._closed.is_set():
            opened = time.monotonic()
            try:
                if version is None:
                    listing = self._kube.read(self._plural, self._namespace, field_selector=self._field_selector)
                    objects = {_object_key(obj): obj for obj in listing.get("items") or []}
                    version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
                    failures, listed = 0, True
                    yield self._view(dict(objects))
                    continue
                changed = False
                for event in self._events(version):
                    failures = 0
                    version = _apply(event, objects, version)
                    if event.get("type") != "BOOKMARK":
                        changed = True
                        yield self._view(dict(objects))
                if not changed and time.monotonic() - opened < 1:
                    raise _Dropped  # ended as soon as it began: pause before the next
                # Else ended by the server after a while: watch on from where it was.
            except _Expired:
                version = None
            except (HTTPError, Unreachable, _Dropped) as error:
                if self._closed.is_set():
                    return
                if not listed:
                    raise
                failures += 1
                if failures > WATCH_RETRIES:
                    raise (error if isinstance(error, Unreachable) else self._kube.unreachable(error)) from None
                self._closed.wait(0.5 * 2 ** (failures - 1))

    def _events(self, version: str) -> Iterator[dict[str, Any]]:
        """The events of one watch request from ``version``; none when the version is gone."""
        from kubernetes.watch.watch import iter_resp_lines

        response = self._kube.open_watch(
            self._plural, self._namespace, version, field_selector=self._field_selector, seconds=self._seconds
        )
        if response is None:
            raise _Expired("410 Gone")
        with self._lock:
            self._response = response
        try:
            if self._closed.is_set():
                return
            for line in iter_resp_lines(response):
                if line:
                    yield json.loads(line)
                if self._closed.is_set():
                    return
        finally:
            with self._lock:
                self._response = None
            response.close()
            response.release_conn()


def _apply(event: Mapping[str, Any], objects: dict[ObjectKey, dict[str, Any]], version: str) -> str:
    """Apply one watch event to the objects; the version it brings. _Expired for 410 Gone."""
    obj = event.get("object") or {}
    if event.get("type") == "ERROR":
        if obj.get("code") == 410:
            raise _Expired(str(obj.get("message") or "410 Gone"))
        raise TensorOneError(f"Kubernetes API error in a watch: {obj.get('message') or obj}")
    if event.get("type") == "DELETED":
        objects.pop(_object_key(obj), None)
    elif event.get("type") != "BOOKMARK":
        objects[_object_key(obj)] = obj
    return str((obj.get("metadata") or {}).get("resourceVersion") or version)


class _Dropped(Exception):
    """A watch stream ended at once, without an event."""


def _object_key(obj: Mapping[str, Any]) -> ObjectKey:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _reason(error: Exception) -> str:
    """The innermost reason of a urllib3 failure, without its object addresses."""
    text = str(getattr(error, "reason", None) or error)
    # "<urllib3.connection.HTTPConnection object at 0x...>: Failed to establish a new connection: ..."
    return text.split(">: ", 1)[-1]


def _api_error(error: Any) -> TensorOneError:
    """An API server refusal as a project error; a 422 carries the field causes."""
    import json

    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") or f"{error.status} {error.reason}"
    causes = (body.get("details") or {}).get("causes") or []
    if error.status in (400, 422):
        if causes:
            return ValidationFailed([FieldError(c.get("field", "<object>"), c.get("message", "")) for c in causes])
        return ConfigurationError(message)
    if error.status == 401:
        return Unauthenticated(
            f"the Kubernetes API refused the credential: {message}; check the token (api_key) or the kubeconfig"
        )
    if error.status == 403:
        return Forbidden(f"not allowed by the cluster's RBAC: {message}")
    if error.status == 409:
        return AlreadyExists(message)
    if error.status == 410:
        return _Expired(f"Kubernetes API error: {message}")
    return TensorOneError(f"Kubernetes API error: {message}")


class Jobs:
    """``client.training.jobs``: create, get, list, stop, resume, cancel, delete, events, checkpoints,
    the trainer's log (``logs``), and the watches that follow a job, its Events or the list
    (``watch``, ``watch_events``, ``watch_list``)."""

    def __init__(self, kube: KubeApi, namespace: str, settings: CatalogSettings | None = None) -> None:
        self._kube = kube
        self.namespace = namespace
        self.settings = settings or CatalogSettings()

    @property
    def kube(self) -> KubeApi:
        """The Kubernetes calls these verbs make (``t1 download`` makes its pod with them)."""
        return self._kube

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
        """Create a TrainingJob from the reference API's create parameters.

        ``name`` and ``dataset_id`` may be the reference's free text and ids (``"My Job"``,
        ``ds_1234567890abcdef``): they map to Kubernetes names as ``t1 convert`` maps them
        (:func:`tensorone.api.rest.job_from_rest`), the originals kept in annotations. The body is
        validated as the API server would, then the create-time checks run (:meth:`apply`).
        """
        body = create_body(
            name=name,
            model_type=model_type,
            dataset_id=dataset_id,
            config=config,
            description=description,
            tags=tags,
            gpu_type=gpu_type,
            max_workers=max_workers,
            priority=priority,
        )
        manifest = job_from_rest(body)
        spec = _parse_spec({**manifest["spec"], **spec_fields})
        manifest["spec"] = spec.to_wire()
        return self.apply(manifest)

    def apply(self, manifest: Mapping[str, Any]) -> Job:
        """Create a TrainingJob from a whole manifest: validated as the API server would, then
        checked as the operator checks a job before starting it (GPU type in the catalog, the
        Dataset, the configuration against it, a node with the GPU type): a job that cannot start
        is refused with CONFIGURATION_ERROR, DATASET_NOT_FOUND or INSUFFICIENT_RESOURCES."""
        from tensorone.api.admission import validate

        body = dict(manifest)
        validate(body)
        namespace = body.get("metadata", {}).get("namespace") or self.namespace
        error = self.create_error(namespace, body)
        if error is not None:
            raise error
        try:
            created = self._kube.create(TRAININGJOBS, namespace, body)
        except AlreadyExists as exists:
            name = body["metadata"]["name"]
            raise AlreadyExists(
                f"a training job named {name!r} exists already in namespace {namespace!r}",
                details={"jobId": name},
            ) from exists
        return Job.from_object(self._with_estimate(created))

    def _with_estimate(self, created: dict[str, Any]) -> dict[str, Any]:
        """The created job with the allocation and cost the operator will write, from the same
        catalog, as the reference's create answers them (the status is empty until the operator
        has seen the job)."""
        status = dict(created.get("status") or {})
        if "resourceAllocation" in status:
            return created
        spec = TrainingJobSpec.model_validate(created["spec"])
        resources = catalog.job_resources(
            spec, self.settings.gpu_catalog, cpu_pod_hourly_price=self.settings.cpu_pod_hourly_price
        )
        status["resourceAllocation"] = catalog.resource_allocation(resources, cpu_memory=self.settings.cpu_memory)
        status["estimatedCost"] = catalog.estimated_cost(
            resources, currency=self.settings.currency, max_runtime_seconds=spec.max_runtime_seconds
        )
        return {**created, "status": status}

    def create_error(self, namespace: str, manifest: Mapping[str, Any]) -> TensorOneError | None:
        """What the create-time checks find wrong with a validated manifest, or None."""
        spec = TrainingJobSpec.model_validate(manifest["spec"])
        found = self._kube.find(DATASETS, namespace, spec.dataset_id)
        dataset = None if found is None else Dataset.model_validate(_strip(found))
        check_nodes = self.settings.check_gpu_nodes and spec.gpu_type in self.settings.gpu_catalog
        annotations = (manifest.get("metadata") or {}).get("annotations") or {}
        return preflight.create_error(
            namespace,
            spec,
            dataset=dataset,
            catalog=self.settings.gpu_catalog,
            nodes=self._kube.nodes() if check_nodes else None,
            dataset_id=annotations.get(DATASET_ID_ANNOTATION),
        )

    def get(self, job_id: str) -> Job:
        return Job.from_object(self._kube.get(TRAININGJOBS, self.namespace, job_id))

    def list_objects(
        self,
        *,
        status: str | None = None,
        model_type: str | None = None,
        limit: int = 50,
        offset: int = 0,
        sort: str = "created_at",
        order: str = "desc",
        tag: str | None = None,
        all_namespaces: bool = False,
    ) -> tuple[builtins.list[dict[str, Any]], Pagination]:
        """One page of TrainingJob objects with the reference API's filters, and the pagination;
        ``all_namespaces`` lists every namespace instead of the client's.

        Filters and sorting read a few fields of each object; only the page is parsed further.
        """
        _check_list_arguments(status=status, model_type=model_type, limit=limit, offset=offset, sort=sort, order=order)
        listed = self._kube.list(TRAININGJOBS, None if all_namespaces else self.namespace)
        objects = _selected(listed, status=status, model_type=model_type, tag=tag, sort=sort, order=order)
        page = objects[offset : offset + limit]
        return page, Pagination(len(objects), limit, offset, offset + len(page) < len(objects))

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
        all_namespaces: bool = False,
    ) -> JobList:
        """List jobs with the reference API's filters and pagination (``all_namespaces``: every
        namespace's jobs, not only the client's)."""
        page, pagination = self.list_objects(
            status=status,
            model_type=model_type,
            limit=limit,
            offset=offset,
            sort=sort,
            order=order,
            tag=tag,
            all_namespaces=all_namespaces,
        )
        return JobList([Job.from_object(obj) for obj in page], pagination)

    def watch(self, job_id: str, *, seconds: float = WATCH_SECONDS) -> Watch[Job]:
        """Follow a job through a watch of the Kubernetes API: iterating yields the job as it is,
        then again after every change of it, until ``close()``; JOB_NOT_FOUND when it is not there
        (or once it is gone)."""

        def view(objects: dict[ObjectKey, dict[str, Any]]) -> Job:
            found = objects.get((self.namespace, job_id))
            if found is None:
                raise _missing(TRAININGJOBS, self.namespace, job_id)
            return Job.from_object(found)

        selector = f"metadata.name={job_id}"
        return Watch(self._kube, TRAININGJOBS, self.namespace, view, field_selector=selector, seconds=seconds)

    def watch_list(
        self,
        *,
        status: str | None = None,
        model_type: str | None = None,
        sort: Literal["created_at", "updated_at", "name"] = "created_at",
        order: Literal["asc", "desc"] = "desc",
        tag: str | None = None,
        all_namespaces: bool = False,
        seconds: float = WATCH_SECONDS,
    ) -> Watch[builtins.list[Job]]:
        """Follow the jobs that :meth:`list` would show (every one, not a page) through a watch:
        iterating yields them, filtered and sorted, now and after every change of any."""
        _check_list_arguments(status=status, model_type=model_type, limit=1, offset=0, sort=sort, order=order)
        parsed: dict[tuple[str, str], Job] = {}  # by uid and resourceVersion: only changed jobs are parsed again

        def view(objects: dict[ObjectKey, dict[str, Any]]) -> builtins.list[Job]:
            selected = _selected(
                objects.values(), status=status, model_type=model_type, tag=tag, sort=sort, order=order
            )
            jobs = []
            for obj in selected:
                metadata = obj.get("metadata") or {}
                key = (str(metadata.get("uid")), str(metadata.get("resourceVersion")))
                if key not in parsed:
                    parsed[key] = Job.from_object(obj)
                jobs.append(parsed[key])
            kept = {
                (str((o.get("metadata") or {}).get("uid")), str((o.get("metadata") or {}).get("resourceVersion")))
                for o in selected
            }
            for stale in [key for key in parsed if key not in kept]:
                del parsed[stale]
            return jobs

        namespace = None if all_namespaces else self.namespace
        return Watch(self._kube, TRAININGJOBS, namespace, view, seconds=seconds)

    def watch_events(self, job_id: str, *, seconds: float = WATCH_SECONDS) -> Watch[builtins.list[JobEvent]]:
        """Follow the Kubernetes Events about a job through a watch: iterating yields them, oldest
        first, now and after every new or repeated one."""

        def view(objects: dict[ObjectKey, dict[str, Any]]) -> builtins.list[JobEvent]:
            return _events_of(job_id, objects.values())

        selector = _events_selector(job_id)
        return Watch(self._kube, "events", self.namespace, view, field_selector=selector, seconds=seconds)

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
        return Job.from_object(self._kube.patch(TRAININGJOBS, self.namespace, job_id, patch))

    def resume(self, job_id: str, *, checkpoint_id: str | None = None) -> Job:
        """Resume a stopped job from the named checkpoint, or from the latest one."""
        job = self.get(job_id)
        if job.is_terminal:
            raise InvalidJobState(f"job {job_id!r} is {job.status}; only a stopped job can be resumed")
        if not job.spec.suspend:
            raise InvalidJobState(f"job {job_id!r} is {job.status}, not stopped; stop it before resuming")
        if checkpoint_id is not None and checkpoint_id not in ("latest", "none"):
            known = [c.id for c in job.checkpoints]
            # The reference spells checkpoint ids with '_' (ckpt_epoch_1), the trainer with '-'.
            if checkpoint_id not in known and checkpoint_id.replace("_", "-") in known:
                checkpoint_id = checkpoint_id.replace("_", "-")
            if checkpoint_id not in known:
                raise CheckpointNotFound(
                    f"checkpoint {checkpoint_id!r} not found for job {job_id!r}; available: "
                    + (", ".join(known) or "none"),
                    field="checkpointId",
                )
        spec: dict[str, Any] = {"suspend": False, "resumeFrom": checkpoint_id or "latest"}
        patch = {"spec": spec, "metadata": {"annotations": {STOP_REASON_ANNOTATION: None}}}
        return Job.from_object(self._kube.patch(TRAININGJOBS, self.namespace, job_id, patch))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job for good: pods deleted, checkpoints kept."""
        job = self.get(job_id)
        if job.status in (_status(Phase.Completed), _status(Phase.Failed)):
            raise InvalidJobState(f"job {job_id!r} is already {job.status}")
        if job.status == _status(Phase.Cancelled):
            return job
        return Job.from_object(self._kube.patch(TRAININGJOBS, self.namespace, job_id, {"spec": {"cancel": True}}))

    def delete(self, job_id: str, *, force: bool = False, wait: float | None = None) -> Deletion:
        """Delete a job and what the operator made for it. ``force`` also removes the finalizer, for
        when the operator is gone and the deletion would otherwise hang.

        Returns ``"deleted"`` when the object is gone, ``"terminating"`` while the operator's
        finalizer still cleans up; ``wait`` seconds polls until it is gone (``"terminating"`` if
        it is not by then).
        """
        return self._kube.delete_and_wait(TRAININGJOBS, self.namespace, job_id, force=force, wait=wait)

    def list_checkpoints(self, job_id: str) -> builtins.list[Checkpoint]:
        """The job's checkpoints, most recent first: the intermediate ones (type intermediate, to
        resume from), and the final model once written (id ``final``, type final: status.output, with
        the step and loss of the checkpoint it came from)."""
        epoch = datetime.min.replace(tzinfo=UTC)
        job = self.get(job_id)
        checkpoints = [c.model_copy(update={"type": CheckpointType.intermediate}) for c in job.checkpoints]
        if job.output is not None:
            checkpoints.append(final_checkpoint(job.output, job.checkpoints))
        return sorted(checkpoints, key=lambda c: (c.created_at or epoch, c.step or 0), reverse=True)

    def list_events(self, job_id: str, *, metrics: bool = True) -> builtins.list[JobEvent]:
        """The job's events, oldest first: the Kubernetes Events about it (lifecycle, checkpoints,
        warnings) merged in time order with its metric events, one per optimizer step (loss,
        learning rate, gradient norm, throughput) and one per evaluation, from the job's metric
        store (the ConfigMap ``<job>-metrics``; its bounds in docs/operator.md). ``metrics``
        False leaves the metric events out (and needs no read access to ConfigMaps)."""
        self.get(job_id)
        listing = self._kube.read("events", self.namespace, field_selector=_events_selector(job_id))
        events = _events_of(job_id, listing.get("items") or [])
        if not metrics:
            return events
        return in_time_order(events, [metric_event(record) for record in self._metric_records(job_id)])

    def _metric_records(self, job_id: str) -> builtins.list[Any]:
        """The records of the job's metric store (none before the operator has written one)."""
        store = self._kube.config_map(self.namespace, metric_store_name(job_id))
        return read_store(((store or {}).get("data") or {}).get(STORE_KEY))

    def logs(
        self,
        job_id: str,
        *,
        rank: int = 0,
        follow: bool = False,
        previous: bool = False,
        tail: int | None = None,
        notify: Callable[[str], None] | None = None,
        poll_seconds: float = 2.0,
    ) -> Iterator[str]:
        """The lines of the trainer's log in the job's pod of node rank ``rank`` (0: the master;
        worker ``i`` is rank ``i + 1``), without their newlines.

        ``tail`` keeps the last lines only; ``previous`` reads the container's run before the
        current one (the one that ended last). ``follow`` goes on as the trainer writes, across
        restarts of its container and new pods of the same name (after a failure, after a resume),
        until the job ends; ``notify`` is told in a sentence each time it waits for a pod or goes on
        to a new run. A pod that is not there is LOG_NOT_FOUND, naming where the full metrics log
        is kept.
        """
        job = self.get(job_id)
        if not 0 <= rank < job.spec.max_workers:
            raise ConfigurationError(
                f"must be between 0 and {job.spec.max_workers - 1} (job {job_id!r} has {job.spec.max_workers} "
                f"pod{'s' if job.spec.max_workers > 1 else ''}), got {rank}",
                field="rank",
            )
        if tail is not None and tail < 0:
            raise ConfigurationError(f"must be 0 or more, got {tail}", field="tail")
        if follow and previous:
            raise ConfigurationError("a previous run's log is complete: follow reads the current run", field="follow")
        if follow:
            return self._follow(job, rank, tail=tail, notify=notify or (lambda _: None), poll_seconds=poll_seconds)
        pod = self._pod_of_rank(job_id, rank)
        if pod is None:
            raise _no_pod(job, rank)
        return self._read_log(pod, follow=False, previous=previous, tail=tail)

    def _follow(
        self, job: Job, rank: int, *, tail: int | None, notify: Callable[[str], None], poll_seconds: float
    ) -> Iterator[str]:
        """Each run of the container, read to its end once, until the job has ended.

        A run is known by the pod's uid and the container's restart count, read just before its
        log is asked for: a restart in between (milliseconds) would show that run twice."""
        read: set[tuple[str, int]] = set()  # (pod uid, container run) read to the end
        last_uid, waiting_for = "", ""
        while True:
            pod = self._pod_of_rank(job.id, rank)
            run = _log_run(pod) if pod is not None else None
            if pod is not None and run is not None and (pod["metadata"]["uid"], run) not in read:
                name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
                if read:
                    notify(f"pod {name}: container restarted (restart {run})" if uid == last_uid else f"new pod {name}")
                yield from self._read_log(pod, follow=True, previous=False, tail=None if read else tail)
                read.add((uid, run))
                last_uid, waiting_for = uid, ""
                continue  # the run may have ended with a restart: look again at once
            job = self.get(job.id)
            if job.is_terminal and (pod is None or not _container_running(pod)):
                if not read and pod is None:
                    raise _no_pod(job, rank)
                return
            wait = _waiting_for(job, pod, rank)
            if wait != waiting_for:
                notify(wait)
                waiting_for = wait
            time.sleep(poll_seconds)

    def _pod_of_rank(self, job_id: str, rank: int) -> dict[str, Any] | None:
        """The job's pod of node rank ``rank`` (the newest, should an old one still be going)."""
        pods = [p for p in self._kube.pods(self.namespace, f"{LABEL_JOB_NAME}={job_id}") if _rank(p) == rank]
        pods.sort(
            key=lambda p: (not p["metadata"].get("deletionTimestamp"), p["metadata"].get("creationTimestamp") or "")
        )
        return pods[-1] if pods else None

    def _read_log(self, pod: Mapping[str, Any], *, follow: bool, previous: bool, tail: int | None) -> Iterator[str]:
        yield from self._kube.pod_log(
            self.namespace,
            pod["metadata"]["name"],
            container=_container_name(pod),
            follow=follow,
            previous=previous,
            tail_lines=tail,
        )


def _selected(
    objects: Iterable[dict[str, Any]],
    *,
    status: str | None,
    model_type: str | None,
    tag: str | None,
    sort: str,
    order: str,
) -> builtins.list[dict[str, Any]]:
    """The TrainingJob objects the reference API's filters keep, in the order asked for."""
    kept = [
        obj
        for obj in objects
        if (status is None or _object_status(obj) == status)
        and (model_type is None or (obj.get("spec") or {}).get("modelType") == model_type)
        and (tag is None or tag in ((obj.get("spec") or {}).get("tags") or []))
    ]
    kept.sort(key=_SORT_KEYS[sort], reverse=order == "desc")
    return kept


def _events_selector(job_id: str) -> str:
    return f"involvedObject.kind=TrainingJob,involvedObject.name={job_id}"


def _events_of(job_id: str, events: Iterable[Mapping[str, Any]]) -> builtins.list[JobEvent]:
    """Event objects (as the API server sends them) about the job, as JobEvents, oldest first."""
    found = [
        JobEvent(
            type=event.get("type") or "Normal",
            reason=event.get("reason") or "",
            message=event.get("message") or "",
            count=event.get("count") or 1,
            first_seen=parse_time(event.get("firstTimestamp") or event.get("eventTime")),
            last_seen=parse_time(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")),
        )
        for event in events
        if (event.get("involvedObject") or {}).get("name") == job_id
    ]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda e: e.last_seen or epoch)


def _rank(pod: Mapping[str, Any]) -> int | None:
    return pod_rank((pod.get("metadata") or {}).get("labels") or {})


def _container_name(pod: Mapping[str, Any]) -> str:
    """The training container of a pod: ``pytorch`` in a PyTorchJob's pods, ``node`` in a TrainJob's."""
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    return next((name for name in TRAINER_CONTAINERS if name in names), TRAINER_CONTAINERS[0])


def _container_status(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") in TRAINER_CONTAINERS), None)


def _container_running(pod: Mapping[str, Any]) -> bool:
    return "running" in ((_container_status(pod) or {}).get("state") or {})


def _log_run(pod: Mapping[str, Any]) -> int | None:
    """Which run of the trainer's container a log request reads now, as the kubelet chooses it
    (its restart count): the running or ended one, else the last that ended; None before the
    first has started (no log to read yet)."""
    status = _container_status(pod)
    if not (pod.get("spec") or {}).get("nodeName") or status is None:
        return None
    restarts = int(status.get("restartCount") or 0)
    state = status.get("state") or {}
    if "running" in state or "terminated" in state:
        return restarts
    if (status.get("lastState") or {}).get("terminated"):
        return restarts - 1
    return None


def _waiting_for(job: Job, pod: Mapping[str, Any] | None, rank: int) -> str:
    """What following a log waits for, in a sentence."""
    if pod is None:
        return f"waiting for job {job.id}'s pod of rank {rank} (the job is {job.status})"
    name = pod["metadata"]["name"]
    if _log_run(pod) is None:
        return f"waiting for pod {name} to start (the job is {job.status})"
    return (
        f"the container of pod {name} has stopped; waiting for it to run again or for the job to end "
        f"(the job is {job.status})"
    )


def _no_pod(job: Job, rank: int) -> LogNotFound:
    """The error for a job without a pod of that rank: not yet, or not any more (and where the
    trainer's metrics log outlives the pods)."""
    if job.status in (_status(Phase.Pending), _status(Phase.Queued)) and job.started_at is None:
        return LogNotFound(
            f"job {job.id!r} is {job.status} and has no pod of rank {rank} yet (following its log waits for one)",
            details={"jobId": job.id},
        )
    claim = checkpoint_claim_name(job.id, job.spec)
    return LogNotFound(
        f"job {job.id!r} is {job.status} and its pod of rank {rank} is gone (pods go when a job is stopped or "
        f"cancelled, or when it has ended and they are cleaned up): the trainer's full metrics log is {METRICS_LOG} "
        f"on the job's checkpoint claim {claim} ({DEFAULT_CHECKPOINT_DIR}/{METRICS_LOG} in its pods)",
        details={"jobId": job.id, "claimName": claim},
    )


class Datasets:
    """``client.datasets``: create, get, list, delete."""

    def __init__(self, kube: KubeApi, namespace: str) -> None:
        self._kube = kube
        self.namespace = namespace

    def create(self, *, name: str, spec: Mapping[str, Any]) -> Dataset:
        """Create a Dataset. Like ``kubectl apply``, creating one that exists with the same spec
        (defaults applied) succeeds and returns it; a different spec is ALREADY_EXISTS."""
        return self.apply(name=name, spec=spec)[0]

    def apply(self, *, name: str, spec: Mapping[str, Any], namespace: str | None = None) -> tuple[Dataset, bool]:
        """:meth:`create`, and whether it created the Dataset (False: it was there, unchanged);
        ``namespace`` overrides the client's (a manifest's own namespace)."""
        from tensorone.api.admission import validate

        namespace = namespace or self.namespace
        body = {"apiVersion": API_VERSION, "kind": "Dataset", "metadata": {"name": name}, "spec": dict(spec)}
        defaulted = validate(body)
        try:
            return Dataset.model_validate(_strip(self._kube.create(DATASETS, namespace, body))), True
        except AlreadyExists as exists:
            stored = self._kube.find(DATASETS, namespace, name)
            if stored is None or stored.get("spec") != defaulted["spec"]:
                raise AlreadyExists(
                    f"dataset {name!r} exists in namespace {namespace!r} with another spec; "
                    "delete it first, or change it with kubectl apply",
                    details={"datasetId": name},
                ) from exists
            return Dataset.model_validate(_strip(stored)), False

    def get(self, name: str) -> Dataset:
        return Dataset.model_validate(_strip(self._kube.get(DATASETS, self.namespace, name)))

    def list(self) -> builtins.list[Dataset]:
        return [Dataset.model_validate(_strip(obj)) for obj in self._kube.list(DATASETS, self.namespace)]

    def delete(self, name: str, *, wait: float | None = None) -> Deletion:
        """Delete a Dataset: ``"deleted"`` when it is gone, ``"terminating"`` while finalizers (of
        another controller: the operator puts none on Datasets) hold it; ``wait`` seconds polls
        until it is gone."""
        return self._kube.delete_and_wait(DATASETS, self.namespace, name, force=False, wait=wait)


class Training:
    """``client.training``: the job verbs live under ``jobs``, as in the reference SDK."""

    def __init__(self, jobs: Jobs | RestJobs) -> None:
        self.jobs = jobs


class TensorOneClient:
    """Entry point of the SDK, with two transports.

    With ``base_url`` (or ``$TENSORONE_BASE_URL``) it talks to the TensorOne gateway over HTTP,
    ``api_key`` (or ``$TENSORONE_API_KEY``) sent as the bearer token: the reference API's way. Without, it talks to the
    Kubernetes API with the caller's kubeconfig (or the in-cluster account), ``api_key`` used as
    the bearer token when given. The verbs and their answers are the same both ways.

    ``settings`` are the operator's GPU catalog and node check for the create-time checks of the
    Kubernetes transport (the built-in catalog by default; the gateway reads the operator's).
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        context: str | None = None,
        kubeconfig: str | None = None,
        api_client: Any = None,
        api_key: str | None = None,
        base_url: str | None = None,
        settings: CatalogSettings | None = None,
        timeout: float = 30.0,
    ) -> None:
        base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        if base_url and api_client is None:
            from tensorone.rest_client import RestJobs

            self.namespace = namespace
            api_key = api_key or os.environ.get(API_KEY_ENV) or None
            self.training = Training(RestJobs(base_url, api_key=api_key, namespace=namespace, timeout=timeout))
            self._datasets: Datasets | None = None
            return
        if api_client is None:
            api_client, namespace = _kube_api_client(namespace, context, kubeconfig, api_key)
        self.namespace = namespace or "default"
        kube = KubeApi(api_client)
        self.training = Training(Jobs(kube, self.namespace, settings))
        self._datasets = Datasets(kube, self.namespace)

    def download(
        self,
        job_id: str,
        directory: str | os.PathLike[str],
        *,
        checkpoint: str | None = None,
        endpoint_url: str | None = None,
        image: str | None = None,
        start_timeout: float | None = None,
    ) -> Downloaded:
        """Download the job's final model (``checkpoint`` None or ``final``) or one of its listed
        checkpoints into ``directory`` (new or empty), every file checked against its SHA-256.

        From the job's export (status.output.exportUri) when it has one, reached with this
        machine's AWS credentials at spec.output.endpointUrl or ``endpoint_url``. Otherwise from
        its checkpoint claim, through a short-lived restricted pod made with this client's
        Kubernetes credentials (create, get, delete on pods and create on pods/exec in the job's
        namespace), running ``image`` (default: the job's trainer image), which must run within
        ``start_timeout`` seconds (default 300). Through the gateway, only an export
        (tensorone.download, tensorone.download_pod)."""
        from pathlib import Path

        from tensorone.download import check_directory, download_job_files
        from tensorone.download_pod import START_SECONDS

        target = Path(directory)
        check_directory(target)
        job = self.training.jobs.get(job_id)
        jobs = self.training.jobs
        return download_job_files(
            job,
            directory=target,
            checkpoint=checkpoint,
            endpoint_url=endpoint_url,
            kube=jobs.kube if isinstance(jobs, Jobs) else None,
            image=image,
            start_seconds=START_SECONDS if start_timeout is None else start_timeout,
        )

    @property
    def datasets(self) -> Datasets:
        """``client.datasets`` (Kubernetes transport only: the gateway serves the reference's job verbs)."""
        if self._datasets is None:
            raise ConfigurationError(
                "datasets are managed through the Kubernetes API (kubectl, t1 create -f); "
                "construct the client without base_url for them"
            )
        return self._datasets


def _kube_api_client(
    namespace: str | None, context: str | None, kubeconfig: str | None, api_key: str | None
) -> tuple[Any, str | None]:
    """An API client from the kubeconfig (or the in-cluster account), and its context's namespace."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    configuration = k8s.Configuration()
    # Read KUBECONFIG now: the kubernetes package reads it once, at import.
    config_file = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        k8s_config.load_kube_config(config_file=config_file, context=context, client_configuration=configuration)
        if namespace is None:
            _, active = k8s_config.list_kube_config_contexts(config_file=config_file)
            namespace = (active or {}).get("context", {}).get("namespace")
    except (k8s_config.ConfigException, FileNotFoundError, TypeError) as no_kubeconfig:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            raise Unreachable(
                f"cannot reach a cluster: no usable kubeconfig ({no_kubeconfig}) and not running in a pod; "
                "set KUBECONFIG or pass --kubeconfig"
            ) from no_kubeconfig
    if api_key:
        configuration.api_key = {"authorization": api_key}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return k8s.ApiClient(configuration), namespace
