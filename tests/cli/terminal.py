"""``t1`` run as a user runs it: a process of its own, its output on a pseudo-terminal of a given
size (what rich draws for a person) or on a pipe (what a script or CI reads).

    with T1(["watch", "llama"], kubeconfig, tty=True) as t1:
        t1.wait_for_text("Running")
        assert t1.wait() == 0
        frame = t1.last_frame("╭")

The output is read in a thread as it comes; ``text()`` is all of it with the terminal's control
sequences removed, so each frame rich drew is there in turn.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path
from types import TracebackType

from tests.kube.polling import wait_for

# Cursor moves, colours, erasing, the cursor shown or hidden (CSI), and window titles (OSC).
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[=>]|\r")
# Long enough for t1 to start (importing the SDK) on two loaded cores.
TIMEOUT = 60.0


# ``python -m tensorone`` with Ctrl-C as a terminal gives it, whatever the tests inherited: a shell
# starts a command run in the background (CI's, say) with SIGINT ignored, and Python keeps it so.
_T1 = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('tensorone', run_name='__main__', alter_sys=True)"
)


class T1:
    """``python -m tensorone ARGS`` against the cluster of ``kubeconfig``, on a terminal of
    ``columns`` x ``rows`` when ``tty``, else on a pipe; stderr is a pipe either way."""

    def __init__(self, args: list[str], kubeconfig: Path, *, tty: bool, columns: int = 120, rows: int = 40) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("TENSORONE_BASE_URL", "NO_COLOR", "COLUMNS", "LINES")}
        env.update(KUBECONFIG=str(kubeconfig), TERM="xterm-256color", PYTHONUNBUFFERED="1")
        self.args = args
        self._output = bytearray()
        self._lock = threading.Lock()
        if tty:
            reader, writer = pty.openpty()
            fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        else:
            reader, writer = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _T1, *args],
            stdin=subprocess.DEVNULL,
            stdout=writer,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own terminal session, as a shell gives a command
        )
        os.close(writer)
        self._reader = reader
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self.stderr = ""

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._reader, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            with self._lock:
                self._output.extend(chunk)
        os.close(self._reader)

    def raw(self) -> str:
        with self._lock:
            return self._output.decode(errors="replace")

    def text(self) -> str:
        """Everything t1 printed so far, without the terminal's control sequences."""
        return _CONTROL.sub("", self.raw())

    def wait_for_text(self, *needles: str) -> str:
        """The text once every needle is in it."""

        def shown() -> str | None:
            text = self.text()
            missing = [needle for needle in needles if needle not in text]
            assert not missing, f"{missing} not shown yet; the output ends with {text[-1500:]!r}"
            return text

        return wait_for(shown, f"t1 {' '.join(self.args)} to show {needles}", timeout=TIMEOUT)

    def last_frame(self, start: str) -> str:
        """The text from the last place ``start`` begins (the top of the last frame drawn)."""
        text = self.text()
        return text[text.rindex(start) :]

    def interrupt(self) -> None:
        """Ctrl-C, as the terminal sends it."""
        self.process.send_signal(signal.SIGINT)

    def wait(self) -> int:
        """The exit status, once t1 has ended and its output is read."""
        _, stderr = self.process.communicate(timeout=TIMEOUT)
        self.stderr = stderr.decode()
        self._thread.join(timeout=TIMEOUT)
        return self.process.returncode

    def __enter__(self) -> T1:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        self._thread.join(timeout=TIMEOUT)
