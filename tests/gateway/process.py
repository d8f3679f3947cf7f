"""The gateway as its own process (``python -m tensorone.gateway``, uvicorn) in front of a Kubernetes
API: what the curl tests, the SDK's HTTP tests and bench/gateway.py talk to."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.kube.loopback import LOOPBACK, free_port
from tests.kube.polling import wait_for

# The emulator's credentials for the gateway tests: a token it accepts for everything, one that
# may only read, one with what the namespace's edit role gives (TrainingJobs, Datasets and Events;
# nothing on Nodes), and the empty token of the operator and the test's own client (no header).
ADMIN_TOKEN = "admin-token"
READER_TOKEN = "reader-token"
EDITOR_TOKEN = "editor-token"
READ_ONLY = {("GET", plural) for plural in ("trainingjobs", "datasets", "nodes", "events")}
EDIT = {
    (method, plural) for method in ("GET", "POST", "PATCH", "PUT", "DELETE") for plural in ("trainingjobs", "datasets")
} | {("GET", "events")}
TOKENS: dict[str, set[tuple[str, str]] | None] = {
    "": None,
    ADMIN_TOKEN: None,
    READER_TOKEN: READ_ONLY,
    EDITOR_TOKEN: EDIT,
}


class GatewayProcess:
    """``python -m tensorone.gateway`` on a free loopback port, for the API server at ``api_server``."""

    def __init__(self, api_server: str, *, log: Path, operator_config: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        command = [sys.executable, "-m", "tensorone.gateway", "--api-server", api_server]
        command += ["--host", LOOPBACK, "--port", str(self.port)]
        command += ["--operator-config", str(operator_config or log.with_name("no-operator-config.yaml"))]
        self._command = command
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GatewayProcess:
        self._process = subprocess.Popen(self._command, stdout=self._log.open("wb"), stderr=subprocess.STDOUT)
        wait_for(self._healthy, "the gateway's /healthz", timeout=60, explain=self._log.read_text)
        return self

    def _healthy(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"the gateway exited with {self._process.returncode}:\n{self._log.read_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
