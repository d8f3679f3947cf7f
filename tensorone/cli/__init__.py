"""``t1``: the command line of TensorOne training.

Each verb lives in a module of this package that defines ``register(subparsers)``; the parser
calls the function the verb set as its ``handler``. Errors of the project's hierarchy are printed
as one line naming the field and exit with status 2; nothing prints a traceback at a user.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from tensorone.errors import TensorOneError

# Verb modules, in the order `t1 --help` lists them.
COMMAND_MODULES: list[str] = [
    "tensorone.cli.jobs",
    "tensorone.cli.manifests",
    "tensorone.cli.train",
]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t1", description="TensorOne training: jobs, datasets and local runs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except TensorOneError as error:
        print(f"t1: {error.code}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
