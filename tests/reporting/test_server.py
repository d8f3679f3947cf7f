"""The report port holds out against clients that misbehave: a connection that sends nothing is
dropped after the connection timeout, and connections beyond the limit are closed at once instead of
each holding a thread of the trainer's process."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from tensorone.api.events import parse_page
from tensorone.api.report import REPORT_DRAIN_ENV, REPORT_HOST_ENV
from tensorone.reporting.client import Reporter
from tensorone.reporting.progress import ProgressTracker
from tensorone.reporting.server import ReportServer
from tests.kube.polling import wait_for


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ReportServer]:
    options = getattr(request, "param", {})
    served = ReportServer(ProgressTracker(), CollectorRegistry(), host="127.0.0.1", port=0, **options)
    served.start()
    yield served
    served.close()


def idle_connection(port: int) -> socket.socket:
    """A connection that never sends its request."""
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def progress_state(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=5) as response:
        return str(json.loads(response.read())["state"])


@pytest.mark.parametrize("server", [{"connection_timeout": 0.2}], indirect=True)
def test_a_connection_that_sends_nothing_is_dropped(server: ReportServer) -> None:
    with idle_connection(server.port) as connection:
        # The server closes it (an empty read) well before the client's own 30 s timeout.
        assert connection.recv(1024) == b""
    assert progress_state(server.port) == "starting"


@pytest.mark.parametrize("server", [{"connection_timeout": 30.0, "max_connections": 2}], indirect=True)
def test_connections_beyond_the_limit_are_closed_at_once(server: ReportServer) -> None:
    held = [idle_connection(server.port) for _ in range(2)]
    try:
        # Accepted in order: the first two hold both slots, the third is closed without an answer.
        with idle_connection(server.port) as refused:
            refused.sendall(b"GET /progress HTTP/1.0\r\n\r\n")
            assert refused.recv(1024) == b""
    finally:
        for connection in held:
            connection.close()
    # The held connections' slots come back when their clients go.
    wait_for(lambda: answered_state(server.port) == "starting", what="the report port to answer again")


def answered_state(port: int) -> str | None:
    """The served state, or None while the server still closes new connections."""
    try:
        return progress_state(port)
    except OSError:
        return None


def test_a_local_run_serves_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REPORT_HOST_ENV, raising=False)
    with Reporter(port=0, termination_log=None) as reporter:
        assert reporter.port is not None
        assert reporter.address == ("127.0.0.1", reporter.port)


def test_a_pod_serves_on_the_address_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # 127.0.0.2 plays the pod IP: served there, and not on another address of the machine.
    monkeypatch.setenv(REPORT_HOST_ENV, "127.0.0.2")
    with Reporter(port=0, termination_log=None) as reporter:
        assert reporter.port is not None
        with urllib.request.urlopen(f"http://127.0.0.2:{reporter.port}/progress", timeout=5) as response:
            assert json.loads(response.read())["state"] == "starting"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", reporter.port), timeout=5).close()


def metric_events(port: int, query: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metric-events{query}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_metric_events_are_served_in_pages_after_a_cursor_and_a_bad_query_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(REPORT_HOST_ENV, raising=False)
    with Reporter(port=0, termination_log=None) as reporter:
        assert reporter.port is not None
        for step in range(1, 6):
            reporter.step(step, 1.0 / step, epoch=1, learning_rate=0.1, tokens=100, seconds=0.5, grad_norm=2.0)
        reporter.eval(5, 0.9)
        status, body = metric_events(reporter.port, "?after=2&limit=3")
        page = parse_page(body, after=2, now=datetime.now(UTC))
        assert status == 200 and [(r.seq, r.kind, r.step) for r in page] == [
            (3, "step", 3),
            (4, "step", 4),
            (5, "step", 5),
        ]
        assert (page[0].grad_norm, page[0].tokens_per_second, page[0].learning_rate) == (2.0, 200.0, 0.1)
        assert [
            r.kind for r in parse_page(metric_events(reporter.port, "?after=5")[1], after=5, now=datetime.now(UTC))
        ] == ["eval"]
        for query in ("?after=-1", "?limit=0", "?limit=100000", "?after=abc", "?after=" + "9" * 5000):
            status, body = metric_events(reporter.port, query)
            assert status == 400 and (b"after must" in body or b"limit must" in body), (query, body)
        # Everything read: a run that ended stops serving at once, without waiting out its drain.
        monkeypatch.setenv(REPORT_DRAIN_ENV, "30")
        assert reporter.ring.wait_read(0.0)
