"""Conversion between the reference REST API's bodies and TrainingJob manifests.

The reference ``POST /v2/training/jobs`` body has a free-text ``name`` (1-100 characters), a
``datasetId`` such as ``ds_1234567890abcdef`` and snake_case keys inside ``config``. A manifest
needs Kubernetes names and camelCase. :func:`job_from_rest` maps one to the other; names that are
not valid Kubernetes names become slugs, and the original is kept in an annotation so that
:func:`rest_from_job` gives the original body back. :func:`job_details` renders a TrainingJob
(with its status) in the reference's "job details" response shape, for the SDK.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from pydantic.alias_generators import to_camel, to_snake

from tensorone.api import API_VERSION
from tensorone.api.admission import committed_crds, validate
from tensorone.api.v1alpha1.base import DNS_1035_PATTERN, DNS_SUBDOMAIN_PATTERN, MAX_JOB_NAME_LENGTH
from tensorone.errors import FieldError, ValidationFailed

DISPLAY_NAME_ANNOTATION = "training.tensorone.ai/display-name"
DATASET_ID_ANNOTATION = "training.tensorone.ai/dataset-id"

MAX_DISPLAY_NAME_LENGTH = 100

# The create parameters of the reference besides name: each is the spec field of the same name.
REST_SPEC_FIELDS = ("modelType", "datasetId", "config", "description", "tags", "gpuType", "maxWorkers", "priority")

# Inside config the REST API writes snake_case, except these keys, which the reference's
# examples spell in camelCase; rest_from_job writes them so.
_REST_CAMEL_CONFIG_KEYS = frozenset({"baseModel"})

_DNS_1035 = re.compile(DNS_1035_PATTERN)
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)
_MAX_SUBDOMAIN_LENGTH = 253
_HASH_LENGTH = 6


def job_name(display_name: str) -> str:
    """The TrainingJob name for a REST ``name``: itself when it is a DNS-1035 label of at most
    53 characters, else a slug (lower case, runs of other characters turned into '-', a leading
    'job-' when it would not start with a letter, and a short hash of the original when it had
    to be shortened, so two long names stay distinct)."""
    if len(display_name) <= MAX_JOB_NAME_LENGTH and _DNS_1035.match(display_name):
        return display_name
    slug = re.sub(r"[^a-z0-9]+", "-", display_name.lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"job-{slug}".rstrip("-")
    if len(slug) > MAX_JOB_NAME_LENGTH:
        digest = hashlib.sha256(display_name.encode()).hexdigest()[:_HASH_LENGTH]
        slug = f"{slug[: MAX_JOB_NAME_LENGTH - _HASH_LENGTH - 1].rstrip('-')}-{digest}"
    return slug


def dataset_name(dataset_id: str) -> str:
    """The Dataset name for a REST ``datasetId``: itself when it is a DNS subdomain, else a slug
    (``ds_1234567890abcdef`` -> ``ds-1234567890abcdef``)."""
    if len(dataset_id) <= _MAX_SUBDOMAIN_LENGTH and _DNS_SUBDOMAIN.match(dataset_id):
        return dataset_id
    slug = re.sub(r"[^a-z0-9.]+", "-", dataset_id.lower())
    slug = re.sub(r"-*\.-*", ".", slug).strip("-.")[:_MAX_SUBDOMAIN_LENGTH].rstrip("-.")
    return slug


def create_body(
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
) -> dict[str, Any]:
    """The reference API's create body from the SDK's create parameters (absent ones left out)."""
    body = {
        "name": name,
        "modelType": model_type,
        "datasetId": dataset_id,
        "config": dict(config),
        "description": description,
        "tags": tags,
        "gpuType": gpu_type,
        "maxWorkers": max_workers,
        "priority": priority,
    }
    return {key: value for key, value in body.items() if value is not None}


def job_from_rest(body: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
    """A TrainingJob manifest from a REST create-job body (snake_case or camelCase keys).

    Only the body's shape is checked here (a name of 1 to 100 characters, known parameters, a
    datasetId string); pass the result to :func:`~tensorone.api.admission.validate` for the rest,
    or use :func:`validated_job_from_rest`. Raises ValidationFailed naming REST fields.
    """
    if not isinstance(body, Mapping):
        raise ValidationFailed([FieldError("<body>", "must be a JSON object")])
    fields = {_top_level_key(key): value for key, value in body.items()}
    name, dataset_id = _checked_name_and_dataset_id(fields)
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": _job_metadata(name, dataset_id, namespace),
        "spec": _job_spec(fields, dataset_id),
    }


def _checked_name_and_dataset_id(fields: Mapping[str, Any]) -> tuple[str, str]:
    """The body's name and datasetId, once its shape is checked: every problem raised at once."""
    errors: list[FieldError] = []
    for key in fields:
        if key != "name" and key not in REST_SPEC_FIELDS:
            allowed = ", ".join(("name", *REST_SPEC_FIELDS))
            errors.append(FieldError(key, f"unknown parameter; allowed: {allowed}"))
    raw_name, raw_dataset_id = fields.get("name"), fields.get("datasetId")
    name = raw_name if isinstance(raw_name, str) and raw_name.strip() else ""
    if not 1 <= len(name) <= MAX_DISPLAY_NAME_LENGTH:
        errors.append(FieldError("name", f"required: 1 to {MAX_DISPLAY_NAME_LENGTH} characters, got {raw_name!r}"))
    dataset_id = raw_dataset_id if isinstance(raw_dataset_id, str) else ""
    if not dataset_name(dataset_id):
        errors.append(FieldError("datasetId", f"required: the id of a dataset, got {raw_dataset_id!r}"))
    if errors:
        raise ValidationFailed(errors)
    return name, dataset_id


