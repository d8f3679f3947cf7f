"""A Kubernetes API server emulator faithful enough to run the real operator against.

It subclasses kmock 0.8's ``KubernetesEmulator`` (which serves discovery and an in-memory object
store) and replaces the object handling with API-server semantics that kopf and the kubernetes
client rely on (see shared/notes/testing-without-a-cluster.md):

- ``metadata.uid``, ``creationTimestamp``, a ``resourceVersion`` that grows on every write (one
  counter for the whole server, as etcd's revision), ``generation`` bumped on spec changes only;
- namespace from the URL, ``generateName``, 201 on create, 409 on creating an existing name and on
  a stale ``metadata.resourceVersion`` in a write, 404 for missing objects, 422 for a failed
  JSON-patch ``test`` and for invalid objects;
- merge patch, JSON patch, strategic-merge and apply patches (the last two as merge patches, which
  is exact for the fields this project writes), and PUT;
- the status subresource isolated both ways for kinds that declare it;
- lists with ``kind``, ``apiVersion`` and ``metadata.resourceVersion``, label and field selectors,
  and chunks (``limit`` and ``continue``; later chunks show the objects as they are then, where
  kube-apiserver serves every chunk at the first one's revision);
- watches that honour ``?resourceVersion`` (only newer events are replayed), ``timeoutSeconds``,
  label and field selectors;
- ``deletionTimestamp`` with finalizers, and the garbage collector's cascade through
  ``ownerReferences``;
- every write of a ``training.tensorone.ai`` object validated by ``tensorone.api.admission``
  against the CRDs in crds/ (schema and CEL, transition rules with the old object), returning the
  defaulted object, exactly as the API server would, including its validation ratcheting (parts
  unchanged from the stored object are not re-checked);
- ``mutators``: mutating admission webhooks on create (another project's, such as Kueue's),
  called before validation;
- ``faults``: injected error answers for one kind and method (an API outage);
- ``pods/log`` as the API server serves it from the kubelet: the log of the pod's container, as
  plain text, with ``container``, ``follow``, ``previous`` and ``tailLines``; 400 for what the
  kubelet refuses (a container not started yet, ``previous`` without a terminated container) and
  a follow that ends when the container does. The log's text is what the test writes
  (``append_log``), into the container as the pod's status has it: each restart (``restartCount``)
  starts a new log, the one before it is ``previous``, and a new pod of the same name has its own;
- ``pods/exec`` over WebSocket (``v5.channel.k8s.io``, ``v4.channel.k8s.io``), checked as the API
  server checks it and run by the ``runtimes`` a node registers for its name (``tests/kube/exec.py``);
- ``tokens``: bearer-token authentication and a small RBAC when set: 401 for a request without a
  known token, 403 for one its token's grants do not allow (off by default);
- ``event_window``: a bounded history (the newest events only, as etcd compacts; a watch resumed
  from before them gets 410 Gone), for long runs; by default every event and every version of
  every object is kept, for tests to assert on;
- watch bookmarks, as kube-apiserver's watch cache sends them to a watch that asks
  (``allowWatchBookmarks=true``): a ``BOOKMARK`` event with the current resource version every
  ``bookmark_seconds`` (a minute, as the API server), and one just before the watch times out, so
  a client that resumes from it is not answered 410 Gone for a kind that was quiet meanwhile;
- ``drop_watches``: every open watch stream ends at once while the server serves on (an API
  server restart, a proxy's idle timeout), for clients that must resume their watches;
- discovery as kubectl reads it: ``/api``, ``/apis``, ``/apis/GROUP[/VERSION]`` and the aggregated
  form (``apidiscovery.k8s.io/v2``) with short names, categories, verbs and subresources;
- server-side printing: a ``meta.k8s.io`` Table for custom resources, built from the CRD's
  ``additionalPrinterColumns`` as kube-apiserver does (``tests/kube/tables.py``).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import datetime
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import yaml
from kmock import KubernetesEmulator
from kmock._internal import enums, references, rendering
from kmock._internal.k8s import KubernetesError, KubernetesScaffold

from tests.kube import exec as exec_stream
from tests.kube.tables import CreatedAtColumn, PrinterColumn, crd_columns, to_table, wanted_table_version

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"

# (new object, stored object or None, the top-level parts that changed) -> the defaulted object
Validator = Callable[[dict[str, Any], "dict[str, Any] | None", frozenset[str]], dict[str, Any]]
# A mutating admission webhook on create: changes the new object in place
Mutator = Callable[[dict[str, Any]], None]


# What the emulator serves of every kind (deletecollection is not served, so not announced).
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
# The verbs of each subresource served.
SUBRESOURCE_VERBS = {"status": ("get", "patch", "update"), "log": ("get",), "exec": ("create", "get")}


@dataclass(frozen=True)
class Kind:
    """What the emulator knows of a resource: its kind, scope, status subresource, the names
    discovery announces, and (for custom resources) the printer columns of its Table."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status_subresource: bool = False
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # None: no server-side printing here (the plain object is answered to a Table request).
    printer_columns: tuple[PrinterColumn, ...] | None = None
    # Serves ``<plural>/log`` and ``<plural>/exec`` (pods only).
    log_subresource: bool = False
    exec_subresource: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def subresources(self) -> tuple[str, ...]:
        """The subresources served, as discovery names them."""
        served = (("status", self.status_subresource), ("log", self.log_subresource), ("exec", self.exec_subresource))
        return tuple(name for name, serves in served if serves)


# Short names and categories as a real API server announces them.
BUILTIN_KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True, short_names=("ns",)),
    Kind("", "v1", "nodes", "Node", namespaced=False, status_subresource=True, short_names=("no",)),
    Kind(
        "",
        "v1",
        "pods",
        "Pod",
        namespaced=True,
        status_subresource=True,
        short_names=("po",),
        categories=("all",),
        log_subresource=True,
        exec_subresource=True,
    ),
    Kind("", "v1", "configmaps", "ConfigMap", namespaced=True, short_names=("cm",)),
    Kind(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        namespaced=True,
        status_subresource=True,
        short_names=("pvc",),
    ),
    Kind("", "v1", "events", "Event", namespaced=True, short_names=("ev",)),
    Kind("events.k8s.io", "v1", "events", "Event", namespaced=True, short_names=("ev",)),
    Kind(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status_subresource=True,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        printer_columns=(CreatedAtColumn(),),  # kube-apiserver's default table convertor
    ),
    Kind("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob", namespaced=True, status_subresource=True),
)


