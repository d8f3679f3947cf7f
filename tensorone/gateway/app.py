"""The gateway's ASGI app: the reference API's endpoints, each a thin layer over the SDK's verbs.

Every request acts as its caller. The bearer token of ``Authorization`` is handed to the
Kubernetes API server with every call the request makes; the server authenticates it (401) and
RBAC decides (403). The gateway keeps only the API server's address and CA. A request names its
namespace with the ``TensorOne-Namespace`` header, the gateway's default namespace otherwise.

Bodies are converted by ``tensorone.api.rest`` and checked by the SDK's ``Jobs`` (the API server's
validation, then ``tensorone.api.preflight``, the operator's create-time checks), so a job is
refused here with the same code and details as through the SDK or ``t1``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from tensorone import __version__
from tensorone.api.catalog import CatalogSettings
from tensorone.api.rest import job_details, rest_field, validated_job_from_rest
from tensorone.client import Jobs, KubeApi
from tensorone.errors import ConfigurationError, TensorOneError, Unauthenticated
from tensorone.gateway import schemas
from tensorone.rest_client import JOBS_PATH, NAMESPACE_HEADER

JOB_PATH = JOBS_PATH + "/{job_id}"
# Longest wait a DELETE may ask for (?wait=SECONDS), so that no request holds a worker for long.
MAX_DELETE_WAIT_SECONDS = 60.0
# API clients kept, one per caller token (each holds a connection pool to the API server).
MAX_CALLER_CLIENTS = 256
# The answer to an error no handler expected. An exception's text may hold anything (a URL, a
# header, a token): it goes to the gateway's log with the traceback, never to the caller.
UNEXPECTED_ERROR = TensorOneError("an unexpected error; the gateway's log has the details")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayConfig:
    """Where the Kubernetes API is, and what the create-time checks need of the operator's config."""

    api_server: str
    ca_file: str | None = None
    verify_ssl: bool = True
    namespace: str = "default"
    settings: CatalogSettings = field(default_factory=CatalogSettings)
    # How long a caller's list of a namespace's jobs serves their next pages (0: every request reads).
    list_cache_seconds: float = 0.0


class CallerClients:
    """Kubernetes API clients by caller token: the token is the client's only credential. Each
    caller's lists are kept ``list_cache_seconds`` for their next pages, and never shared."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self._clients: OrderedDict[str, KubeApi] = OrderedDict()
        self._lock = threading.Lock()

    def jobs(self, token: str, namespace: str) -> Jobs:
        """The SDK's job verbs, acting as the holder of ``token`` in ``namespace``."""
        return Jobs(self._client(token), namespace, self._config.settings)

    def _client(self, token: str) -> KubeApi:
        from kubernetes import client as k8s

        with self._lock:
            found = self._clients.get(token)
            if found is not None:
                self._clients.move_to_end(token)
                return found
        configuration = k8s.Configuration(host=self._config.api_server)
        configuration.ssl_ca_cert = self._config.ca_file
        configuration.verify_ssl = self._config.verify_ssl
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        # A failure answers at once: the caller retries, not the gateway.
        configuration.retries = 0
        created = KubeApi(k8s.ApiClient(configuration), list_seconds=self._config.list_cache_seconds)
        with self._lock:
            self._clients[token] = created
            while len(self._clients) > MAX_CALLER_CLIENTS:
                self._clients.popitem(last=False)
        return created


class GatewayMetrics:
    """Prometheus metrics of one app: requests by route and status, and their latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tensorone_gateway_requests",
            "Requests answered, by method, route template and HTTP status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tensorone_gateway_request_seconds",
            "Time to answer a request, by method and route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )


def error_body(error: TensorOneError) -> dict[str, Any]:
    """The reference's error body, with fields spelt as the REST API spells them
    (``config.training.learning_rate``, ``gpuType``), not as the manifest does."""
    details = dict(error.details)
    if isinstance(details.get("field"), str):
        details["field"] = rest_field(details["field"])
    if isinstance(details.get("errors"), list):
        details["errors"] = [{**item, "field": rest_field(str(item.get("field")))} for item in details["errors"]]
        message = "; ".join(f"{item['field']}: {item['reason']}" for item in details["errors"])
    elif error.field:
        message = f"{details['field']}: {error.message}"
    else:
        message = error.message
    return {"error": error.code, "message": message, "details": details}


def _error_response(error: TensorOneError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.http_status)


def _caller_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "a bearer token is required: Authorization: Bearer TOKEN, a Kubernetes credential "
            "(a ServiceAccount token or any token the API server accepts)"
        )
    return token.strip()


async def _json_body(request: Request, *, required: bool) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ConfigurationError("a JSON object is required", field="<body>")
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ConfigurationError(f"not valid JSON: {error}", field="<body>") from None
    if not isinstance(body, dict):
        raise ConfigurationError("must be a JSON object", field="<body>")
    return body


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigurationError(f"must be true or false, got {value!r}", field=name)


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    """The body's string field ``name``, or None when absent."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"must be a string, got {value!r}", field=name)
    return value


