"""``t1`` verbs that follow a job's training: ``logs`` (the trainer's log from the job's pods) and
``plot`` (the loss curves, from the job's status or from a local run's metrics log)."""

from __future__ import annotations

import argparse
import sys

from tensorone.cli.connection import add_connection_arguments, kube_jobs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = "Print the trainer's log from a job's pod; -f follows it across restarts until the job ends."
    logs = subparsers.add_parser("logs", help=help_text, description=help_text)
    add_connection_arguments(logs)
    logs.set_defaults(handler=_logs)
    logs.add_argument("job")
    logs.add_argument("-f", "--follow", action="store_true", help="go on as the trainer writes, until the job ends")
    logs.add_argument(
        "--rank",
        type=int,
        default=0,
        metavar="N",
        help="the pod of node rank N: 0 is the master (default), i+1 worker i",
    )
    logs.add_argument("--previous", action="store_true", help="the container's run before the current one")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")


def _logs(args: argparse.Namespace) -> int:
    lines = kube_jobs(args, "t1 logs").logs(
        args.job,
        rank=args.rank,
        follow=args.follow,
        previous=args.previous,
        tail=args.tail,
        notify=_note,
    )
    for line in lines:
        sys.stdout.write(line + "\n")
        if args.follow:  # a reader at the other end of a pipe sees each line as the trainer writes it
            sys.stdout.flush()
    return 0


def _note(text: str) -> None:
    """What following a log waits for, on stderr: stdout holds only the trainer's lines."""
    print(f"t1: {text}", file=sys.stderr, flush=True)
