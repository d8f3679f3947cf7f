"""Fixtures of the t1 tests: an emulator with a kubeconfig pointing at it (KUBECONFIG set for
verbs run in this process), and the real operator running against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.server import EmulatorServer
from tests.operator.runner import OperatorThread


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    return tmp_path / "kubeconfig"


@pytest.fixture
def cluster(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(kubeconfig)))
        monkeypatch.delenv("TENSORONE_BASE_URL", raising=False)
        yield server


@pytest.fixture
def operator(cluster: EmulatorServer) -> Iterator[OperatorThread]:
    with OperatorThread(cluster) as running:
        yield running