def _list_item(obj: dict[str, Any]) -> dict[str, Any]:
    """A job in a list: its details, with the reference list's ``metrics.loss``."""
    item = job_details(obj)
    metrics = item.get("metrics")
    if isinstance(metrics, dict) and "currentLoss" in metrics:
        item["metrics"] = {"loss": metrics["currentLoss"], **metrics}
    return item


def _schema(model: type[Any]) -> dict[str, Any]:
    """A model's JSON schema with its nested models inlined (the document has no $defs of its own)."""
    schema: dict[str, Any] = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _documented(model: type[Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _schema(model)}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    status: _documented(schemas.ErrorBody, description)
    for status, description in (
        (400, "CONFIGURATION_ERROR: a value is invalid; details name the field and the reason."),
        (401, "UNAUTHENTICATED: no bearer token, or the API server refused it."),
        (403, "FORBIDDEN: the cluster's RBAC does not allow the caller this request."),
        (404, "JOB_NOT_FOUND, DATASET_NOT_FOUND or CHECKPOINT_NOT_FOUND."),
        (409, "INSUFFICIENT_RESOURCES, INVALID_JOB_STATE or ALREADY_EXISTS."),
        (500, "INTERNAL_ERROR: the API server failed, or answered what the gateway cannot read."),
        (503, "CONNECTION_ERROR: the Kubernetes API cannot be reached."),
    )
}


def _request_body(model: type[Any]) -> dict[str, Any]:
    """An operation's request body in the OpenAPI document (the handler reads the JSON itself)."""
    return {"requestBody": {"content": {"application/json": {"schema": _schema(model)}}}}


