"""A fake custom image's report server: answers ``GET /progress`` with whatever the test sets,
from a well-formed report to each hostile answer a tenant's image could give.

    with ReportServer() as server:
        server.answer = "redirect"      # one of ANSWERS
        ... the operator polls http://127.0.0.1:{server.port}/progress ...
        server.serve(report_json(step=6))   # or any report, in wire form
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tensorone.api.report import MAX_REPORT_BYTES, MAX_SECONDS, MAX_STEPS

STARTED = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


def report_json(step: int = 5, **fields: Any) -> dict[str, Any]:
    """A report of a running custom trainer (wire form), with ``fields`` replaced."""
    report: dict[str, Any] = {
        "state": "running",
        "epoch": 1,
        "totalEpochs": 2,
        "step": step,
        "totalSteps": 100,
        "loss": 1.5,
        "tokensPerSecond": 1000.0,
        "startedAt": STARTED.isoformat(),
        "updatedAt": STARTED.isoformat(),
        "elapsedSeconds": 10.0,
        "stepSeconds": 9.0,
    }
    report.update(fields)
    return report


def _checkpoint(index: int) -> dict[str, Any]:
    return {"id": f"ckpt-step-{index}", "epoch": 0, "step": index, "createdAt": STARTED.isoformat(), "sizeBytes": 1}


# Each hostile answer, by name: (status, headers, body). A body of None is streamed by the handler.
_BOUNDED_EXTREMES = report_json(step=1, totalSteps=MAX_STEPS, elapsedSeconds=MAX_SECONDS, tokensPerSecond=1e12)
ANSWERS: dict[str, tuple[int, dict[str, str], bytes | None]] = {
    "valid": (200, {}, json.dumps(report_json()).encode()),
    "bounded_extremes": (200, {}, json.dumps(_BOUNDED_EXTREMES).encode()),
    "huge_body": (200, {}, None),
    "huge_numbers": (200, {}, json.dumps(report_json(step=10**30, epoch=6_000_000)).encode()),
    "out_of_schema": (200, {}, json.dumps(report_json(tokensPerSecond=1e70, learningRate=-1.0)).encode()),
    "malformed": (200, {}, b'{"state": "running", "step": '),
    # A start in the future would outrank every genuine report after it.
    "far_future": (200, {}, json.dumps(report_json(step=50, startedAt="9999-01-01T00:00:00Z")).encode()),
    "many_checkpoints": (
        200,
        {},
        json.dumps(report_json(checkpoints=[_checkpoint(i) for i in range(10_000)])).encode(),
    ),
    "gzip_bomb": (200, {"Content-Encoding": "gzip"}, gzip.compress(b"0" * (64 * MAX_REPORT_BYTES))),
    "redirect": (302, {"Location": "http://127.0.0.1:1/progress"}, b""),
    "slow_drip": (200, {}, None),
    "not_http": (200, {}, None),
}
HOSTILE = tuple(name for name in ANSWERS if name not in ("valid", "bounded_extremes"))
# The answer of ``ReportServer.serve``.
SERVED = "served"
# How long the slow drip keeps a poll waiting, one byte at a time (longer than the operator waits).
DRIP_SECONDS = 30.0


class ReportServer:
    """A threaded HTTP server on 127.0.0.1 answering /progress with ``answer``; ``report`` replaces
    the valid answer's report, ``redirect_to`` the redirect's target (another tenant's trainer)."""

    def __init__(self) -> None:
        self.answer = "valid"
        # The valid answer's report (wire form), when not report_json()'s.
        self.report: dict[str, Any] | None = None
        self.redirect_to: str | None = None
        self._served = b""
        self.requests = 0
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                server.respond(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, args=(0.05,), name="report-server", daemon=True
        )

    def serve(self, report: dict[str, Any]) -> None:
        """Answer with ``report`` (wire form) from now on."""
        self._served = json.dumps(report).encode()
        self.answer = SERVED

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        if self.answer == "not_http":
            self._flood_headers(handler)
            return
        status, headers, body = (200, {}, self._served) if self.answer == SERVED else ANSWERS[self.answer]
        if self.answer == "valid" and self.report is not None:
            body = json.dumps(self.report).encode()
        if self.answer == "redirect" and self.redirect_to:
            headers = {"Location": self.redirect_to}
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        try:
            if body is not None:
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
            elif self.answer == "huge_body":
                self._stream_huge(handler)
            else:
                self._drip(handler)
        except OSError:  # the operator hung up, as it should
            return

    def _stream_huge(self, handler: BaseHTTPRequestHandler) -> None:
        """1 GB of a report's message, without a Content-Length (read until the limit)."""
        handler.end_headers()
        handler.wfile.write(b'{"state": "running", "message": "')
        chunk = b"x" * 1024 * 1024
        for _ in range(1024):
            if self._closing.is_set():
                return
            handler.wfile.write(chunk)

    def _flood_headers(self, handler: BaseHTTPRequestHandler) -> None:
        """A status line, then header lines without end: no HTTP reader can hold the answer."""
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            while not self._closing.is_set():
                handler.wfile.write(b"X-Flood: " + b"f" * 90 + b"\r\n")
        except OSError:  # the operator hung up, as it should
            return

    def _drip(self, handler: BaseHTTPRequestHandler) -> None:
        """A valid report, one byte every tenth of a second."""
        body = json.dumps(report_json()).encode()
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        deadline = time.monotonic() + DRIP_SECONDS
        for byte in body:
            if self._closing.wait(0.1) or time.monotonic() > deadline:
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    def __enter__(self) -> ReportServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._closing.set()
        self._http.shutdown()
        self._http.server_close()
