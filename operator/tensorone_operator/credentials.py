"""Where the operator finds its Kubernetes credentials, and whether it needs the kubernetes client.

In a pod, the operator uses its service account (a projected token the kubelet rotates). Outside a
cluster it reads the kubeconfig's current context: a bearer token, a client certificate or basic
auth, as kopf's own kubeconfig login does. Only a kubeconfig user whose credentials come from an
exec plugin or an auth provider without a stored token needs the kubernetes client library, which
runs the plugin; that is decided before anything imports it, because importing it costs the
process about 47 MB (kopf imports it whenever it can, to recognise its model objects, which this
operator never hands to kopf). The operator image does not install it at all.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tensorone.errors import ConfigurationError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"


@dataclass(frozen=True)
class Credentials:
    """An API server and how to authenticate to it."""

    server: str
    ssl_context: ssl.SSLContext | bool
    authorization: str | None = None  # a static Authorization header
    token_file: Path | None = None  # a bearer token file read again when it changes (in a pod)


def kubeconfig_paths() -> list[Path]:
    """The kubeconfig files, as kubectl finds them ($KUBECONFIG, else ~/.kube/config if it exists)."""
    listed = os.environ.get("KUBECONFIG", "")
    paths = [Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()]
    default = Path("~/.kube/config").expanduser()
    return paths or ([default] if default.exists() else [])


def current_context() -> tuple[dict[str, Any], dict[str, Any], Path] | None:
    """The current context's cluster and user entries, and the file that names the cluster (for
    relative paths); None without a kubeconfig. The first file that sets a value wins, as kubectl."""
    paths = kubeconfig_paths()
    if not paths:
        return None
    chosen: str | None = None
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, tuple[dict[str, Any], Path]] = {}
    users: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in paths:
        config = yaml.safe_load(path.read_text()) or {}
        chosen = chosen or config.get("current-context")
        for item in config.get("contexts") or []:
            contexts.setdefault(item["name"], item.get("context") or {})
        for item in config.get("clusters") or []:
            clusters.setdefault(item["name"], (item.get("cluster") or {}, path))
        for item in config.get("users") or []:
            users.setdefault(item["name"], (item.get("user") or {}, path))
    if not chosen or chosen not in contexts:
        raise ConfigurationError(
            f"the kubeconfig ({os.pathsep.join(map(str, paths))}) has no current context", field="KUBECONFIG"
        )
    context = contexts[chosen]
    cluster, cluster_file = clusters.get(context.get("cluster", ""), ({}, paths[0]))
    user, _ = users.get(context.get("user", ""), ({}, paths[0]))
    return cluster, user, cluster_file


def needs_kubernetes_client(*, quiet: bool = False) -> bool:
    """Whether the credentials can only be had through the kubernetes client (an exec plugin, or
    an auth provider without a stored token); never in a pod with a service account. ``quiet``:
    a kubeconfig that cannot be read counts as no (:func:`from_environment` says what is wrong)."""
    if (SERVICE_ACCOUNT / "token").exists():
        return False
    try:
        found = current_context()
    except (OSError, yaml.YAMLError, ConfigurationError):
        if quiet:
            return False
        raise
    return found is not None and _runs_a_plugin(found[1])


def _runs_a_plugin(user: dict[str, Any]) -> bool:
    """Whether a kubeconfig user's credentials come only from an exec plugin or an auth provider."""
    static = user.get("token") or user.get("client-certificate") or user.get("client-certificate-data")
    stored = (user.get("auth-provider") or {}).get("config", {}).get("access-token")
    return not (static or stored or user.get("username")) and bool(user.get("exec") or user.get("auth-provider"))


def from_environment() -> Credentials | None:
    """The pod's service account, else the kubeconfig's current context: its static credentials,
    or None when its user's come from a plugin (which the kubernetes client runs)."""
    token = SERVICE_ACCOUNT / "token"
    if token.exists():
        ca = SERVICE_ACCOUNT / "ca.crt"
        context = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)
        return Credentials(IN_CLUSTER_SERVER, context, token_file=token)
    found = current_context()
    if found is None:
        raise ConfigurationError(
            "no Kubernetes credentials: not in a pod with a service account, and no kubeconfig "
            "($KUBECONFIG or ~/.kube/config)",
            field="KUBECONFIG",
        )
    cluster, user, cluster_file = found
    if _runs_a_plugin(user):
        return None
    server = str(cluster.get("server") or "")
    if not server:
        raise ConfigurationError("the kubeconfig's current cluster has no server", field="KUBECONFIG")
    return Credentials(server, _ssl_context(server, cluster, user, cluster_file.parent), _authorization(user))


def _authorization(user: dict[str, Any]) -> str | None:
    token = user.get("token") or (user.get("auth-provider") or {}).get("config", {}).get("access-token")
    if token:
        return f"Bearer {token}"
    if user.get("username"):
        pair = f"{user['username']}:{user.get('password') or ''}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"
    return None


def _ssl_context(server: str, cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext | bool:
    if not server.startswith("https"):
        return False
    ca_file, ca_data = cluster.get("certificate-authority"), cluster.get("certificate-authority-data")
    context = ssl.create_default_context(
        cafile=str(base / ca_file) if ca_file else None,
        cadata=base64.b64decode(ca_data).decode() if ca_data else None,
    )
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    certificate = _pem_file(user, "client-certificate", base)
    if certificate is not None:
        context.load_cert_chain(certificate, _pem_file(user, "client-key", base))
    return context


def _pem_file(user: dict[str, Any], key: str, base: Path) -> str | None:
    """A kubeconfig's certificate or key as a file path (``ssl`` loads chains from files only): the
    path it names, or its inline data written to a private temporary file."""
    if user.get(key):
        return str(base / user[key])
    data = user.get(f"{key}-data")
    if not data:
        return None
    handle, path = tempfile.mkstemp(prefix="tensorone-kubeconfig-", suffix=".pem")
    with os.fdopen(handle, "wb") as file:
        file.write(base64.b64decode(data))
    return path
