"""A kind cluster driven through the real CLIs (kind, docker, kubectl, helm) for the e2e suite."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


class CommandFailed(AssertionError):
    """A CLI call failed; the message carries the command and its output."""


def run(
    command: Sequence[str], *, env: dict[str, str] | None = None, input_text: str | None = None, timeout: float = 1800
) -> str:
    """Run a command, return its stdout; raise CommandFailed with stderr when it fails."""
    result = subprocess.run(
        list(command),
        input=input_text,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise CommandFailed(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


@dataclass
class KindCluster:
    """kubectl and helm bound to one kind cluster's kubeconfig."""

    name: str
    kubeconfig: Path
    helm_binary: Path

    def kubectl(self, *args: str, input_text: str | None = None, timeout: float = 600) -> str:
        """kubectl against this cluster."""
        return run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input_text=input_text, timeout=timeout)

    def helm(self, *args: str, timeout: float = 900) -> str:
        """helm against this cluster."""
        return run([str(self.helm_binary), "--kubeconfig", str(self.kubeconfig), *args], timeout=timeout)

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]], namespace: str) -> None:
        """Server-side apply of one object or a list of them."""
        items = manifest if isinstance(manifest, list) else [manifest]
        self.kubectl(
            "apply",
            "--server-side",
            "--field-manager=e2e",
            "-n",
            namespace,
            "-f",
            "-",
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

    def apply_when_webhooks_answer(self, manifest: list[dict[str, Any]], namespace: str, *, timeout: float) -> None:
        """``apply``, waiting for the admission webhooks of a controller just installed: its
        deployment is available a moment before its webhook's certificate and endpoints are (an
        apply meanwhile fails calling the webhook, and nothing else)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.apply(manifest, namespace)
                return
            except CommandFailed as error:
                if "webhook" not in str(error) or time.monotonic() > deadline:
                    raise
            time.sleep(3.0)

    def list(self, resource: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The objects a label selector picks."""
        loaded = json.loads(self.kubectl("get", resource, "-n", namespace, "-l", selector, "-o", "json"))
        items: list[dict[str, Any]] = loaded["items"]
        return items

    def get(self, resource: str, name: str, namespace: str) -> dict[str, Any]:
        """One object as a dict."""
        loaded: dict[str, Any] = json.loads(self.kubectl("get", resource, name, "-n", namespace, "-o", "json"))
        return loaded

    def merge_patch(self, resource: str, name: str, namespace: str, patch: dict[str, Any]) -> None:
        """A JSON merge patch of the spec, as a user (or t1) writes it."""
        self.kubectl("patch", resource, name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def wait_for(
        self,
        resource: str,
        name: str,
        namespace: str,
        condition: Callable[[dict[str, Any]], bool],
        *,
        what: str,
        timeout: float,
        poll: float = 3.0,
    ) -> dict[str, Any]:
        """Poll the object until ``condition`` holds; fail with its last status after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.get(resource, name, namespace)
            except CommandFailed:
                last = {}
            if last and condition(last):
                return last
            time.sleep(poll)
        status = json.dumps(last.get("status"), indent=2)
        raise AssertionError(f"{resource}/{name} did not reach {what} in {timeout:.0f} s; last status:\n{status}")