def _job_metadata(name: str, dataset_id: str, namespace: str | None) -> dict[str, Any]:
    """The TrainingJob's metadata: its Kubernetes name, and the originals when they were slugged."""
    annotations: dict[str, str] = {}
    metadata: dict[str, Any] = {"name": job_name(name)}
    if metadata["name"] != name:
        annotations[DISPLAY_NAME_ANNOTATION] = name
    if dataset_name(dataset_id) != dataset_id:
        annotations[DATASET_ID_ANNOTATION] = dataset_id
    if namespace:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def _job_spec(fields: Mapping[str, Any], dataset_id: str) -> dict[str, Any]:
    """The spec from the body's create parameters, config keys in camelCase."""
    spec: dict[str, Any] = {}
    for key in REST_SPEC_FIELDS:
        if key not in fields:
            continue
        if key == "datasetId":
            spec[key] = dataset_name(dataset_id)
        elif key == "config":
            spec[key] = _manifest_keys(fields[key], _config_schema())
        else:
            spec[key] = copy.deepcopy(fields[key])
    return spec


def validated_job_from_rest(body: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
    """:func:`job_from_rest` then validation; errors name the REST fields
    (``config.training.learning_rate``), as the reference API's CONFIGURATION_ERROR does."""
    manifest = job_from_rest(body, namespace=namespace)
    try:
        validate(manifest)
    except ValidationFailed as failed:
        raise ValidationFailed([FieldError(rest_field(e.field), e.reason) for e in failed.errors]) from failed
    return manifest


def rest_from_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The REST create-job body of a TrainingJob manifest: the inverse of :func:`job_from_rest`.

    Spec fields that have no REST create parameter (suspend, resumeFrom, cancel, ...) are left out.
    """
    metadata = job.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    spec = job.get("spec") or {}
    body: dict[str, Any] = {"name": annotations.get(DISPLAY_NAME_ANNOTATION, metadata.get("name"))}
    for key in REST_SPEC_FIELDS:
        if key not in spec:
            continue
        if key == "datasetId":
            body[key] = annotations.get(DATASET_ID_ANNOTATION, spec[key])
        elif key == "config":
            body[key] = _rest_keys(spec[key], _config_schema(), top=True)
        else:
            body[key] = copy.deepcopy(spec[key])
    return body


# The loss curves of a job's status (at most 64 points each): in one job's details, not in lists.
CURVE_KEYS = ("lossHistory", "evalLossHistory")


def job_details(job: Mapping[str, Any], *, curves: bool = False) -> dict[str, Any]:
    """A TrainingJob (with its status) in the reference's "job details" response shape.

    ``id`` is the TrainingJob's name (what the verbs take), ``status`` the phase in lower case
    (``pending`` before the operator has written one). Status parts appear when the status has them;
    ``curves`` adds the loss curves (an extension of the reference, for ``t1 plot``).
    """
    metadata = job.get("metadata") or {}
    status = job.get("status") or {}
    body = rest_from_job(job)
    details: dict[str, Any] = {
        "id": metadata.get("name"),
        "name": body.pop("name"),
        "status": str(status.get("phase") or "Pending").lower(),
        "modelType": body.pop("modelType", None),
        "datasetId": body.pop("datasetId", None),
        "config": body.pop("config", {}),
    }
    details.update(body)
    for key in (
        "progress",
        "metrics",
        "resourceAllocation",
        "estimatedCost",
        "resourceUsage",
        "checkpoints",
        "bestCheckpoint",
        "output",
    ):
        if key in status:
            details[key] = copy.deepcopy(status[key])
    if "message" in status:
        details["message"] = status["message"]
    for key in CURVE_KEYS if curves else ():
        if key in status:
            details[key] = copy.deepcopy(status[key])
    timestamps = {
        "createdAt": metadata.get("creationTimestamp"),
        "updatedAt": last_update(job),
        "startedAt": status.get("startedAt"),
        "completedAt": status.get("completedAt"),
        "estimatedCompletion": status.get("estimatedCompletion"),
    }
    details.update({key: value for key, value in timestamps.items() if value is not None})
    return details


# The parts of a job-details body that are the TrainingJob's status, under the same names.
_STATUS_KEYS = (
    "progress",
    "metrics",
    "resourceAllocation",
    "estimatedCost",
    "resourceUsage",
    "checkpoints",
    "bestCheckpoint",
    "output",
    "message",
    "startedAt",
    "completedAt",
    "estimatedCompletion",
    *CURVE_KEYS,
)


def job_from_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """The TrainingJob object (metadata, spec, status) a job-details body describes: the inverse of
    :func:`job_details`, for clients of the REST API that read answers as TrainingJobs."""
    body = {key: details[key] for key in ("name", *REST_SPEC_FIELDS) if key in details}
    job = job_from_rest(body)
    job["metadata"]["name"] = details["id"]
    if details.get("createdAt"):
        job["metadata"]["creationTimestamp"] = details["createdAt"]
    status = {key: copy.deepcopy(details[key]) for key in _STATUS_KEYS if key in details}
    status["phase"] = str(details.get("status") or "pending").capitalize()
    job["status"] = status
    return job


def last_update(job: Mapping[str, Any]) -> str | None:
    """When the job last changed as far as its object tells: the latest condition transition, else
    its creation (RFC 3339 strings of one format sort as the times they name)."""
    conditions = (job.get("status") or {}).get("conditions") or []
    times = [str(c["lastTransitionTime"]) for c in conditions if c.get("lastTransitionTime")]
    created = (job.get("metadata") or {}).get("creationTimestamp")
    return max(times, default=None) or (str(created) if created else None)


def rest_field(path: str) -> str:
    """The REST spelling of a manifest field path: ``spec.config.training.learningRate`` ->
    ``config.training.learning_rate``, ``metadata.name`` -> ``name``."""
    if path.startswith("metadata.name"):
        return "name" + path[len("metadata.name") :]
    if not path.startswith("spec."):
        return path
    parts = path[len("spec.") :].split(".")
    if parts[0].split("[")[0] != "config":
        return ".".join(parts)
    converted = [parts[0]]
    for index, part in enumerate(parts[1:]):
        name, bracket, rest = part.partition("[")
        if not (index == 0 and name in _REST_CAMEL_CONFIG_KEYS):
            name = to_snake(name)
        converted.append(name + bracket + rest)
    return ".".join(converted)


def _top_level_key(key: str) -> str:
    """Top-level parameters are camelCase in the reference; accept the SDK's snake_case too."""
    return key if key == "name" else to_camel(key)


def _config_schema() -> Mapping[str, Any]:
    job_schema = committed_crds()["TrainingJob"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema: Mapping[str, Any] = job_schema["properties"]["spec"]["properties"]["config"]
    return schema


def _manifest_keys(value: Any, schema: Mapping[str, Any]) -> Any:
    """Rename snake_case keys to the schema's camelCase properties, following the schema; keys the
    schema does not know are kept as written, so validation names them."""
    if isinstance(value, Mapping):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        if not properties:
            return copy.deepcopy(dict(value))
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if key in properties else to_camel(key)
            if name not in properties:
                name = key
            out[name] = _manifest_keys(item, properties.get(name, {}))
        return out
    if isinstance(value, list):
        return [_manifest_keys(item, schema.get("items") or {}) for item in value]
    return copy.deepcopy(value)


def _rest_keys(value: Any, schema: Mapping[str, Any], *, top: bool = False) -> Any:
    """camelCase schema properties back to the REST API's snake_case (see _REST_CAMEL_CONFIG_KEYS)."""
    if isinstance(value, Mapping):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        if not properties:
            return copy.deepcopy(dict(value))
        out: dict[str, Any] = {}
        for key, item in value.items():
            keep = key not in properties or (top and key in _REST_CAMEL_CONFIG_KEYS)
            out[key if keep else to_snake(key)] = _rest_keys(item, properties.get(key, {}))
        return out
    if isinstance(value, list):
        return [_rest_keys(item, schema.get("items") or {}) for item in value]
    return copy.deepcopy(value)
