"""A tenant's custom image, as the hostile-tenant suite plays it: serves ``GET /progress`` on
``TENSORONE_REPORT_HOST`` and ``TENSORONE_REPORT_PORT`` the way the test's control file says, and
ends as it says.

    python /app/reporter.py /control/<job>.json

The control file is JSON, replaced whole by the test (read on every request):

- ``serve``: ``live`` (a well-formed report whose step advances every ``stepSeconds``),
  ``body`` (``body`` as it is), ``stream`` (``body`` then ``streamMegabytes`` MB of its last
  byte repeated, without a Content-Length), ``drip`` (``body`` one byte per ``dripSeconds``),
  ``gzip`` (``body`` gzip-compressed, ``Content-Encoding: gzip``), ``redirect`` (302 to
  ``location``) or ``raw`` (no HTTP of its own: ``body``, then ``tail`` repeated for
  ``streamMegabytes`` MB);
- ``exit``: ``{"code": 0, "message": "..."}``: write the message to the termination log and exit.

The program prints ``started <unix time>`` when its live steps begin (step k is reached at that
time + k x stepSeconds). Only the standard library: the image holds nothing else.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STARTED = time.time()
MEGABYTE = 1024 * 1024


def read_control(path: Path) -> dict[str, Any]:
    try:
        control: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):  # being replaced: serve as before
        return {"serve": "live"}
    return control


def live_report(control: dict[str, Any]) -> bytes:
    """A running trainer's report, its step advancing with the wall clock."""
    total = int(control.get("totalSteps", 1_000_000))
    step = min(int((time.time() - STARTED) / float(control.get("stepSeconds", 0.1))), total)
    report = {
        "state": "running",
        "epoch": 1,
        "totalEpochs": 1,
        "step": step,
        "totalSteps": total,
        "loss": 2.0,
        "tokensPerSecond": 1000.0,
        "startedAt": datetime.fromtimestamp(STARTED, UTC).isoformat(),
        "updatedAt": datetime.now(UTC).isoformat(),
        "elapsedSeconds": time.time() - STARTED,
        "stepSeconds": 0.9 * (time.time() - STARTED),
    }
    return json.dumps(report).encode()


class Handler(BaseHTTPRequestHandler):
    control_path: Path

    def do_GET(self) -> None:
        control = read_control(self.control_path)
        serve = control.get("serve", "live")
        body = str(control.get("body", "")).encode()
        try:
            if serve == "redirect":
                self.send_response(302)
                self.send_header("Location", control["location"])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif serve == "stream":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)
                chunk = body[-1:] * MEGABYTE
                for _ in range(int(control.get("streamMegabytes", 512))):
                    self.wfile.write(chunk)
            elif serve == "raw":
                self.wfile.write(body)
                tail = str(control.get("tail", "")).encode()
                for _ in range(int(control.get("streamMegabytes", 512)) * MEGABYTE // max(len(tail), 1)):
                    self.wfile.write(tail)
            elif serve == "drip":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(float(control.get("dripSeconds", 1.0)))
            else:
                payload = live_report(control) if serve == "live" else gzip.compress(body) if serve == "gzip" else body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if serve == "gzip":
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
        except OSError:  # the operator hung up
            return

    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> int:
    control_path = Path(sys.argv[1])
    Handler.control_path = control_path
    # The pod IP and report port the operator gives every training pod.
    address = (os.environ.get("TENSORONE_REPORT_HOST", "127.0.0.1"), int(os.environ["TENSORONE_REPORT_PORT"]))
    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    print(f"started {STARTED}", flush=True)
    while True:
        ending = read_control(control_path).get("exit")
        if ending is not None:
            server.shutdown()
            Path(os.environ["TENSORONE_TERMINATION_LOG"]).write_text(ending.get("message", ""))
            return int(ending.get("code", 0))
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
