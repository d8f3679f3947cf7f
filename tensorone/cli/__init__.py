"""``t1``: the command line of TensorOne training.

Each verb lives in a module that defines ``register(subparsers)``; the parser calls the function
the verb set as its ``handler``. The verbs of the SDK are modules of this package; a verb that
needs more than the SDK is provided by the package that implements it, through the entry-point
group ``tensorone.cli`` (``train`` is the trainer's, ``trainer.cli``), so this package never
imports it. Errors of the project's hierarchy are printed as one line naming the field, then a
hint, and end with the status of their kind (``tensorone.cli.exit_codes``); nothing prints a
traceback at a user, not even when the reader of the output goes away.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from tensorone.cli.exit_codes import BROKEN_PIPE, INTERRUPTED, exit_code, hint
from tensorone.errors import TensorOneError

# Verb modules of this package, in the order `t1 --help` lists them; the provided verbs follow.
COMMAND_MODULES: list[str] = [
    "tensorone.cli.jobs",
    "tensorone.cli.watch",
    "tensorone.cli.datasets",
    "tensorone.cli.manifests",
]
# Entry points of this group name a ``register(subparsers)`` function of another package.
ENTRY_POINT_GROUP = "tensorone.cli"

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t1", description="TensorOne training: jobs, datasets and local runs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load()(subparsers)
    return parser


class StoppedWhileStarting(Exception):
    """SIGTERM arrived while t1 was loading its verbs."""


def _stopped_while_starting(signum: int, frame: object) -> None:
    raise StoppedWhileStarting


def main(argv: Sequence[str] | None = None) -> int:
    # Loading the verbs takes seconds on a busy machine (they import the SDK and the API types): a
    # SIGTERM meanwhile ends t1 cleanly. A verb that runs long installs its own handler (t1 train).
    previous = signal.signal(signal.SIGTERM, _stopped_while_starting)
    try:
        args = build_parser().parse_args(argv)
    except StoppedWhileStarting:
        print("t1: stopped by SIGTERM while starting", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    handler: Handler = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()
        return status
    except TensorOneError as error:
        message = " ".join(str(error).split())
        print(f"t1: {error.code}: {message}", file=sys.stderr)
        advice = hint(error.code, error.field)
        if advice:
            print(f"t1: hint: {advice}", file=sys.stderr)
        return exit_code(error.code)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (t1 list | head): nothing more can be said to it, and Python's
        # final flush of stdout must not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


if __name__ == "__main__":
    raise SystemExit(main())
