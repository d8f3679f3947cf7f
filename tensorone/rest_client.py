"""The SDK's HTTP transport: the reference API's verbs against the TensorOne gateway.

``TensorOneClient(api_key=..., base_url=...)`` uses it: every verb is one request to the
gateway's ``/v2/training/jobs`` endpoints, the answers are read back into the same ``Job``,
``JobList``, ``JobEvent`` and ``Checkpoint`` objects as the Kubernetes transport returns, and an
error body ``{"error", "message", "details"}`` raises the exception of its code.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, Literal, NoReturn
from urllib.parse import quote

import httpx

from tensorone.api.events import JobEvent
from tensorone.api.rest import (
    DATASET_ID_ANNOTATION,
    DISPLAY_NAME_ANNOTATION,
    REST_SPEC_FIELDS,
    create_body,
    job_from_details,
    rest_from_job,
)
from tensorone.api.v1alpha1 import Checkpoint
from tensorone.client import Deletion, Job, JobList, Pagination
from tensorone.errors import ConfigurationError, TensorOneError, Unreachable, error_from_body

JOBS_PATH = "/v2/training/jobs"
# The namespace a request acts in, when not the gateway's default.
NAMESPACE_HEADER = "TensorOne-Namespace"


class RestJobs:
    """``client.training.jobs`` over HTTP: the same verbs and answers as :class:`tensorone.client.Jobs`."""

    def __init__(self, base_url: str, *, api_key: str | None, namespace: str | None, timeout: float) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if namespace:
            headers[NAMESPACE_HEADER] = namespace
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise Unreachable(
                f"cannot reach the gateway at {self.base_url}: {error}", details={"server": self.base_url}
            ) from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.is_error:
            if isinstance(body, dict) and "error" in body:
                raise error_from_body(body)
            raise TensorOneError(f"the gateway answered {response.status_code} {response.reason_phrase}")
        return body

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
        """``POST /v2/training/jobs`` with the reference's create body."""
        if spec_fields:
            raise ConfigurationError(
                f"the REST API's create takes no {', '.join(sorted(spec_fields))}; "
                "set them with the Kubernetes transport (no base_url)"
            )
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
        return _job(self._request("POST", JOBS_PATH, json=body))

    def apply(self, manifest: Mapping[str, Any]) -> Job:
        """Create a TrainingJob from a whole manifest, as its REST create body. What the body cannot
        carry (a spec field without a REST parameter, labels, other annotations) is refused by
        name rather than dropped; the manifest's namespace is the request's."""
        from tensorone.api.admission import validate

        validate(dict(manifest))
        metadata = manifest.get("metadata") or {}
        carried = {DISPLAY_NAME_ANNOTATION, DATASET_ID_ANNOTATION}
        lost = [f"spec.{key}" for key in manifest.get("spec") or {} if key not in REST_SPEC_FIELDS]
        lost += [f"metadata.{key}" for key in metadata if key not in ("name", "namespace", "annotations")]
        lost += [f"metadata.annotations[{key!r}]" for key in metadata.get("annotations") or {} if key not in carried]
        if lost:
            raise ConfigurationError(
                f"the REST API's create takes no {', '.join(lost)}; create this manifest with the Kubernetes "
                "transport (no base_url, or unset $TENSORONE_BASE_URL for t1), or leave them out",
                field=lost[0],
            )
        namespace = metadata.get("namespace")
        headers = {NAMESPACE_HEADER: namespace} if namespace else {}
        return _job(self._request("POST", JOBS_PATH, json=rest_from_job(manifest), headers=headers))

    def get(self, job_id: str) -> Job:
        return _job(self._request("GET", _job_path(job_id)))

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
        if all_namespaces:
            raise _needs_kubernetes("listing every namespace")
        params: dict[str, Any] = {"limit": limit, "offset": offset, "sort": sort, "order": order}
        params.update({k: v for k, v in {"status": status, "modelType": model_type, "tag": tag}.items() if v})
        body = self._request("GET", JOBS_PATH, params=params)
        page = body["pagination"]
        return JobList(
            [_job(item) for item in body["jobs"]],
            Pagination(page["total"], page["limit"], page["offset"], page["hasMore"]),
        )

    def stop(self, job_id: str, *, save_checkpoint: bool = True, reason: str | None = None) -> Job:
        body: dict[str, Any] = {"saveCheckpoint": save_checkpoint}
        if reason:
            body["reason"] = reason
        return _job(self._request("POST", f"{_job_path(job_id)}/stop", json=body))

    def resume(self, job_id: str, *, checkpoint_id: str | None = None) -> Job:
        body = {"checkpointId": checkpoint_id} if checkpoint_id else {}
        return _job(self._request("POST", f"{_job_path(job_id)}/resume", json=body))

    def cancel(self, job_id: str) -> Job:
        return _job(self._request("POST", f"{_job_path(job_id)}/cancel"))

    def delete(self, job_id: str, *, force: bool = False, wait: float | None = None) -> Deletion:
        params: dict[str, Any] = {"force": str(force).lower()}
        if wait:
            params["wait"] = wait
        body = self._request("DELETE", _job_path(job_id), params=params)
        state: Deletion = "deleted" if body.get("status") == "deleted" else "terminating"
        return state

    def list_checkpoints(self, job_id: str) -> builtins.list[Checkpoint]:
        body = self._request("GET", f"{_job_path(job_id)}/checkpoints")
        return [Checkpoint.model_validate(item) for item in body["checkpoints"]]

    def list_events(self, job_id: str, *, metrics: bool = True) -> builtins.list[JobEvent]:
        body = self._request("GET", f"{_job_path(job_id)}/events", params={"metrics": str(metrics).lower()})
        return [JobEvent.model_validate(item) for item in body["events"]]

    def watch(self, job_id: str, **_: Any) -> NoReturn:
        raise _needs_kubernetes("following a job")

    def watch_list(self, **_: Any) -> NoReturn:
        raise _needs_kubernetes("following the jobs")

    def watch_events(self, job_id: str, **_: Any) -> NoReturn:
        raise _needs_kubernetes("following a job's events")

    def logs(self, job_id: str, **_: Any) -> NoReturn:
        raise ConfigurationError(
            "a job's log is read from its pods through the Kubernetes API, which the gateway does not proxy; "
            "construct the client without base_url"
        )


def _needs_kubernetes(what: str) -> ConfigurationError:
    """The gateway serves the reference's request-and-answer endpoints: no watch, one namespace."""
    return ConfigurationError(
        f"{what} needs the Kubernetes transport (a watch of the Kubernetes API, or every namespace), which the "
        "gateway does not serve; construct the client without base_url"
    )


def _job_path(job_id: str) -> str:
    return f"{JOBS_PATH}/{quote(job_id, safe='')}"


def _job(details: Mapping[str, Any]) -> Job:
    return Job.from_object(job_from_details(details))
