"""Fixtures: a fresh emulator per test, and the real operator running against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kube.server import EmulatorServer
from tests.operator.runner import OperatorThread


@pytest.fixture
def cluster() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def operator(cluster: EmulatorServer) -> Iterator[OperatorThread]:
    with OperatorThread(cluster) as running:
        yield running
