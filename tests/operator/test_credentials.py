"""The operator's credentials without the kubernetes client: the kubeconfig's current context
(token, basic auth, client certificate, CA), the service account in a pod, and the exec-plugin
kubeconfig that still needs the client (and only then is it imported)."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tensorone_operator import credentials

from tensorone.errors import ConfigurationError


def kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "here",
                "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


def static_credentials() -> credentials.Credentials:
    """The environment's credentials, which must not need a plugin."""
    found = credentials.from_environment()
    assert found is not None, "the credentials need the kubernetes client"
    return found


@pytest.fixture
def pem(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made by openssl."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t1"]
    subprocess.run(
        [*command, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(autouse=True)
def outside_a_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(credentials, "SERVICE_ACCOUNT", tmp_path / "no-service-account")


def test_a_token_and_an_inline_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pem: tuple[Path, Path]) -> None:
    ca = base64.b64encode(pem[0].read_bytes()).decode()
    path = kubeconfig(
        tmp_path / "config", {"server": "https://k8s:6443", "certificate-authority-data": ca}, {"token": "abc"}
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    found = static_credentials()
    assert (found.server, found.authorization, found.token_file) == ("https://k8s:6443", "Bearer abc", None)
    assert isinstance(found.ssl_context, ssl.SSLContext) and found.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert found.ssl_context.get_ca_certs()[0]["subject"] == ((("commonName", "t1"),),)
    assert not credentials.needs_kubernetes_client()


def test_a_client_certificate_by_path_relative_to_the_kubeconfig_and_basic_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pem: tuple[Path, Path]
) -> None:
    user = {"client-certificate": "cert.pem", "client-key": "key.pem", "username": "ada", "password": "pw"}
    path = kubeconfig(tmp_path / "config", {"server": "https://k8s", "insecure-skip-tls-verify": True}, user)
    monkeypatch.setenv("KUBECONFIG", str(path))
    found = static_credentials()
    assert found.authorization == "Basic " + base64.b64encode(b"ada:pw").decode()
    assert isinstance(found.ssl_context, ssl.SSLContext) and found.ssl_context.verify_mode == ssl.CERT_NONE


def test_inline_client_certificate_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pem: tuple[Path, Path]
) -> None:
    cert, key = (base64.b64encode(p.read_bytes()).decode() for p in pem)
    user = {"client-certificate-data": cert, "client-key-data": key}
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", {"server": "https://k8s"}, user)))
    assert isinstance(static_credentials().ssl_context, ssl.SSLContext)
    assert not credentials.needs_kubernetes_client()


def test_a_plain_http_server_and_the_first_file_that_sets_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(tmp_path / "first", {"server": "http://127.0.0.1:8001"}, {"token": "one"})
    second = kubeconfig(tmp_path / "second", {"server": "http://elsewhere"}, {"token": "two"})
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    found = static_credentials()
    assert (found.server, found.ssl_context, found.authorization) == ("http://127.0.0.1:8001", False, "Bearer one")


def test_in_a_pod_the_service_account_token_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("projected")
    monkeypatch.setattr(credentials, "SERVICE_ACCOUNT", account)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "never-read"))
    found = static_credentials()
    assert (found.server, found.token_file, found.authorization) == (
        "https://kubernetes.default.svc",
        account / "token",
        None,
    )
    assert not credentials.needs_kubernetes_client()


def test_without_any_credentials_the_error_names_where_they_were_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigurationError) as missing:
        credentials.from_environment()
    assert missing.value.field == "KUBECONFIG" and "service account" in missing.value.message
    no_context = tmp_path / "config"
    no_context.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(no_context))
    with pytest.raises(ConfigurationError, match="no current context"):
        credentials.from_environment()


def operator_imports_the_kubernetes_client(config: Path) -> bool:
    """Whether ``python -m tensorone_operator``'s start-up, with this kubeconfig, loads the client."""
    probe = (
        "import runpy, sys; sys.argv = ['x', '--help']\n"
        "try:\n    runpy.run_module('tensorone_operator', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sys.modules.get('kubernetes') is not None)"
    )
    env = {"KUBECONFIG": str(config), "PATH": "/usr/bin:/bin", "HOME": str(config.parent)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1] == "True"


def test_the_operator_process_loads_the_kubernetes_client_only_for_an_exec_plugin(tmp_path: Path) -> None:
    static = kubeconfig(tmp_path / "static", {"server": "http://127.0.0.1:1"}, {"token": "abc"})
    assert not operator_imports_the_kubernetes_client(static)
    plugin = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws", "args": ["eks"]}}
    execs = kubeconfig(tmp_path / "exec", {"server": "https://eks"}, plugin)
    assert operator_imports_the_kubernetes_client(execs)


def test_an_exec_plugin_user_has_no_static_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws", "args": ["eks"]}}
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "exec", {"server": "https://eks"}, plugin)))
    assert credentials.from_environment() is None and credentials.needs_kubernetes_client()


def test_an_operator_without_credentials_stops_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "config"
    broken.write_text("apiVersion: v1\nkind: Config\n")
    env = {"KUBECONFIG": str(broken), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "tensorone_operator"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    assert "KUBECONFIG: the kubeconfig" in result.stderr and "no current context" in result.stderr
