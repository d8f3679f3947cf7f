"""The real kubectl, pointed at an ``EmulatorServer``: for the kubectl tests and the README's
captured output (``python -m tests.system.capture``).

kubectl is not a Python dependency; ``KUBECTL`` is None when it is not on PATH. Every run gets
its own kubeconfig, discovery cache and HOME under a work directory, so ~/.kube is never read or
written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.kube.server import EmulatorServer

KUBECTL = shutil.which("kubectl")


class KubectlFailed(RuntimeError):
    """kubectl exited with an error: the command and what it printed on stderr."""


class Kubectl:
    """Runs kubectl against one emulator, with everything it writes kept under ``workdir``."""

    def __init__(self, server: EmulatorServer, workdir: Path, binary: str | None = KUBECTL) -> None:
        if binary is None:
            raise FileNotFoundError("kubectl is not on PATH")
        self.binary = binary
        self.server = server
        workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = server.write_kubeconfig(workdir / "kubeconfig")
        self.cache = workdir / "cache"
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir)}

    def command(self, *args: str) -> list[str]:
        """The argument vector of one kubectl command (for a process the caller runs itself)."""
        return [self.binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One kubectl command; raises KubectlFailed when it exits with an error."""
        done = subprocess.run(
            self.command(*args), capture_output=True, text=True, env=self.env, timeout=60, check=False
        )
        if done.returncode != 0:
            raise KubectlFailed(f"kubectl {' '.join(args)} exited with {done.returncode}:\n{done.stderr}")
        return done

    def __call__(self, *args: str) -> str:
        """What one kubectl command prints."""
        return self.run(*args).stdout
