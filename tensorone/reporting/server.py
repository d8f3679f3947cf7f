"""One HTTP port on rank 0: ``GET /progress`` (the JSON ProgressReport the operator polls),
``GET /metric-events?after=SEQ&limit=N`` (a page of the last metric records, tensorone.api.events),
``GET /metrics`` (Prometheus text), plus ``GET /healthz``. Served from a daemon thread, so the
training loop never waits for a client.

The port is reachable by anything that can reach the pod, so the server holds out against clients
that misbehave: each connection gets CONNECTION_TIMEOUT_SECONDS to send its request, and at most
MAX_CONNECTIONS are served at once (more are closed at once), so half-open connections cannot pile
up threads in the trainer's process.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tensorone.api.events import MAX_PAGE_RECORDS, MAX_STEPS
from tensorone.reporting.metric_ring import MetricRing
from tensorone.reporting.progress import ProgressTracker

CONNECTION_TIMEOUT_SECONDS = 5.0
MAX_CONNECTIONS = 16


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_connections`` connections at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, *, max_connections: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6  # a pod IP on an IPv6 or dual-stack cluster
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: the poller tries again at its next interval
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class ReportServer:
    """The report endpoints of one tracker; ``port`` 0 picks a free port (see ``.port``)."""

    def __init__(
        self,
        tracker: ProgressTracker,
        registry: CollectorRegistry,
        *,
        ring: MetricRing | None = None,
        host: str,
        port: int,
        connection_timeout: float = CONNECTION_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        handler = _handler(tracker, registry, ring or MetricRing(0), connection_timeout)
        self._server = _BoundedServer((host, port), handler, max_connections=max_connections)
        # A short poll interval so that shutting down (at the end, or on SIGTERM) takes no more
        # than a tenth of a second of the pod's grace period.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="tensorone-report", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def page_query(query: str) -> tuple[int, int]:
    """``after`` and ``limit`` of a ``/metric-events`` query (``after`` 0 and ``limit``
    MAX_PAGE_RECORDS when absent); ValueError naming the parameter and what it allows."""
    values = parse_qs(query, max_num_fields=4)
    numbers = {"after": (0, MAX_STEPS, 0), "limit": (1, MAX_PAGE_RECORDS, MAX_PAGE_RECORDS)}
    found = []
    for name, (low, high, default) in numbers.items():
        given = values.get(name, [str(default)])[-1]
        if not (given.isascii() and given.isdigit()) or len(given) > len(str(high)) or not low <= int(given) <= high:
            raise ValueError(f"{name} must be a whole number from {low} to {high}, got {given[:40]!r}")
        found.append(int(given))
    return found[0], found[1]


def _handler(
    tracker: ProgressTracker, registry: CollectorRegistry, ring: MetricRing, connection_timeout: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # The socket timeout of each connection: a client that sends nothing is dropped.
        timeout = connection_timeout

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/progress":
                self._send(200, "application/json", tracker.report().to_json().encode())
            elif path == "/metric-events":
                try:
                    after, limit = page_query(query)
                except ValueError as error:
                    self._send(400, "text/plain", f"{error}\n".encode())
                    return
                self._send(200, "application/json", ring.page_json(after, limit))
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                self._send(200, "text/plain", b"ok\n")
            else:
                self._send(404, "text/plain", b"not found: try /progress, /metric-events or /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Polled every few seconds: one log line per request would drown the training log.
            return

    return Handler
