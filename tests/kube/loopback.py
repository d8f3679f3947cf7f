"""The loopback interface every local stand-in shares: pods of the local node, the trainer's
report server, the emulator and the operator's probes all listen on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on the loopback interface right now (the OS picks it; it stays free only
    until someone binds it, so bind soon)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


# Answers of a server where the Kubernetes API should be: a proxy's sign-in page; JSON that is no
# Kubernetes object; a list of things that are no objects.
SIGN_IN_PAGE = ("text/html", b"<html><body>Sign in</body></html>")
NOT_AN_OBJECT = ("application/json", b'{"kind": "Surprise", "items": 7, "metadata": "none"}')
LIST_OF_NUMBERS = ("application/json", b'{"kind": "List", "metadata": {}, "items": [7, 8]}')


@contextlib.contextmanager
def answering_server(answer: tuple[str, bytes]) -> Iterator[str]:
    """A server on the loopback that answers every request with ``answer`` (content type, body),
    status 200; its URL."""
    content_type, body = answer

    class Answering(BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
