"""Kubeflow Trainer v2.2's status server (feature gate ``TrainJobStatus``), played on the loopback.

What the controller manager does (pkg/statusserver and the TrainJobStatus plugin of v2.2):

- it serves HTTPS (the webhook's certificate) on port 10443 of its service, one route:
  ``POST /apis/trainer.kubeflow.org/v1alpha1/namespaces/NS/trainjobs/NAME/status`` with a JSON body
  ``{"trainerStatus": {...}}`` of at most 64 KiB;
- it takes ``Authorization: Bearer <token>`` only from a projected service-account token that
  verifies (signature, expiry) with the audience
  ``trainer.kubeflow.org/v1alpha1/namespaces/NS/trainjobs/NAME/status`` and whose
  ``kubernetes.io`` namespace is NS: 403 otherwise;
- it applies the body's trainerStatus to the TrainJob's status (server-side apply, field manager
  ``trainer-status``, forced: each post replaces the fields of the last), answering 422 when the
  API server refuses it (the CRD's bounds), 404 without the TrainJob, and 200 with the body taken;
- for each TrainJob it copies its CA certificate into the ConfigMap ``NAME-tls-config`` and gives
  the trainer containers ``KUBEFLOW_TRAINER_SERVER_URL``, ``KUBEFLOW_TRAINER_SERVER_CA_CERT`` and
  ``KUBEFLOW_TRAINER_SERVER_TOKEN`` with a projected volume (the token, audience as above, 3600 s;
  and ``ca.crt`` from that ConfigMap) mounted at /var/run/secrets/kubeflow/trainer.

Played here: the certificate authority is made for the test (``cryptography``), the server's
certificate names 127.0.0.1 (the URL given to the pods points there, as the JobSet's DNS names are
mapped to this machine), and tokens come from the node's ``TokenIssuer``. Posts taken and refused
are counted for the tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import ssl
import tempfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tensorone.api.trainer_status import CA_CERT_ENV, MOUNT_PATH, TOKEN_ENV, URL_ENV, status_path, token_audience
from tests.kube.kubeflow_trainer import TRAINER_API, owned_by_train_job
from tests.kube.loopback import LOOPBACK
from tests.kube.server import ApiClient, ApiStatusError
from tests.kube.tokens import TokenIssuer

MAX_BODY_BYTES = 1 << 16
TOKEN_VOLUME = "kubeflow-trainer-token"
TOKEN_EXPIRATION_SECONDS = 3600
TRAINER_STATUS_FIELDS = ("progressPercentage", "estimatedRemainingSeconds", "metrics", "lastUpdatedTime")
_ROUTE = re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/([^/]+)/trainjobs/([^/]+)/status$")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertificateAuthority:
    """A certificate authority for the test and a server certificate it signed for 127.0.0.1, as files."""

    def __init__(self, folder: Path) -> None:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("kubeflow-trainer test CA"))
            .issuer_name(_name("kubeflow-trainer test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("kubeflow-trainer-controller-manager")]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("kubeflow-trainer-controller-manager"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
        self.ca_file = folder / "ca.crt"
        self.ca_file.write_text(self.ca_pem)
        self.cert_file = folder / "tls.crt"
        self.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self.key_file = folder / "tls.key"
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


class TrainerStatusServer:
    """The status endpoint of Trainer v2.2's controller manager for the TrainJobs of ``api``."""

    def __init__(self, api: ApiClient, tokens: TokenIssuer, *, folder: Path | None = None) -> None:
        self.api = api
        self.tokens = tokens
        self._folder = tempfile.TemporaryDirectory(prefix="trainer-status-") if folder is None else None
        self.authority = CertificateAuthority(folder or Path(self._folder.name if self._folder else "."))
        self.taken = 0
        self.refused: list[tuple[int, str]] = []  # (HTTP status, why) of every post not taken
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.authority.cert_file, self.authority.key_file)
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="trainer-status-server", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"https://{LOOPBACK}:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        if self._folder is not None:
            self._folder.cleanup()

    # What the TrainJobStatus plugin adds to a TrainJob's pods ----------------------------------

    def tls_config_map(self, train_job: Mapping[str, Any]) -> dict[str, Any]:
        """The ConfigMap NAME-tls-config holding the CA certificate, owned by the TrainJob."""
        name = train_job["metadata"]["name"]
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{name}-tls-config",
                "namespace": train_job["metadata"]["namespace"],
                "ownerReferences": owned_by_train_job(train_job),
            },
            "data": {"ca.crt": self.authority.ca_pem},
        }

    def inject(self, train_job: Mapping[str, Any], pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
        """The environment, volume and mount the plugin puts on a trainer container and its pod."""
        namespace, name = train_job["metadata"]["namespace"], train_job["metadata"]["name"]
        env = {
            URL_ENV: self.base_url + status_path(namespace, name),
            CA_CERT_ENV: f"{MOUNT_PATH}/ca.crt",
            TOKEN_ENV: f"{MOUNT_PATH}/token",
        }
        container["env"] = [e for e in container.get("env") or [] if e["name"] not in env] + [
            {"name": key, "value": value} for key, value in env.items()
        ]
        container["volumeMounts"] = [
            *(container.get("volumeMounts") or []),
            {"name": TOKEN_VOLUME, "mountPath": MOUNT_PATH, "readOnly": True},
        ]
        sources = [
            {
                "serviceAccountToken": {
                    "audience": token_audience(namespace, name),
                    "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                    "path": "token",
                }
            },
            {"configMap": {"name": f"{name}-tls-config", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        ]
        pod_spec["volumes"] = [
            *(pod_spec.get("volumes") or []),
            {"name": TOKEN_VOLUME, "projected": {"sources": sources}},
        ]

    # The endpoint ----------------------------------------------------------------------------

    def _refuse(self, status: int, why: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.refused.append((status, why))
        return status, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": why, "code": status}

    def post(self, path: str, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """One POST: its HTTP status and answer."""
        route = _ROUTE.match(path)
        if route is None:
            return self._refuse(404, "Not found")
        namespace, name = route.groups()
        scheme, _, token = authorization.strip().partition(" ")
        claims = self.tokens.verify(token.strip(), audience=token_audience(namespace, name))
        if scheme.lower() != "bearer" or claims is None or claims["kubernetes.io"]["namespace"] != namespace:
            return self._refuse(403, "Forbidden")
        try:
            request = json.loads(body)
        except ValueError:
            return self._refuse(422, "Invalid payload")
        posted = request.get("trainerStatus") if isinstance(request, dict) else None
        if not isinstance(posted, dict):
            return 200, request if isinstance(request, dict) else {}
        # Forced apply by one field manager: the fields it no longer sets go.
        status = {field: posted.get(field) for field in TRAINER_STATUS_FIELDS}
        try:
            self.api.patch_status(TRAINER_API, "TrainJob", name, {"trainerStatus": status}, namespace)
        except ApiStatusError as error:
            if error.status == 404:
                return self._refuse(404, "Train job not found")
            return self._refuse(422, str(error.body.get("message") or error))
        with self._lock:
            self.taken += 1
        return 200, request

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._answer(*server._refuse(413, "request body too large"))
                    return
                self._answer(*server.post(self.path, self.headers.get("Authorization") or "", self.rfile.read(length)))

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
