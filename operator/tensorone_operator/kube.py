"""The operator's Kubernetes API client: the only place where the operator's own code does I/O.

A small asyncio client on aiohttp (kopf's own HTTP stack), authenticated the way kopf logs in:
in-cluster service account first, then the kubeconfig (``credentials``). The
calls are few and plain (get, list, create, merge patch, delete), so a thin client keeps the
event loop free and the reconcile fast, where the synchronous kubernetes client would need a
thread per call.

An in-cluster service-account token is a projected token that the kubelet rotates (every hour, and
an old one expires): the client re-reads the token file whenever it has changed (one ``stat`` per
call), rather than keeping the token it started with.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp

from tensorone.errors import ConfigurationError
from tensorone_operator import credentials


class ApiError(Exception):
    """A non-2xx answer: the HTTP status, the Status reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def resource_path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """``/api/v1/namespaces/ns/configmaps/name`` and the like."""
    root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    path = f"{root}/namespaces/{urllib.parse.quote(namespace)}/{plural}" if namespace else f"{root}/{plural}"
    return f"{path}/{urllib.parse.quote(name)}" if name else path


class BearerTokenFile:
    """A bearer token read from a file, read again whenever the file changes (a rotated token)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._header = ""

    def header(self) -> str:
        """The Authorization header with the file's current token."""
        # The kubelet swaps a projected token in by a symlink: stat follows it to the new file.
        stat = os.stat(self.path)
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            self._header = f"Bearer {self.path.read_text().strip()}"
            self._seen = seen
        return self._header


class KubeApi:
    """Async JSON calls to the API server. ``headers`` go with every call; ``token_file``, when
    given, supplies the Authorization header, read again whenever the file changes."""

    def __init__(
        self,
        server: str,
        headers: dict[str, str],
        ssl_context: ssl.SSLContext | bool,
        *,
        token_file: Path | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._headers = headers
        self._ssl = ssl_context
        self._token = BearerTokenFile(token_file) if token_file is not None else None
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls) -> KubeApi:
        """Credentials as kopf finds them: the in-cluster service account, else the kubeconfig
        (``credentials``); a kubeconfig whose user runs an exec plugin goes through the kubernetes
        client, which runs it."""
        found = credentials.from_environment()
        if found is None:
            return cls._through_kubernetes_client()
        headers = {"Accept": "application/json"}
        if found.authorization is not None:
            headers["Authorization"] = found.authorization
        return cls(found.server, headers, found.ssl_context, token_file=found.token_file)

    @classmethod
    def _through_kubernetes_client(cls) -> KubeApi:
        """The kubeconfig read by the kubernetes client: for users whose token an exec plugin or
        an auth provider makes (the plugin runs once, at start)."""
        try:
            import kubernetes.client
            import kubernetes.config
        except ImportError as exc:
            raise ConfigurationError(
                "the kubeconfig's user gets its credentials from an exec plugin or an auth provider, which needs "
                "the kubernetes client library (pip install kubernetes); or use a token or a client certificate",
                field="KUBECONFIG",
            ) from exc
        kubernetes.config.load_kube_config()
        configuration = kubernetes.client.Configuration.get_default_copy()
        headers = {"Accept": "application/json"}
        token = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
            "authorization"
        )
        if token:
            headers["Authorization"] = token if " " in token else f"Bearer {token}"
        ssl_context: ssl.SSLContext | bool = False
        if configuration.host.startswith("https"):
            context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
            if not configuration.verify_ssl:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if configuration.cert_file:
                context.load_cert_chain(configuration.cert_file, configuration.key_file)
            ssl_context = context
        return cls(configuration.host, headers, ssl_context)

    async def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64)
            self._session = aiohttp.ClientSession(headers=self._headers, connector=connector)
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json", params: Any = None
    ) -> Any:
        """One call; ApiError on a non-2xx status."""
        session = await self._session_for_loop()
        headers = {"Content-Type": content_type}
        if self._token is not None:
            headers["Authorization"] = self._token.header()
        async with session.request(
            method,
            self.server + path,
            json=body,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=60),
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                data = data if isinstance(data, dict) else {}
                raise ApiError(response.status, str(data.get("reason", "")), str(data.get("message", "")))
            return data

    async def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            result: dict[str, Any] = await self.request("GET", resource_path(api_version, plural, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def list(
        self, api_version: str, plural: str, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """The objects of a collection (all namespaces when namespace is None)."""
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", resource_path(api_version, plural, namespace), params=params)
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def create(
        self, api_version: str, plural: str, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        """POST an object; ApiError 409 when the name exists."""
        result: dict[str, Any] = await self.request("POST", resource_path(api_version, plural, namespace), body)
        return result

    async def merge_patch(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch of the object or one of its subresources (``status``)."""
        path = resource_path(api_version, plural, namespace, name) + (f"/{subresource}" if subresource else "")
        result: dict[str, Any] = await self.request("PATCH", path, patch, content_type="application/merge-patch+json")
        return result

    async def delete(self, api_version: str, plural: str, namespace: str | None, name: str) -> bool:
        """Delete with background propagation (dependents are garbage-collected); False when absent."""
        try:
            await self.request(
                "DELETE",
                resource_path(api_version, plural, namespace, name),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True
