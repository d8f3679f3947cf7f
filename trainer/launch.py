"""``python -m trainer.launch [torchrun options]``: torchrun running the trainer, stopping cleanly.

torchrun forwards SIGTERM to its workers, and they stop as they should (checkpoint, termination
message, exit 0), but torchrun itself then exits 1 with a traceback: a pod stopped on purpose
would look failed. This launcher runs ``torchrun <options> -m trainer`` as a child, passes SIGTERM
and SIGINT on, and exits with the trainer's own verdict (``tensorone.api.exit_codes``): 0 when the
termination message says completed; 143 (TERMINATED) when it says stopped, whether this pod got
the SIGTERM or a peer did (the processes agree on a stop): a pod is deleted, and unless its job is
stopping the pod must come back and resume, which an exit 0 would prevent (rank 0's would end the
job as Succeeded); 0 for a stop by SIGINT (a person at a terminal). Otherwise the code of a
trainer process that failed for good (the pod then fails without a restart), else 138, retried.
torchrun exits 1 for any worker's failure, so the workers leave their codes in a folder this
launcher names. A stop before any trainer process could report (or before the child is even
started) says ``stopped`` in the termination message and exits as a stop. The options are
torchrun's, unchanged::

    python -m trainer.launch --nnodes=2 --nproc-per-node=8 --node-rank=$(RANK) \\
        --master-addr=$(MASTER_ADDR) --master-port=$(MASTER_PORT)
"""

from __future__ import annotations

# Only the standard library at the top: the handler is installed before anything slow is imported,
# so a stop at any moment of the start-up ends cleanly.
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

COMPLETED, STOPPED = "completed", "stopped"  # TrainerState values
# The folder where each trainer process of this pod leaves its exit code (a file named for its local rank).
EXIT_CODE_DIR_ENV = "TENSORONE_EXIT_CODE_DIR"


def main(argv: list[str] | None = None) -> int:
    options = list(sys.argv[1:] if argv is None else argv)
    child: subprocess.Popen[bytes] | None = None
    stopped_by: str | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped_by
        stopped_by = stopped_by or signal.Signals(signum).name
        if child is not None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    with tempfile.TemporaryDirectory(prefix="trainer-exit-") as codes:
        if stopped_by is None:
            env = {**os.environ, EXIT_CODE_DIR_ENV: codes}
            command = [sys.executable, "-m", "torch.distributed.run", *options, "-m", "trainer"]
            child = subprocess.Popen(command, env=env)
        if stopped_by is not None and child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # the signal came while the child was being started
        code = child.wait() if child is not None else 0
        verdict = 0 if code == 0 else _verdict(Path(codes))
    state = _final_state()
    if stopped_by is not None and state is None:
        # Stopped before any trainer process could report: nothing was trained, nothing to save.
        _report_stopped(f"stopped by {stopped_by} while starting, before training began")
        state = STOPPED
    return pod_exit_code(code, verdict=verdict, state=state, stopped_by=stopped_by)


def pod_exit_code(code: int, *, verdict: int, state: str | None, stopped_by: str | None) -> int:
    """The launcher's exit code from torchrun's ``code``, the trainer processes' ``verdict`` (see
    :func:`_verdict`), the final ``state`` of this pod's termination message and the signal that
    reached this launcher, if one did: a stop exits 143 (0 on SIGINT), whether the signal came here
    or to a peer's pod; a completed run 0; a failure the verdict."""
    if state == STOPPED and (code == 0 or stopped_by is not None):
        return 0 if stopped_by == "SIGINT" else _terminated()
    if code == 0 or (stopped_by is not None and state == COMPLETED):
        return 0
    return verdict


def _verdict(codes: Path) -> int:
    """The pod's exit code after torchrun failed: a trainer process's permanent code (below 128),
    else 138 (unexpected, retried): a process killed, torchrun's own failure, or a process stopped
    by torchrun because another failed."""
    from tensorone.api.exit_codes import ExitCode, is_retryable

    for path in sorted(codes.iterdir(), key=lambda p: p.name):
        try:
            code = int(path.read_text())
        except (OSError, ValueError):
            continue
        if code != 0 and not is_retryable(code):
            return code
    return ExitCode.UNEXPECTED


def _terminated() -> int:
    """The exit code of a pod's trainer that stopped on SIGTERM after saving a checkpoint."""
    from tensorone.api.exit_codes import ExitCode

    return int(ExitCode.TERMINATED)


def record_exit_code(code: int) -> None:
    """Leave this trainer process's exit code for the launcher (when it runs under one)."""
    folder = os.environ.get(EXIT_CODE_DIR_ENV)
    if folder:
        rank = os.environ.get("LOCAL_RANK", "0")
        try:
            (Path(folder) / rank).write_text(str(int(code)))
        except OSError as error:
            print(f"trainer: cannot leave the exit code in {folder}: {error}", file=sys.stderr)


def _final_state() -> str | None:
    from tensorone.reporting.client import termination_log_path

    path = termination_log_path()
    if path is None:
        return None
    try:
        state: str | None = json.loads(path.read_text()).get("state")
    except (OSError, ValueError):
        return None
    return state


def _report_stopped(message: str) -> None:
    from tensorone.api.report import TrainerState
    from tensorone.reporting.client import Reporter

    Reporter(serve=False).finish(TrainerState.stopped, reason="Stopped", message=message)


if __name__ == "__main__":
    raise SystemExit(main())
