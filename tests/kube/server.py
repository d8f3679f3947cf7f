"""Run the emulator on a local port in its own thread, and talk to it over HTTP.

``EmulatorServer`` is the fixture API for tests, bench/ and the end-to-end fixture::

    with EmulatorServer() as server:
        server.write_kubeconfig(path)          # for kopf's login and the operator's client
        server.api.create(manifest)            # through HTTP, so watches fire
        server.api.patch_status(...)           # as the Training Operator would

The emulator runs its own event loop in a daemon thread, so the code under test (kopf in another
thread, or a subprocess) never shares a loop with it.
"""

from __future__ import annotations

import asyncio
import builtins
import http.client
import json
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import kmock
import yaml

from tests.kube.emulator import FaithfulEmulator
from tests.kube.threads import ServiceThread


class ApiStatusError(Exception):
    """A non-2xx answer of the API: the HTTP status and the Status object."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('reason')}: {body.get('message')}")
        self.status = status
        self.body = body


def _plural_path(api_version: str, plural: str, namespace: str | None) -> str:
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{root}/namespaces/{namespace}/{plural}" if namespace else f"{root}/{plural}"


class ApiClient:
    """A small synchronous client of the emulator's HTTP API (any API server, in fact)."""

    def __init__(self, base_url: str, emulator: FaithfulEmulator) -> None:
        self.base_url = base_url.rstrip("/")
        self._emulator = emulator
        self._local = threading.local()

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """One HTTP request; JSON in and out; ApiStatusError on a non-2xx status.

        Each thread keeps one keep-alive connection (a client's connection pool, in short)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        result = json.loads(payload or b"null")
        if response.status >= 400:
            raise ApiStatusError(response.status, result if isinstance(result, dict) else {})
        return result

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            parsed = urllib.parse.urlsplit(self.base_url)
            connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
            self._local.connection = connection
        return connection

    def _object_path(self, api_version: str, kind: str, namespace: str | None, name: str) -> str:
        plural = self._emulator.kind_of(api_version, kind).plural
        return f"{_plural_path(api_version, plural, namespace)}/{urllib.parse.quote(name)}"

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST an object to its collection (namespace from the object, default ``default``)."""
        kind = self._emulator.kind_of(obj["apiVersion"], obj["kind"])
        namespace = (obj.get("metadata") or {}).get("namespace", "default") if kind.namespaced else None
        result: dict[str, Any] = self.request("POST", _plural_path(obj["apiVersion"], kind.plural, namespace), obj)
        return result

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = "default") -> dict[str, Any]:
        """GET one object (ApiStatusError with status 404 when absent)."""
        ns = namespace if self._emulator.kind_of(api_version, kind).namespaced else None
        result: dict[str, Any] = self.request("GET", self._object_path(api_version, kind, ns, name))
        return result

    def find(self, api_version: str, kind: str, name: str, namespace: str | None = "default") -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.get(api_version, kind, name, namespace)
        except ApiStatusError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """LIST objects (all namespaces when namespace is None)."""
        plural = self._emulator.kind_of(api_version, kind).plural
        path = _plural_path(api_version, plural, namespace)
        if label_selector:
            path += "?" + urllib.parse.urlencode({"labelSelector": label_selector})
        items: list[dict[str, Any]] = self.request("GET", path)["items"]
        return items

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any] | builtins.list[dict[str, Any]],  # builtins: a method of this class is named list
        namespace: str | None = "default",
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A merge patch (a dict) or a JSON patch (a list), on the object or its status."""
        ns = namespace if self._emulator.kind_of(api_version, kind).namespaced else None
        path = self._object_path(api_version, kind, ns, name) + (f"/{subresource}" if subresource else "")
        content_type = "application/json-patch+json" if isinstance(patch, list) else "application/merge-patch+json"
        result: dict[str, Any] = self.request("PATCH", path, patch, content_type)
        return result

    def patch_status(
        self, api_version: str, kind: str, name: str, status: dict[str, Any], namespace: str = "default"
    ) -> dict[str, Any]:
        """Merge-patch the status subresource, as a controller does."""
        return self.patch(api_version, kind, name, {"status": status}, namespace, subresource="status")

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = "default") -> dict[str, Any]:
        """DELETE one object."""
        ns = namespace if self._emulator.kind_of(api_version, kind).namespaced else None
        result: dict[str, Any] = self.request("DELETE", self._object_path(api_version, kind, ns, name))
        return result


def kubeconfig_for(url: str) -> dict[str, Any]:
    """A kubeconfig pointing at ``url`` (the emulator, or a pass-through to it), without credentials."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
        "current-context": "emulator",
    }


class EmulatorServer(ServiceThread):
    """The emulator served on 127.0.0.1 (a free port) from a background thread."""

    thread_name = "kube-emulator"

    def __init__(self, emulator: FaithfulEmulator | None = None) -> None:
        super().__init__()
        self.emulator = emulator if emulator is not None else FaithfulEmulator()  # an empty emulator is falsy
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.url = ""
        self._api: ApiClient | None = None

    @property
    def api(self) -> ApiClient:
        """A client of this server's HTTP API (one per server, keep-alive connections)."""
        if self._api is None:
            self._api = ApiClient(self.url, self.emulator)
        return self._api

    def _serve(self) -> None:
        asyncio.run(self._serve_http())

    async def _serve_http(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()
            await self.emulator.close_watches()

    def _request_stop(self) -> None:
        """Open watches are closed, then the server and the loop end."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def drop_watches(self) -> None:
        """End every open watch stream now (see ``FaithfulEmulator.drop_watches``); returns once
        no stream sends anything more."""
        assert self._loop is not None, "the server is not running"
        asyncio.run_coroutine_threadsafe(self.emulator.drop_watches(), self._loop).result(timeout=30)

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig pointing at this server, without credentials (the emulator needs none)."""
        return kubeconfig_for(self.url)

    def write_kubeconfig(self, path: Path) -> Path:
        """Write :meth:`kubeconfig` to ``path`` (set KUBECONFIG to it for kopf and the operator)."""
        path.write_text(yaml.safe_dump(self.kubeconfig()))
        return path
