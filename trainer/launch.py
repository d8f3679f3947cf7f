"""``python -m trainer.launch [torchrun options]``: torchrun running the trainer, stopping cleanly.

torchrun forwards SIGTERM to its workers, and they stop as they should (checkpoint, termination
message, exit 0), but torchrun itself then exits 1 with a traceback: a pod stopped on purpose
would look failed. This launcher runs ``torchrun <options> -m trainer`` as a child, passes SIGTERM
and SIGINT on, and exits with the trainer's own verdict: 0 when the termination message says
completed or stopped, the child's exit code otherwise. A stop before any trainer process could
report (or before the child is even started) exits 0 with a ``stopped`` termination message. The options are torchrun's, unchanged::

    python -m trainer.launch --nnodes=2 --nproc-per-node=8 --node-rank=$(RANK) \\
        --master-addr=$(MASTER_ADDR) --master-port=$(MASTER_PORT)
"""

from __future__ import annotations

# Only the standard library at the top: the handler is installed before anything slow is imported,
# so a stop at any moment of the start-up ends cleanly.
import json
import signal
import subprocess
import sys
from types import FrameType

CLEAN_ENDS = frozenset({"completed", "stopped"})  # TrainerState values


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
    if stopped_by is None:
        child = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *options, "-m", "trainer"])
    if stopped_by is not None and child is not None and child.poll() is None:
        child.send_signal(signal.SIGTERM)  # the signal came while the child was being started
    code = child.wait() if child is not None else 0
    if stopped_by is None or code == 0:
        return code
    state = _final_state()
    if state is None:
        # Stopped before any trainer process could report: nothing was trained, nothing to save.
        _report_stopped(f"stopped by {stopped_by} while starting, before training began")
        return 0
    return 0 if state in CLEAN_ENDS else code


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