def crd_kinds(crd_dir: Path = CRD_DIR) -> tuple[list[Kind], list[dict[str, Any]]]:
    """The kinds declared by the CRD files, and the CRD objects themselves (served as objects)."""
    kinds: list[Kind] = []
    crds: list[dict[str, Any]] = []
    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds.append(crd)
        names = crd["spec"]["names"]
        for version in crd["spec"]["versions"]:
            kinds.append(
                Kind(
                    crd["spec"]["group"],
                    version["name"],
                    names["plural"],
                    names["kind"],
                    namespaced=crd["spec"]["scope"] == "Namespaced",
                    status_subresource="status" in version.get("subresources", {}),
                    short_names=tuple(names.get("shortNames", [])),
                    categories=tuple(names.get("categories", [])),
                    printer_columns=tuple(crd_columns(version)),
                )
            )
    return kinds, crds


def opaque_parts(crds: dict[str, dict[str, Any]], parts: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The CRDs with the schemas (and CEL rules) of ``parts`` replaced by an opaque object."""
    result = copy.deepcopy(crds)
    for crd in result.values():
        for version in crd["spec"]["versions"]:
            properties = version["schema"]["openAPIV3Schema"].get("properties", {})
            for part in parts:
                if part in properties:
                    properties[part] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return result


def tensorone_validator() -> Validator:
    """``tensorone.api.admission.validate``: schema, CEL and defaults of the CRDs in crds/.

    With validation ratcheting (Kubernetes >= 1.30), the API server reports no error for a value
    that is unchanged from the stored, valid object. So a write that changes only the status (a
    controller's) or only the metadata (labels, annotations, finalizers) is validated with the
    unchanged parts' schemas made opaque: the same verdict, without re-evaluating every CEL rule
    of the spec (cel-python costs milliseconds a rule).
    """
    from tensorone.api.admission import committed_crds

    return schema_validator(committed_crds())


def schema_validator(full: dict[str, dict[str, Any]]) -> Validator:
    """Admission of the kinds of ``full`` (kind -> CRD) with validation ratcheting, as above."""
    from tensorone.api.admission import validate

    spec_unchanged = opaque_parts(full, ("spec",))
    only_metadata = opaque_parts(full, ("spec", "status"))

    def run(obj: dict[str, Any], old: dict[str, Any] | None, changed: frozenset[str]) -> dict[str, Any]:
        if old is None or changed - {"metadata", "status"}:
            return validate(obj, old, crds=full)
        return validate(obj, old, crds=spec_unchanged if "status" in changed else only_metadata)

    return run


class ApiError(KubernetesError):
    """An API error with the status code and reason a real API server uses."""


AGGREGATED_DISCOVERY_VERSIONS = ("v2", "v2beta1")
# How long before a watch times out kube-apiserver sends it a last bookmark.
BOOKMARK_BEFORE_TIMEOUT_SECONDS = 2.0


def _aggregated_discovery_version(accept: str) -> str | None:
    """The aggregated discovery version the Accept header asks for first (None: the plain form)."""
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        params = dict(parameter.partition("=")[::2] for parameter in parameters)
        if media_type != "application/json":
            continue
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") in AGGREGATED_DISCOVERY_VERSIONS:
                return params["v"]
            continue
        if "as" not in params:
            return None
    return None


def _api_error(status: int, reason: str, message: str, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError(status=status, reason=reason, message=message, details=details or {})


def _method(request: rendering.Request) -> str:
    return str(getattr(request.method, "value", request.method)).upper()


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _api_error(422, "Invalid", f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise _api_error(422, "Invalid", f"JSON patch path {path!r} does not exist")
    return doc


def json_patch(doc: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch; a failed ``test`` is a 422 as the API server answers."""
    doc = copy.deepcopy(doc)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "test":
            if _walk(doc, _pointer(path), path) != op.get("value"):
                raise _api_error(422, "Invalid", f"the JSON patch test at {path!r} failed: value differs")
        elif kind in {"move", "copy"}:
            source_path = op.get("from", "")
            value = copy.deepcopy(_walk(doc, _pointer(source_path), source_path))
            if kind == "move":
                doc = json_patch(doc, [{"op": "remove", "path": source_path}])
            doc = json_patch(doc, [{"op": "add", "path": path, "value": value}])
        elif kind in {"add", "remove", "replace"}:
            doc = _patch_member(doc, kind, path, op.get("value"))
        else:
            raise _api_error(422, "Invalid", f"unknown JSON patch operation {kind!r}")
    return doc


def _patch_member(doc: Any, kind: str, path: str, value: Any) -> Any:
    """One add, remove or replace at ``path`` (the whole document when the path is empty)."""
    parts = _pointer(path)
    if not parts:
        if kind == "remove":
            raise _api_error(422, "Invalid", "cannot remove the whole document")
        return copy.deepcopy(value)
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if kind == "add" and isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(value))
        return doc
    if kind != "add":
        _walk(parent, [last], path)  # 422 when absent
    key = int(last) if isinstance(parent, list) else last
    if kind == "remove":
        del parent[key]
    else:
        parent[key] = copy.deepcopy(value)
    return doc


_SELECTOR_TERM = re.compile(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*(\S*)\s*$")
_SET_TERM = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(selector: str) -> list[str]:
    # Commas split terms, except inside the parentheses of a set-based term.
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality- and set-based label selectors: ``a=b,c!=d,e in (f,g),h notin (i),j,!k``."""
    for raw_term in _split_selector(selector):
        term = raw_term.strip()
        if match := _SET_TERM.match(term):
            key, operator, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            inside = key in labels and labels[key] in values
            if inside != (operator == "in"):
                return False
        elif match := _SELECTOR_TERM.match(term):
            key, operator, value = match.groups()
            if (labels.get(key) == value) != (operator != "!="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_selector_matches(selector: str, obj: dict[str, Any]) -> bool:
    """Field selectors on metadata.name and metadata.namespace (what clients use)."""
    for term in _split_selector(selector):
        match = _SELECTOR_TERM.match(term)
        if not match:
            raise _api_error(400, "BadRequest", f"unsupported field selector {term!r}")
        path, operator, value = match.groups()
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if ((current or "") == value) != (operator != "!="):
            return False
    return True


_DISCOVERY_PATH = re.compile(r"^/(?:api(?:/(v1))?|apis(?:/([^/]+)(?:/([^/]+))?)?)/?$")

_NAMESPACE_OBJECT_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?(?:/(status|finalize))?/?$")

SERVER_MANAGED_METADATA = (
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "name",
    "namespace",
)


@dataclass(frozen=True)
class LogOptions:
    """The query of a pods/log request (PodLogOptions), as the API server reads it."""

    container: str | None
    follow: bool
    previous: bool
    tail_lines: int | None

    @classmethod
    def parse(cls, params: Mapping[str, str], pod_name: str) -> LogOptions:
        tail = params.get("tailLines")
        tail_lines = None
        if tail not in (None, ""):
            try:
                tail_lines = int(str(tail))
            except ValueError as exc:
                raise _api_error(400, "BadRequest", f"tailLines: invalid integer {tail!r}") from exc
            if tail_lines < 0:
                raise _api_error(
                    422,
                    "Invalid",
                    f'PodLogOptions "{pod_name}" is invalid: tailLines: Invalid value: {tail_lines}: '
                    "must be greater than or equal to 0",
                )
        return cls(
            container=params.get("container") or None,
            follow=_query_bool(params.get("follow")),
            previous=_query_bool(params.get("previous")),
            tail_lines=tail_lines,
        )


def _query_bool(value: Any) -> bool:
    """A boolean query parameter as Kubernetes converts one: absent is false, and so are 0, f,
    false, n and no; anything else is true."""
    if value is None:
        return False
    return str(value).lower() not in {"0", "f", "false", "n", "no"}


def _last_lines(text: str, count: int | None) -> str:
    if count is None:
        return text
    return "".join(text.splitlines(keepends=True)[-count:]) if count else ""


def _container_status(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == container), None)


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what bumps the generation when it changes."""
    return {key: value for key, value in obj.items() if key not in {"metadata", "status"}}


class _BookmarkClock:
    """When a watch that allows bookmarks gets one: every ``interval`` seconds, and a last one
    BOOKMARK_BEFORE_TIMEOUT_SECONDS before its ``deadline`` (as kube-apiserver's watch cache)."""

    def __init__(self, interval: float, start: float, deadline: float | None) -> None:
        self.interval = interval
        self.next_at = start + interval
        self.last_at = None if deadline is None else deadline - BOOKMARK_BEFORE_TIMEOUT_SECONDS
        self.ended = False

    def due(self, moment: float) -> bool:
        """Whether one is to be sent at ``moment`` (and the next one planned if so)."""
        if self.ended:
            return False
        if self.last_at is not None and moment >= self.last_at:
            self.ended = True
            return True
        if moment >= self.next_at:
            self.next_at = moment + self.interval
            return True
        return False

    def next_time(self) -> float | None:
        """When the next one is due (None: no more)."""
        if self.ended:
            return None
        return self.next_at if self.last_at is None else min(self.next_at, self.last_at)


@attrs.define(kw_only=True)
class FaithfulEmulator(KubernetesEmulator):
    """kmock's emulator with the API-server semantics listed in the module docstring."""

    crd_dir: Path = CRD_DIR
    validate_writes: bool = True
    # How many of the newest watch events are kept (None: all, and every version of every object).
    event_window: int | None = None
    # How often a watch that allows bookmarks gets one (kube-apiserver: about a minute).
    bookmark_seconds: float = 60.0

    _kinds: dict[tuple[str, str, str], Kind] = attrs.field(factory=dict, init=False)
    _validators: dict[tuple[str, str, str], Validator] = attrs.field(factory=dict, init=False)
    # Mutating admission webhooks on create, per kind (group, version, plural): called in order
    # before the schema's validation, as the API server calls a MutatingWebhookConfiguration's.
    mutators: dict[tuple[str, str, str], list[Mutator]] = attrs.field(factory=dict, init=False)
    _store: dict[tuple[str, str, str, str, str], dict[str, Any]] = attrs.field(factory=dict, init=False)
    _versions: dict[tuple[str, str, str, str, str], list[dict[str, Any]]] = attrs.field(factory=dict, init=False)
    _events: list[tuple[int, tuple[str, str, str], str, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _changed: asyncio.Condition | None = attrs.field(default=None, init=False)
    # Fault injection: (HTTP method, plural) -> status code answered instead of serving, to play
    # an API outage for one kind (a stuck deletion, an operator killed between two creates).
    faults: dict[tuple[str, str], int] = attrs.field(factory=dict, init=False)
    # How many requests each fault answered.
    faults_answered: collections.Counter[tuple[str, str]] = attrs.field(factory=collections.Counter, init=False)
    # Authentication: bearer token -> the (HTTP method, plural) pairs it may use, None for all.
    # An empty mapping (the default) turns authentication off.
    tokens: dict[str, set[tuple[str, str]] | None] = attrs.field(factory=dict, init=False)
    # The container runtime of each node, by node name: how pods/exec runs a command in a container.
    runtimes: dict[str, exec_stream.Runtime] = attrs.field(factory=dict, init=False)
    # The containers' logs: (pod uid, container, restart count) -> the text written so far.
    _logs: dict[tuple[str, str, int], str] = attrs.field(factory=dict, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    # How many times drop_watches() ended the open watch streams.
    _drops: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        kinds, crds = crd_kinds(self.crd_dir)
        for kind in (*BUILTIN_KINDS, *kinds):
            self.declare(kind)
        validator = tensorone_validator() if self.validate_writes else None
        for kind in kinds:
            if validator is not None:
                self._validators[(kind.group, kind.version, kind.plural)] = validator
        for crd in crds:
            self.put_object(crd)
        # Kubeflow Trainer v2 and JobSet, validated by the schemas written for them.
        from tests.kube import kubeflow_trainer

        trainer_validator = kubeflow_trainer.validator()
        for kind in kubeflow_trainer.KINDS:
            self.declare(kind)
            if self.validate_writes:
                self._validators[(kind.group, kind.version, kind.plural)] = trainer_validator
        # Kueue, validated by the schemas written for it.
        from tests.kube import kueue

        kueue_validator = kueue.validator()
        for kind in kueue.KINDS:
            self.declare(kind)
            if self.validate_writes:
                self._validators[(kind.group, kind.version, kind.plural)] = kueue_validator

    # -- declarations ------------------------------------------------------------------------

    def declare(self, kind: Kind) -> None:
        """Serve a kind: discovery, and the list/watch/get/create/patch/delete endpoints."""
        self._kinds[(kind.group, kind.version, kind.plural)] = kind
        self.resources[references.resource(kind.group, kind.version, kind.plural)] = references.ResourceInfo(
            kind=kind.kind,
            singular=kind.singular,
            namespaced=kind.namespaced,
            verbs=set(VERBS),
            shortnames=set(kind.short_names),
            categories=set(kind.categories),
            subresources=set(kind.subresources),
        )

    def kind_of(self, api_version: str, kind: str) -> Kind:
        """The declared kind for an object's apiVersion and kind."""
        for known in self._kinds.values():
            if known.api_version == api_version and known.kind == kind:
                return known
        raise KeyError(f"{api_version} {kind} is not served by the emulator")

    async def close_watches(self) -> None:
        """End every open watch stream (the server is shutting down)."""
        self._closing = True
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def drop_watches(self) -> None:
        """End every open watch stream now and serve on, as a restarted API server or a proxy's idle
        timeout does: a client resumes from the last version it saw (410 Gone if it was compacted)."""
        self._drops += 1
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    # -- direct access (no HTTP; sends watch events like any write) -------------------------

    def put_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object without validation, as a cluster's pre-existing state (CRDs, nodes)."""
        kind = self.kind_of(obj["apiVersion"], obj["kind"])
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        self._stamp_new(stored)
        key = (
            kind.group,
            kind.version,
            kind.plural,
            meta.get("namespace", "") if kind.namespaced else "",
            meta["name"],
        )
        self._store[key] = stored
        self._remember(key, "ADDED", stored)
        return stored

    def stored(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None (a copy: edit through the HTTP API so watches fire)."""
        known = self.kind_of(api_version, kind)
        obj = self._store.get((known.group, known.version, known.plural, namespace if known.namespaced else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def versions(self, api_version: str, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
        """Every stored version of an object, oldest first (for assertions on what was written)."""
        known = self.kind_of(api_version, kind)
        key = (known.group, known.version, known.plural, namespace if known.namespaced else "", name)
        return copy.deepcopy(self._versions.get(key, []))

    def all_objects(self, api_version: str, kind: str) -> list[dict[str, Any]]:
        """Every stored object of a kind."""
        known = self.kind_of(api_version, kind)
        prefix = (known.group, known.version, known.plural)
        return [copy.deepcopy(obj) for key, obj in self._store.items() if key[:3] == prefix]

    # -- the HTTP surface --------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        discovery = _DISCOVERY_PATH.match(raw_request.path) if raw_request.method == "GET" else None
        if discovery is not None:
            return self._serve_discovery(raw_request, *discovery.groups())
        # kmock's URL parser reads /api/v1/namespaces[/NAME] as a namespace prefix and fails:
        # Namespace objects (kopf lists them in namespaced mode) are parsed here instead.
        match = _NAMESPACE_OBJECT_PATH.match(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        watch = raw_request.method == "GET" and raw_request.query.get("watch") == "true"
        request = rendering.Request(
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            data=data,
            body=body,
            action=enums.action.WATCH if watch else None,
            resource=references.resource("", "v1", "namespaces"),
            namespace=None,
            name=match.group(1),
            subresource=match.group(2),
        )
        return await self._handle(request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is None or resource.plural is None:
            return await KubernetesScaffold._handle(self, request)
        kind = self._kinds.get((resource.group or "", resource.version or "", resource.plural or ""))
        if kind is None:
            return await KubernetesScaffold._handle(self, request)
        if self._changed is None:
            self._changed = asyncio.Condition()
        refusal = self._refusal(request, kind)
        if refusal is not None:
            return await self._render_error(refusal)
        fault = self.faults.get((_method(request), kind.plural))
        if fault is not None:
            self.faults_answered[(_method(request), kind.plural)] += 1
            return await self._render_error(_api_error(fault, "InternalError", "injected fault"))
        try:
            if request.action == enums.action.WATCH:
                return await self._watch(request, kind)
            if request.subresource == "log" and kind.log_subresource:
                return await self._serve_log(request, kind)
            if request.subresource == "exec" and kind.exec_subresource:
                return await self._serve_exec(request, kind)
            status, payload = await self._serve(request, kind)
        except ApiError as exc:
            return await self._render_error(exc)
        if payload.get("kind") == "Table":
            # The negotiated media type, as kube-apiserver names it in its answer.
            version = payload["apiVersion"].rpartition("/")[2]
            return aiohttp.web.Response(
                body=json.dumps(payload).encode(),
                status=status,
                headers={"Content-Type": f"application/json;as=Table;v={version};g=meta.k8s.io"},
            )
        return aiohttp.web.json_response(payload, status=status)

    def _refusal(self, request: rendering.Request, kind: Kind) -> ApiError | None:
        """401 or 403 as kube-apiserver answers them, when ``tokens`` is set."""
        if not self.tokens:
            return None
        headers = {str(key).lower(): str(value) for key, value in (request.headers or {}).items()}
        header = headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if token not in self.tokens:
            return _api_error(401, "Unauthorized", "Unauthorized")
        grants = self.tokens[token]
        method = _method(request)
        # RBAC names the log and exec subresources apart: reading pods does not grant reading their
        # logs, and an exec is authorized as a create of pods/exec (its WebSocket upgrade, a GET, too).
        resource = f"{kind.plural}/{request.subresource}" if request.subresource in {"log", "exec"} else kind.plural
        if request.subresource == "exec":
            method = "POST"
        if grants is not None and (method, resource) not in grants:
            verb = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
            return _api_error(
                403,
                "Forbidden",
                f'{kind.plural}.{kind.group or "core"} is forbidden: User "token-user" cannot {verb} resource '
                f'"{resource}" in API group "{kind.group}"',
            )
        return None

    async def _serve(self, request: rendering.Request, kind: Kind) -> tuple[int, dict[str, Any]]:
        method = _method(request)
        if request.subresource not in {None, "status"} or (
            request.subresource == "status" and not kind.status_subresource
        ):
            raise _api_error(404, "NotFound", f"the server could not find the requested resource {request.url.path}")
        namespace = request.namespace or ""
        if request.name is None:
            if method == "GET":
                listing = self._list(request, kind)
                return 200, self._as_table(request, kind, listing["items"], listing["metadata"]) or listing
            if method == "POST":
                return 201, await self._create(request, kind, namespace)
        elif method == "GET":
            obj = self._get(kind, namespace, request.name)
            return 200, self._as_table(request, kind, [obj], obj["metadata"]) or obj
        elif method in {"PATCH", "PUT"}:
            return 200, await self._write(request, kind, namespace, request.name)
        elif method == "DELETE":
            return 200, await self._delete(kind, namespace, request.name)
        raise _api_error(405, "MethodNotAllowed", f"{method} is not allowed on {request.url.path}")

    # -- pods/log ----------------------------------------------------------------------------

    async def append_log(self, namespace: str, pod: str, text: str, *, container: str | None = None) -> None:
        """Write ``text`` to the log of the pod's container (its only one unless named), as the
        container prints it: into the run its status shows (``restartCount``), waking followers."""
        kind = self._kinds[("", "v1", "pods")]
        obj = self._get(kind, namespace, pod)
        name = self._log_container(obj, container)
        status = _container_status(obj, name) or {}
        key = (obj["metadata"]["uid"], name, int(status.get("restartCount") or 0))
        self._logs[key] = self._logs.get(key, "") + text
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            self._changed.notify_all()

    def _log_container(self, pod: dict[str, Any], container: str | None) -> str:
        """The container a log request means, checked as the API server checks it."""
        name = pod["metadata"]["name"]
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        if container is None:
            if len(names) == 1:
                return names[0]
            raise _api_error(
                400,
                "BadRequest",
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]",
            )
        if container not in names:
            raise _api_error(400, "BadRequest", f"container {container} is not valid for pod {name}")
        return container

    def _log_run(self, pod: dict[str, Any], container: str, previous: bool) -> int:
        """Which run of the container a log request reads (its restart count), as the kubelet
        decides: the running or terminated one, else the last terminated one; with ``previous``
        the one before the current. 400 with the kubelet's words when there is none."""
        pod_name = pod["metadata"]["name"]
        status = _container_status(pod, container)
        if status is None:
            raise _api_error(400, "BadRequest", f'container "{container}" in pod "{pod_name}" is not available')
        restarts = int(status.get("restartCount") or 0)
        state, last = status.get("state") or {}, (status.get("lastState") or {}).get("terminated")
        if previous:
            if last is None:
                raise _api_error(
                    400,
                    "BadRequest",
                    f'previous terminated container "{container}" in pod "{pod_name}" not found',
                )
            return restarts - 1
        if "running" in state or "terminated" in state:
            return restarts
        if last is not None:
            return restarts - 1
        reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
        raise _api_error(
            400, "BadRequest", f'container "{container}" in pod "{pod_name}" is waiting to start: {reason}'
        )

    def _log_open(self, namespace: str, name: str, key: tuple[str, str, int]) -> bool:
        """Whether the container run of ``key`` still runs (a follow of its log goes on)."""
        pod = self._store.get(("", "v1", "pods", namespace, name))
        if pod is None or pod["metadata"]["uid"] != key[0] or self._closing:
            return False
        status = _container_status(pod, key[1]) or {}
        return int(status.get("restartCount") or 0) == key[2] and "running" in (status.get("state") or {})

    def _log_woken(self, key: tuple[str, str, int], sent: int, revision: int) -> bool:
        return len(self._logs.get(key, "")) > sent or self._revision > revision or self._closing

    async def _serve_log(self, request: rendering.Request, kind: Kind) -> aiohttp.web.StreamResponse:
        """GET pods/NAME/log: the container's log as plain text; with ``follow``, what it writes
        next, until it ends."""
        assert request._raw_request is not None and request.name is not None
        if _method(request) != "GET":
            raise _api_error(405, "MethodNotAllowed", f"{_method(request)} is not allowed on {request.url.path}")
        namespace, name = request.namespace or "", request.name
        pod = self._get(kind, namespace, name)
        options = LogOptions.parse(request.params, name)
        container = self._log_container(pod, options.container)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        if not (pod.get("spec") or {}).get("nodeName"):
            # A pod no node has taken has no kubelet to ask: the API server answers an empty log.
            await response.prepare(request._raw_request)
            await response.write_eof()
            return response
        key = (pod["metadata"]["uid"], container, self._log_run(pod, container, options.previous))
        text = self._logs.get(key, "")
        await response.prepare(request._raw_request)
        try:
            await response.write(_last_lines(text, options.tail_lines).encode())
            sent = len(text)
            while options.follow and not options.previous and self._log_open(namespace, name, key):
                assert self._changed is not None
                async with self._changed:
                    await self._changed.wait_for(partial(self._log_woken, key, sent, self._revision))
                text = self._logs.get(key, "")
                await response.write(text[sent:].encode())
                sent = len(text)
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response

    # -- pods/exec ---------------------------------------------------------------------------

    async def _serve_exec(self, request: rendering.Request, kind: Kind) -> Any:
        """GET or POST pods/NAME/exec with a WebSocket upgrade: the API server's checks, then the
        command run by the runtime of the pod's node (``tests.kube.exec``)."""
        raw = request._raw_request
        assert raw is not None and request.name is not None
        namespace, name = request.namespace or "", request.name
        pod = self._get(kind, namespace, name)
        options = exec_stream.ExecOptions.parse(raw.query)
        container = self._log_container(pod, options.container)
        if (problem := options.problem()) is not None:
            raise _api_error(400, "BadRequest", problem)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise _api_error(400, "BadRequest", f"pod {name} does not have a host assigned")
        phase = (pod.get("status") or {}).get("phase")
        if phase in {"Succeeded", "Failed"}:
            raise _api_error(
                400, "BadRequest", f"cannot exec into a container in a completed pod; current phase is {phase}"
            )
        if not exec_stream.is_upgrade(dict(raw.headers)):
            raise _api_error(400, "BadRequest", "Upgrade request required")
        offered = exec_stream.offered_protocols(dict(raw.headers))
        if not set(offered) & set(exec_stream.PROTOCOLS):
            raise _api_error(
                400,
                "BadRequest",
                f"none of the offered subprotocols {offered} is served: {', '.join(exec_stream.PROTOCOLS)}",
            )
        runtime = self.runtimes.get(node)
        if runtime is None:
            raise _api_error(500, "InternalError", f"error dialing backend: no kubelet answers for node {node}")
        try:
            target = runtime(namespace, name, container, options.command)
        except LookupError:
            raise _api_error(
                500, "InternalError", f'unable to upgrade connection: container not found ("{container}")'
            ) from None
        return await exec_stream.serve(raw, target, options)

    # -- discovery ---------------------------------------------------------------------------

    def _serve_discovery(
        self, raw_request: aiohttp.web.BaseRequest, core: str | None, group: str | None, version: str | None
    ) -> aiohttp.web.StreamResponse:
        """``/api``, ``/api/v1``, ``/apis``, ``/apis/G``, ``/apis/G/V``, as kube-apiserver answers
        them; ``/api`` and ``/apis`` in the aggregated form when the client asks for it first."""
        path = raw_request.path.rstrip("/")
        if path in {"/api", "/apis"}:
            aggregated = _aggregated_discovery_version(raw_request.headers.get("Accept", ""))
            if aggregated is not None:
                payload = self._aggregated_discovery(core_group=path == "/api", version=aggregated)
                return aiohttp.web.Response(
                    body=json.dumps(payload).encode(),
                    headers={
                        "Content-Type": f"application/json;g=apidiscovery.k8s.io;v={aggregated};"
                        "as=APIGroupDiscoveryList"
                    },
                )
        if path == "/api":
            return aiohttp.web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if core is not None:
            return aiohttp.web.json_response(self._resource_list("", "v1"))
        if group is None:
            groups = [self._api_group(name) for name in self._groups()]
            return aiohttp.web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if group not in self._groups() or (version is not None and version not in self._groups()[group]):
            return aiohttp.web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": "the server could not find the requested resource",
                    "reason": "NotFound",
                    "details": {},
                    "code": 404,
                },
                status=404,
            )
        if version is None:
            return aiohttp.web.json_response({"kind": "APIGroup", "apiVersion": "v1", **self._api_group(group)})
        return aiohttp.web.json_response(self._resource_list(group, version))

    def _groups(self) -> dict[str, list[str]]:
        """The named groups served and their versions (in the order declared: the first is preferred)."""
        groups: dict[str, list[str]] = {}
        for kind in self._kinds.values():
            if kind.group and kind.version not in groups.setdefault(kind.group, []):
                groups[kind.group].append(kind.version)
        return groups

    def _api_group(self, group: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{version}", "version": version} for version in self._groups()[group]]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    def _kinds_of(self, group: str, version: str) -> list[Kind]:
        return [kind for kind in self._kinds.values() if (kind.group, kind.version) == (group, version)]

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for kind in self._kinds_of(group, version):
            resource: dict[str, Any] = {
                "name": kind.plural,
                "singularName": kind.singular,
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": list(VERBS),
            }
            if kind.short_names:
                resource["shortNames"] = list(kind.short_names)
            if kind.categories:
                resource["categories"] = list(kind.categories)
            resources.append(resource)
            # A subresource has no singular name, short names or categories of its own.
            resources.extend(
                {
                    "name": f"{kind.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": kind.namespaced,
                    "kind": kind.kind,
                    "verbs": list(SUBRESOURCE_VERBS[subresource]),
                }
                for subresource in kind.subresources
            )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _aggregated_discovery(self, *, core_group: bool, version: str) -> dict[str, Any]:
        """``apidiscovery.k8s.io`` APIGroupDiscoveryList: every group, version and resource at once."""
        groups = {"": ["v1"]} if core_group else self._groups()
        items = []
        for group, versions in groups.items():
            entries = []
            for group_version in versions:
                resources = []
                for kind in self._kinds_of(group, group_version):
                    response_kind = {"group": kind.group, "version": kind.version, "kind": kind.kind}
                    resource: dict[str, Any] = {
                        "resource": kind.plural,
                        "responseKind": response_kind,
                        "scope": "Namespaced" if kind.namespaced else "Cluster",
                        "singularResource": kind.singular,
                        "verbs": list(VERBS),
                    }
                    if kind.short_names:
                        resource["shortNames"] = list(kind.short_names)
                    if kind.categories:
                        resource["categories"] = list(kind.categories)
                    if kind.subresources:
                        resource["subresources"] = [
                            {
                                "subresource": subresource,
                                "responseKind": response_kind,
                                "verbs": list(SUBRESOURCE_VERBS[subresource]),
                            }
                            for subresource in kind.subresources
                        ]
                    resources.append(resource)
                entries.append({"version": group_version, "resources": resources, "freshness": "Current"})
            metadata: dict[str, Any] = {"creationTimestamp": None}
            if group:
                metadata["name"] = group
            items.append({"metadata": metadata, "versions": entries})
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {},
            "items": items,
        }

    # -- reads ---------------------------------------------------------------------------------

    def _as_table(
        self, request: rendering.Request, kind: Kind, objects: list[dict[str, Any]], meta: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The Table of a GET whose Accept header asks for one first (None: answer the objects).

        Only kinds with printer columns (the custom resources) are printed by the server here."""
        table_version = wanted_table_version(request.headers.get("Accept", ""))
        if table_version is None or kind.printer_columns is None or request.subresource is not None:
            return None
        include_object = request.params.get("includeObject") or "Metadata"
        if include_object not in {"None", "Metadata", "Object"}:
            raise _api_error(
                400,
                "BadRequest",
                f"includeObject: unsupported value {include_object!r}: allowed None, Metadata, Object",
            )
        return to_table(
            list(kind.printer_columns),
            objects,
            resource_version=str(meta.get("resourceVersion", "")),
            include_object=include_object,
            table_version=table_version,
        )

    def _key(self, kind: Kind, namespace: str, name: str) -> tuple[str, str, str, str, str]:
        return (kind.group, kind.version, kind.plural, namespace if kind.namespaced else "", name)

    def _get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        obj = self._store.get(self._key(kind, namespace, name))
        if obj is None:
            raise _api_error(
                404,
                "NotFound",
                f'{kind.plural}.{kind.group} "{name}" not found' if kind.group else f'{kind.plural} "{name}" not found',
                {"name": name, "group": kind.group, "kind": kind.plural},
            )
        return obj

    def _selected(self, request: rendering.Request, kind: Kind, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        if kind.namespaced and request.namespace and meta.get("namespace") != request.namespace:
            return False
        labels = request.params.get("labelSelector")
        if labels and not label_selector_matches(labels, meta.get("labels") or {}):
            return False
        fields = request.params.get("fieldSelector")
        return not (fields and not field_selector_matches(fields, obj))

    def _list(self, request: rendering.Request, kind: Kind) -> dict[str, Any]:
        prefix = (kind.group, kind.version, kind.plural)
        revision, after = str(self._revision), None
        token = request.params.get("continue")
        if token:
            try:
                revision, after = json.loads(base64.urlsafe_b64decode(token))
                after = tuple(after)
            except ValueError as exc:
                raise _api_error(400, "BadRequest", f"invalid continue token {token!r}") from exc
        try:
            limit = int(request.params.get("limit") or 0)
        except ValueError as exc:
            raise _api_error(400, "BadRequest", f"limit must be an integer, got {request.params['limit']!r}") from exc
        keys = sorted(key for key in self._store if key[:3] == prefix and (after is None or key > after))
        items: list[dict[str, Any]] = []
        metadata: dict[str, Any] = {"resourceVersion": revision}
        for index, key in enumerate(keys):
            if limit and len(items) == limit:
                remaining = json.dumps([revision, list(keys[index - 1])]).encode()
                metadata["continue"] = base64.urlsafe_b64encode(remaining).decode()
                break
            if self._selected(request, kind, self._store[key]):
                items.append(self._store[key])
        return {"apiVersion": kind.api_version, "kind": f"{kind.kind}List", "metadata": metadata, "items": items}

    async def _watch(self, request: rendering.Request, kind: Kind) -> aiohttp.web.StreamResponse:
        assert request._raw_request is not None and self._changed is not None
        encode = self._watch_encoder(request, kind)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        prefix = (kind.group, kind.version, kind.plural)
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        cursor = await self._watch_start(request, kind, response, encode)
        if cursor is None:
            await response.write_eof()
            return response
        drops = self._drops
        bookmarks = (
            _BookmarkClock(self.bookmark_seconds, loop.time(), deadline)
            if request.params.get("allowWatchBookmarks") == "true"
            else None
        )
        try:
            while True:
                if self._drops != drops:
                    break  # dropped: nothing more is sent, not even what was written meanwhile
                for revision, resource, event_type, obj in self._events_after(cursor):
                    cursor = revision
                    if resource == prefix and self._selected(request, kind, obj):
                        await response.write(encode(event_type, obj))
                moment = loop.time()
                if bookmarks is not None and not self._closing and bookmarks.due(moment):
                    await response.write(self._bookmark(kind, cursor))
                if self._closing or (deadline is not None and moment >= deadline):
                    break
                next_bookmark = bookmarks.next_time() if bookmarks is not None else None
                wake_at = [t for t in (deadline, next_bookmark) if t is not None]
                wait = max(0.0, min(wake_at) - moment) if wake_at else None
                async with self._changed:
                    with contextlib.suppress(TimeoutError):  # the loop's top sees what time it is
                        await asyncio.wait_for(
                            self._changed.wait_for(partial(self._woken, cursor, drops)), timeout=wait
                        )
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response

    async def _watch_start(
        self,
        request: rendering.Request,
        kind: Kind,
        response: aiohttp.web.StreamResponse,
        encode: Callable[[str, dict[str, Any]], bytes],
    ) -> int | None:
        """The revision a watch goes on from: without one asked, after the current state is sent as
        ADDED events; None when the asked one is compacted away (410 Gone is sent)."""
        since = request.params.get("resourceVersion", "")
        if since in {"", "0"}:
            prefix = (kind.group, kind.version, kind.plural)
            for key, obj in list(self._store.items()):
                if key[:3] == prefix and self._selected(request, kind, obj):
                    await response.write(encode("ADDED", obj))
            return self._revision
        cursor = int(since)
        if self._events and cursor < self._events[0][0] - 1:
            # As kube-apiserver answers a watch from a compacted version: a Status in an ERROR event.
            gone = {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {cursor} ({self._events[0][0] - 1})",
                    "reason": "Expired",
                    "code": 410,
                },
            }
            await response.write(json.dumps(gone).encode() + b"\n")
            return None
        return cursor

    @staticmethod
    def _bookmark(kind: Kind, revision: int) -> bytes:
        """A BOOKMARK event: the kind and the resource version every event up to which was sent."""
        obj = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": {"resourceVersion": str(revision)}}
        return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"

    def _watch_encoder(self, request: rendering.Request, kind: Kind) -> Callable[[str, dict[str, Any]], bytes]:
        """How each watch event is written: the object, or (asked for by ``kubectl get -w``) a
        Table of it, with the column definitions in the first event only, as kube-apiserver does."""
        table_version = wanted_table_version(request.headers.get("Accept", ""))
        columns = kind.printer_columns
        if table_version is None or columns is None:
            return lambda event_type, obj: json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
        include_object = request.params.get("includeObject") or "Metadata"
        headers_sent = False

        def encode(event_type: str, obj: dict[str, Any]) -> bytes:
            nonlocal headers_sent
            table = to_table(
                list(columns),
                [obj],
                resource_version=obj["metadata"].get("resourceVersion", ""),
                include_object=include_object,
                table_version=table_version,
                no_headers=headers_sent,
            )
            headers_sent = True
            return json.dumps({"type": event_type, "object": table}).encode() + b"\n"

        return encode

    def _woken(self, cursor: int, drops: int) -> bool:
        return self._revision > cursor or self._closing or self._drops != drops

    def _events_after(self, revision: int) -> Iterable[tuple[int, tuple[str, str, str], str, dict[str, Any]]]:
        # Events are appended in revision order: bisect to the first newer one.
        low, high = 0, len(self._events)
        while low < high:
            middle = (low + high) // 2
            if self._events[middle][0] <= revision:
                low = middle + 1
            else:
                high = middle
        return self._events[low:]

    # Stored objects are never changed in place: every write builds a new object (the store, the
    # version history and the watch events share it), and answers are serialized at once.

    # -- writes --------------------------------------------------------------------------------

    def _stamp_new(self, obj: dict[str, Any]) -> None:
        self._revision += 1
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["resourceVersion"] = str(self._revision)
        meta["generation"] = 1

    async def _record(
        self, kind: Kind, key: tuple[str, str, str, str, str], event_type: str, obj: dict[str, Any]
    ) -> None:
        assert self._changed is not None
        if event_type != "ADDED":
            self._revision += 1
            obj["metadata"]["resourceVersion"] = str(self._revision)
        if event_type == "DELETED":
            self._store.pop(key, None)
            if key[:3] == ("", "v1", "pods"):  # the kubelet removes a deleted pod's logs
                uid = obj["metadata"]["uid"]
                self._logs = {log: text for log, text in self._logs.items() if log[0] != uid}
        else:
            self._store[key] = obj
        self._remember(key, event_type, obj)
        async with self._changed:
            self._changed.notify_all()

    def _remember(self, key: tuple[str, str, str, str, str], event_type: str, obj: dict[str, Any]) -> None:
        """Keep the write as a watch event (and a version, with an unbounded history)."""
        self._events.append((self._revision, key[:3], event_type, obj))
        if self.event_window is None:
            self._versions.setdefault(key, []).append(obj)
        elif len(self._events) > 2 * self.event_window:  # compacted in batches: amortised O(1)
            del self._events[: -self.event_window]

    def _validated(self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        validator = self._validators.get((kind.group, kind.version, kind.plural))
        if validator is None:
            return obj
        changed = frozenset(part for part in set(obj) | set(old or {}) if old is None or obj.get(part) != old.get(part))
        from tensorone.errors import ValidationFailed

        try:
            return validator(obj, old, changed)
        except ValidationFailed as exc:
            name = obj.get("metadata", {}).get("name", "")
            causes = [{"reason": "FieldValueInvalid", "field": e.field, "message": e.reason} for e in exc.errors]
            raise _api_error(
                422,
                "Invalid",
                f'{kind.kind}.{kind.group} "{name}" is invalid: {exc}',
                {"name": name, "group": kind.group, "kind": kind.kind, "causes": causes},
            ) from exc

    async def _create(self, request: rendering.Request, kind: Kind, namespace: str) -> dict[str, Any]:
        body = request.data
        if not isinstance(body, dict):
            raise _api_error(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise _api_error(
                    400, "BadRequest", "the namespace of the object does not match the namespace on the request"
                )
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _api_error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        if (obj["apiVersion"], obj["kind"]) != (kind.api_version, kind.kind):
            raise _api_error(
                400, "BadRequest", f"expected {kind.api_version} {kind.kind}, got {obj['apiVersion']} {obj['kind']}"
            )
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            meta.pop(server_field, None)
        if kind.status_subresource and kind.group not in {"", "apiextensions.k8s.io"}:
            obj.pop("status", None)  # the status of a new custom object is ignored
        key = self._key(kind, meta.get("namespace", ""), meta["name"])
        if key in self._store:
            raise _api_error(
                409,
                "AlreadyExists",
                f'{kind.plural}.{kind.group} "{meta["name"]}" already exists',
                {"name": meta["name"], "group": kind.group, "kind": kind.plural},
            )
        for mutate in self.mutators.get((kind.group, kind.version, kind.plural), ()):
            mutate(obj)
        obj = self._validated(kind, obj, None)
        self._stamp_new(obj)
        await self._record(kind, key, "ADDED", obj)
        return obj

    def _patched(self, request: rendering.Request, current: dict[str, Any]) -> dict[str, Any]:
        method = _method(request)
        body = request.data
        if method == "PUT":
            if not isinstance(body, dict):
                raise _api_error(400, "BadRequest", "the request body must be a JSON object")
            return copy.deepcopy(body)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise _api_error(400, "BadRequest", "a JSON patch is a list of operations")
            return json_patch(current, body)
        if not isinstance(body, dict):
            raise _api_error(400, "BadRequest", "a merge patch is a JSON object")
        # merge-patch, strategic-merge-patch and apply-patch: merge semantics (exact for the
        # maps and whole-list replacements this project writes).
        return merge_patch(current, body)

    async def _write(self, request: rendering.Request, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        key = self._key(kind, namespace, name)
        current = self._get(kind, namespace, name)
        wanted = self._patched(request, current)
        if not isinstance(wanted, dict):
            raise _api_error(422, "Invalid", "the patched object is not a JSON object")
        asked_version = (wanted.get("metadata") or {}).get("resourceVersion")
        if asked_version and asked_version != current["metadata"]["resourceVersion"]:
            raise _api_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {kind.plural}.{kind.group} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        if request.subresource == "status":
            # Writes to /status change the status and nothing else.
            new = copy.deepcopy(current)
            if wanted.get("status") is not None:
                new["status"] = wanted["status"]
            else:
                new.pop("status", None)
        else:
            # Writes to the object ignore the status when the kind has a status subresource.
            new = copy.deepcopy(wanted)
            if kind.status_subresource:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for server_field in SERVER_MANAGED_METADATA:
                if server_field in current["metadata"]:
                    meta[server_field] = current["metadata"][server_field]
                else:
                    meta.pop(server_field, None)
        spec_changed = _content(new) != _content(current)
        if spec_changed:
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if new == current:
            return current  # a no-op write changes nothing, not even the version
        new = self._validated(kind, new, current)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            await self._record(kind, key, "DELETED", new)
            await self._collect_garbage(new["metadata"]["uid"])
            return new
        await self._record(kind, key, "MODIFIED", new)
        return new

    async def _delete(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        key = self._key(kind, namespace, name)
        current = self._get(kind, namespace, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            marked = copy.deepcopy(current)
            marked["metadata"]["deletionTimestamp"] = _now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            await self._record(kind, key, "MODIFIED", marked)
            return marked
        gone = copy.deepcopy(current)
        await self._record(kind, key, "DELETED", gone)
        await self._collect_garbage(gone["metadata"]["uid"])
        return gone

    async def _collect_garbage(self, owner_uid: str) -> None:
        """The garbage collector's background cascade: delete what the deleted object owned."""
        for key, obj in list(self._store.items()):
            owners = obj.get("metadata", {}).get("ownerReferences") or []
            if any(owner.get("uid") == owner_uid for owner in owners) and key in self._store:
                kind = self._kinds[key[:3]]
                await self._delete(kind, key[3], key[4])
