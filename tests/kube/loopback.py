"""The loopback interface every local stand-in shares: pods of the local node, the trainer's
report server, the emulator and the operator's probes all listen on 127.0.0.1."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on the loopback interface right now (the OS picks it; it stays free only
    until someone binds it, so bind soon)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port
