"""``pods/exec`` as kube-apiserver serves it over WebSocket, with the kubelet's side played by a node.

A client (``kubectl exec``, ``kubectl cp``, the kubernetes package's ``stream``) asks for
``/api/v1/namespaces/NS/pods/NAME/exec?command=...&container=...&stdout=true&stderr=true`` with a
WebSocket upgrade, offering the channel subprotocols ``v5.channel.k8s.io`` and
``v4.channel.k8s.io``. The API server checks the request (the pod exists and runs on a node, the
container is the pod's, at least one stream is asked for), then proxies the stream to the kubelet
of the pod's node, which runs the command in the container. Every WebSocket message is binary and
starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 the error channel, on which the server
writes one ``Status`` when the command ends (``Success``, or ``Failure`` with reason
``NonZeroExitCode`` and the exit code as the message of a cause ``ExitCode``), 4 the terminal
size. With v5 a client may close its stdin with the message ``[255, 0]``. The server first writes
an empty message on the lowest channel it writes (stdout, else stderr), so that the client knows
the stream is open.

Here the kubelet's part is a ``Runtime`` the node registers for its name (``FaithfulEmulator.runtimes``):
it says how the command runs in the container (the argument vector with the container's paths
mapped to the folders that stand for its volumes, its environment, its working directory); this
module runs that as a local process and streams it. What is not played: a TTY and the resize
channel, the base64 and v1 ``channel.k8s.io`` subprotocols, SPDY (``kubectl`` < 1.30's
transport), and read-only mounts (a command may write into a folder its pod mounts read-only). A
command's absolute paths are mapped, not its output: ``tar -c -f - /data`` names its members with the
local folder (so ``kubectl cp`` of an absolute path finds them corrupted), ``tar -C /data .`` does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.web

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: the client closes one of its channels (stdin)
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
READ_BYTES = 32 * 1024


@dataclass(frozen=True)
class ExecTarget:
    """How a command runs in a container, on this machine: argv with the container's paths mapped
    to local folders, the container's environment, and its working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


# (namespace, pod name, container, command) -> how it runs; LookupError for a container the node
# does not run (any more).
Runtime = Callable[[str, str, str, list[str]], ExecTarget]


@dataclass(frozen=True)
class ExecOptions:
    """The query of an exec request (PodExecOptions)."""

    command: list[str]
    container: str | None
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def parse(cls, query: Any) -> ExecOptions:
        """From the request's query (a multidict: ``command`` is repeated, one word each)."""

        def flag(name: str) -> bool:
            value = query.get(name)
            return value is not None and str(value).lower() not in {"0", "f", "false", "n", "no"}

        return cls(
            command=list(query.getall("command", [])),
            container=query.get("container") or None,
            stdin=flag("stdin"),
            stdout=flag("stdout"),
            stderr=flag("stderr"),
            tty=flag("tty"),
        )

    def problem(self) -> str | None:
        """Why the API server refuses these options (400), or None."""
        if not self.command:
            return "you must specify at least one command for the container"
        if not (self.stdin or self.stdout or self.stderr):
            return "you must specify at least 1 of stdin, stdout, stderr"
        if self.tty and self.stderr:
            return "stdout and stderr cannot be multiplexed when tty=true"
        return None


def offered_protocols(headers: Mapping[str, str]) -> list[str]:
    """The subprotocols the client offers, in its order."""
    header = next((value for key, value in headers.items() if key.lower() == "sec-websocket-protocol"), "")
    return [part.strip() for part in header.split(",") if part.strip()]


def is_upgrade(headers: Mapping[str, str]) -> bool:
    lowered = {key.lower(): value.lower() for key, value in headers.items()}
    return "upgrade" in lowered.get("connection", "") and lowered.get("upgrade") == "websocket"


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(command: list[str], code: int) -> dict[str, Any]:
    """The Status of a command that ended with a non-zero exit code, as the kubelet words it."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {_shown(command)}, "
        f"exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def runtime_failure(message: str) -> dict[str, Any]:
    """The Status of a command the container runtime could not start (no such executable)."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def _shown(command: list[str]) -> str:
    return "[" + " ".join(command) + "]"


async def serve(raw_request: aiohttp.web.BaseRequest, target: ExecTarget, options: ExecOptions) -> Any:
    """Upgrade ``raw_request`` to a WebSocket, run ``target`` and stream it on the channels until it
    ends; the Status on the error channel, then the close. A client that goes away ends the process."""
    offered = offered_protocols(dict(raw_request.headers))
    socket = aiohttp.web.WebSocketResponse(protocols=[p for p in PROTOCOLS if p in offered], max_msg_size=0)
    await socket.prepare(raw_request)
    first = STDOUT if options.stdout else STDERR if options.stderr else None
    if first is not None:
        await socket.send_bytes(bytes([first]))
    try:
        process = await asyncio.create_subprocess_exec(
            *target.argv,
            env=target.env,
            cwd=target.cwd,
            stdin=asyncio.subprocess.PIPE if options.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if options.stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE if options.stderr else asyncio.subprocess.DEVNULL,
        )
    except OSError as error:
        message = (
            "OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{options.command[0]}": {_why(error)}: unknown'
        )
        await _finish(socket, runtime_failure(message))
        return socket
    pumps = [
        asyncio.create_task(_pump(stream, channel, socket))
        for stream, channel in ((process.stdout, STDOUT), (process.stderr, STDERR))
        if stream is not None
    ]
    feeder = asyncio.create_task(_feed(socket, process, options.stdin))
    try:
        await asyncio.gather(*pumps)
        code = await process.wait()
    except (ConnectionResetError, asyncio.CancelledError, aiohttp.ClientConnectionResetError):
        code = None
    finally:
        feeder.cancel()
        for pump in pumps:
            pump.cancel()
        if process.returncode is None:
            process.kill()
            with contextlib.suppress(ProcessLookupError):
                await process.wait()
    if code is not None and not socket.closed:
        with contextlib.suppress(ConnectionError):  # the client went away as the command ended
            await _finish(socket, success_status() if code == 0 else exit_status(options.command, code))
    return socket


def _why(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "executable file not found in $PATH"
    if isinstance(error, PermissionError):
        return "permission denied"
    return error.strerror or type(error).__name__


async def _pump(stream: asyncio.StreamReader, channel: int, socket: aiohttp.web.WebSocketResponse) -> None:
    while chunk := await stream.read(READ_BYTES):
        await socket.send_bytes(bytes([channel]) + chunk)


async def _feed(socket: aiohttp.web.WebSocketResponse, process: asyncio.subprocess.Process, stdin: bool) -> None:
    """The client's messages: stdin to the process, a v5 close of stdin, a close of the socket."""
    async for message in socket:
        if message.type != aiohttp.WSMsgType.BINARY or not message.data:
            continue
        channel, data = message.data[0], message.data[1:]
        if channel == STDIN and stdin and process.stdin is not None:
            process.stdin.write(data)
            await process.stdin.drain()
        elif channel == CLOSE and socket.ws_protocol == V5 and data[:1] == bytes([STDIN]) and process.stdin:
            process.stdin.close()
    # The client closed the connection: nobody reads what the command writes any more.
    if process.returncode is None:
        process.kill()


async def _finish(socket: aiohttp.web.WebSocketResponse, status: dict[str, Any]) -> None:
    await socket.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
    await socket.close()
