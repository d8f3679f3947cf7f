"""The operator as deployed: ``python -m tensorone_operator`` in a process of its own, pointed at an
emulator by a kubeconfig, configured by a file, with its liveness endpoint on a free local port.

    with EmulatorServer() as cluster, OperatorProcess(cluster.url, workdir, {"progressPollSeconds": 1}) as op:
        ...   # op.pid, op.peak_rss_mb(), op.liveness, op.log()

Ready once its liveness endpoint answers (kopf answers once its watches are being established).
Stopped with SIGTERM, as the kubelet stops it. The suites that must see the operator from outside
(memory, the event loop's responsiveness) and bench/ use it. ``url`` is the API server's: the
emulator's, or a pass-through's in front of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.factories import REPO
from tests.kube.loopback import LOOPBACK, free_port
from tests.kube.polling import wait_for
from tests.kube.server import kubeconfig_for

STOP_SECONDS = 60.0


class OperatorProcess:
    """``python -m tensorone_operator`` against the API server at ``url``, configured by ``config``
    (OperatorConfig's wire form); its files and its log (stderr) go to ``workdir``."""

    def __init__(
        self,
        url: str,
        workdir: Path,
        config: dict[str, Any] | None = None,
        *,
        log_level: str = "INFO",
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "operator-config.yaml"
        config_path.write_text(yaml.safe_dump(config or {}))
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(url)))
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "TENSORONE_OPERATOR_CONFIG": str(config_path),
            "TENSORONE_LOG_LEVEL": log_level,
            "TENSORONE_LOG_FORMAT": "text",
            "PYTHONPATH": f"{REPO}:{REPO / 'operator'}",
        }
        self.log_path = workdir / "operator.log"
        self.liveness = f"http://{LOOPBACK}:{free_port()}/healthz"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "the operator was not started"
        return self.process.pid

    def __enter__(self) -> OperatorProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tensorone_operator", "--liveness", self.liveness, "--metrics-port", "0"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_for(self._answers, "the operator's liveness endpoint", explain=self.log)
        return self

    def __exit__(self, *_: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.liveness, timeout=2):
                return True
        except OSError:
            return False

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for process {self.pid}")

    def log(self) -> str:
        """The end of the operator's log (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