def create_app(config: GatewayConfig) -> FastAPI:  # noqa: C901 - one nested function per endpoint
    """The gateway app for one Kubernetes API server."""
    app = FastAPI(
        title="TensorOne training gateway",
        version=__version__,
        description="The reference training-jobs API over the Kubernetes API. Authorization: Bearer TOKEN, a "
        "Kubernetes credential; the request acts as its holder. Header TensorOne-Namespace: the namespace "
        "(default: the gateway's).",
    )
    clients = CallerClients(config)
    metrics = GatewayMetrics()
    app.state.metrics = metrics

    def jobs_for(request: Request) -> Jobs:
        namespace = request.headers.get(NAMESPACE_HEADER) or config.namespace
        return clients.jobs(_caller_token(request), namespace)

    async def call(jobs: Jobs, work: Callable[[Jobs], Any], status: int = 200) -> JSONResponse:
        """Run the SDK's blocking calls on the thread pool; answer their JSON."""
        return JSONResponse(await run_in_threadpool(work, jobs), status_code=status)

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Count and time every request. An error no handler expected is answered here, so that it
        is counted too (an exception handler for Exception would answer outside this middleware)."""
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("%s %s: unexpected error", request.method, request.url.path)
            response = _error_response(UNEXPECTED_ERROR)
        route = getattr(request.scope.get("route"), "path", "<unmatched>")
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(TensorOneError)
    async def project_error(request: Request, error: TensorOneError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        name = str(first["loc"][-1]) if first.get("loc") else "<request>"
        return _error_response(ConfigurationError(first.get("msg", "invalid"), field=name))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = "NOT_FOUND" if error.status_code == 404 else "INVALID_REQUEST"
        body = {"error": code, "message": f"{request.method} {request.url.path}: {error.detail}", "details": {}}
        return JSONResponse(body, status_code=error.status_code)

    @app.post(
        JOBS_PATH,
        status_code=201,
        summary="Create a training job",
        responses={201: _documented(schemas.JobDetails, "The created job."), **ERRORS},
        openapi_extra=_request_body(schemas.CreateJobRequest),
    )
    async def create_job(request: Request) -> JSONResponse:
        jobs = jobs_for(request)
        manifest = validated_job_from_rest(await _json_body(request, required=True))
        return await call(jobs, lambda jobs: job_details(jobs.apply(manifest).raw), status=201)

    @app.get(
        JOBS_PATH,
        summary="List training jobs",
        responses={200: _documented(schemas.JobList, "One page of jobs."), **ERRORS},
    )
    async def list_jobs(
        request: Request,
        *,
        status: str | None = None,
        model_type: Annotated[str | None, Query(alias="modelType")] = None,
        limit: int = 50,
        offset: int = 0,
        sort: str = "created_at",
        order: str = "desc",
        tag: str | None = None,
    ) -> JSONResponse:
        def work(jobs: Jobs) -> dict[str, Any]:
            page, pagination = jobs.list_objects(
                status=status, model_type=model_type, limit=limit, offset=offset, sort=sort, order=order, tag=tag
            )
            return {
                "jobs": [_list_item(obj) for obj in page],
                "pagination": {
                    "total": pagination.total,
                    "limit": pagination.limit,
                    "offset": pagination.offset,
                    "hasMore": pagination.has_more,
                },
            }

        return await call(jobs_for(request), work)

    @app.get(
        JOB_PATH,
        summary="Get a training job's details",
        responses={200: _documented(schemas.JobDetails, "The job."), **ERRORS},
    )
    async def get_job(request: Request, job_id: str) -> JSONResponse:
        return await call(jobs_for(request), lambda jobs: job_details(jobs.get(job_id).raw, curves=True))

    @app.post(
        JOB_PATH + "/stop",
        summary="Stop a job; the trainer saves a checkpoint",
        responses={200: _documented(schemas.JobDetails, "The job, stopping."), **ERRORS},
        openapi_extra=_request_body(schemas.StopRequest),
    )
    async def stop_job(request: Request, job_id: str) -> JSONResponse:
        jobs = jobs_for(request)
        body = await _json_body(request, required=False)
        save = _bool(body.get("saveCheckpoint", True), "saveCheckpoint")
        reason = _optional_str(body, "reason")
        return await call(jobs, lambda jobs: job_details(jobs.stop(job_id, save_checkpoint=save, reason=reason).raw))

    @app.post(
        JOB_PATH + "/resume",
        summary="Resume a stopped job from the latest or a named checkpoint",
        responses={200: _documented(schemas.JobDetails, "The job, resuming."), **ERRORS},
        openapi_extra=_request_body(schemas.ResumeRequest),
    )
    async def resume_job(request: Request, job_id: str) -> JSONResponse:
        jobs = jobs_for(request)
        body = await _json_body(request, required=False)
        checkpoint = _optional_str(body, "checkpointId")
        return await call(jobs, lambda jobs: job_details(jobs.resume(job_id, checkpoint_id=checkpoint).raw))

    @app.post(
        JOB_PATH + "/cancel",
        summary="Cancel a job for good; checkpoints are kept",
        responses={200: _documented(schemas.JobDetails, "The job, cancelled."), **ERRORS},
    )
    async def cancel_job(request: Request, job_id: str) -> JSONResponse:
        return await call(jobs_for(request), lambda jobs: job_details(jobs.cancel(job_id).raw))

    @app.delete(
        JOB_PATH,
        summary="Delete a job and what the operator made for it",
        responses={200: _documented(schemas.Deleted, "Gone, or terminating."), **ERRORS},
    )
    async def delete_job(request: Request, job_id: str, force: bool = False, wait: float = 0.0) -> JSONResponse:
        jobs = jobs_for(request)
        if not 0 <= wait <= MAX_DELETE_WAIT_SECONDS:
            raise ConfigurationError(f"must be between 0 and {MAX_DELETE_WAIT_SECONDS:g} seconds", field="wait")
        return await call(
            jobs, lambda jobs: {"id": job_id, "status": jobs.delete(job_id, force=force, wait=wait or None)}
        )

    @app.get(
        JOB_PATH + "/events",
        summary="A job's events, oldest first: Kubernetes Events and per-step metric events",
        responses={200: _documented(schemas.EventList, "The events."), **ERRORS},
    )
    async def job_events(request: Request, job_id: str, metrics: bool = True) -> JSONResponse:
        def work(jobs: Jobs) -> dict[str, Any]:
            return {"events": [event.to_wire() for event in jobs.list_events(job_id, metrics=metrics)]}

        return await call(jobs_for(request), work)

    @app.get(
        JOB_PATH + "/checkpoints",
        summary="A job's checkpoints, newest first",
        responses={200: _documented(schemas.CheckpointList, "The checkpoints."), **ERRORS},
    )
    async def job_checkpoints(request: Request, job_id: str) -> JSONResponse:
        return await call(
            jobs_for(request), lambda jobs: {"checkpoints": [c.to_wire() for c in jobs.list_checkpoints(job_id)]}
        )

    @app.get("/healthz", summary="Liveness: the gateway answers", include_in_schema=True)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
