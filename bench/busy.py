"""Keep the machine's cores busy, to run the test suite or a benchmark beside a noisy neighbour.

    python bench/busy.py &               # one spinning process per core, until stopped
    bash .ci/run                         # the suite must pass like this, with no rerun
    kill %1

    python bench/busy.py --processes 4 --seconds 1800

Every process spins on pure Python arithmetic (no I/O, no memory growth) at normal priority; the
whole group ends on SIGTERM, SIGINT or after --seconds. Standard library only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time


def spin(until: float) -> None:
    """Busy until the monotonic deadline (checked every ~100k operations)."""
    # A forked worker inherits the group's handlers: its own end is the default one, quiet.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    value = 0
    while time.monotonic() < until:
        for i in range(100_000):
            value = (value * 31 + i) % 1_000_003


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="spinning processes (default: cores)"
    )
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after this long (default: never)")
    args = parser.parse_args()
    if args.processes < 1 or args.seconds <= 0:
        parser.error("--processes must be at least 1 and --seconds positive")
    until = time.monotonic() + min(args.seconds, 10 * 365 * 24 * 3600.0)
    workers = [multiprocessing.Process(target=spin, args=(until,), daemon=True) for _ in range(args.processes)]

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            worker.terminate()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.start()
    print(f"busy: {args.processes} processes, pid {os.getpid()}", file=sys.stderr, flush=True)
    for worker in workers:
        worker.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
