"""``python -m trainer.launch [torchrun options]``: torchrun running the trainer, stopping cleanly.

torchrun forwards SIGTERM to its workers, and they stop as they should (checkpoint, termination
message, exit 0), but torchrun itself then exits 1 with a traceback: a pod stopped on purpose
would look failed. This launcher runs ``torchrun <options> -m trainer`` as a child, passes SIGTERM
and SIGINT on, and exits with the trainer's own verdict: 0 when the termination message says
completed or stopped, the child's exit code otherwise. The options are torchrun's, unchanged::

    python -m trainer.launch --nnodes=2 --nproc-per-node=8 --node-rank=$(RANK) \\
        --master-addr=$(MASTER_ADDR) --master-port=$(MASTER_PORT)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from types import FrameType

from tensorone.api.report import TrainerState
from tensorone.reporting.client import termination_log_path

CLEAN_ENDS = frozenset({TrainerState.completed, TrainerState.stopped})


def main(argv: list[str] | None = None) -> int:
    options = list(sys.argv[1:] if argv is None else argv)
    child = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *options, "-m", "trainer"])
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    if code != 0 and stopping and _final_state() in CLEAN_ENDS:
        return 0
    return code


def _final_state() -> str | None:
    path = termination_log_path()
    if path is None:
        return None
    try:
        state: str | None = json.loads(path.read_text()).get("state")
    except (OSError, ValueError):
        return None
    return state


if __name__ == "__main__":
    raise SystemExit(main())
