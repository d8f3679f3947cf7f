"""``t1 watch JOB`` and ``t1 list -w``: jobs followed from the terminal by watches of the
Kubernetes API (:class:`tensorone.client.Watch`), never by polling.

On a terminal, a live view drawn with rich: one job's phase, a progress bar with epoch, step and
ETA, the losses, learning rate, throughput, cost so far, its latest Events and a sparkline of
``status.lossHistory``; or the job table, kept current. Without a terminal (a pipe, a file, CI),
one plain line per change instead. ``t1 watch`` ends when the job does, with the exit status of
its final phase (``tensorone.cli.exit_codes``); ``t1 list -w`` runs until interrupted.

The gateway serves no watch: both need the Kubernetes API (``connection.kube_jobs``).
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tensorone.api.timestamps import utc_now
from tensorone.api.v1alpha1 import Phase
from tensorone.api.v1alpha1.trainingjob import TERMINAL_PHASES
from tensorone.cli.connection import add_connection_arguments, kube_jobs
from tensorone.cli.exit_codes import final_phase_exit_code
from tensorone.cli.output import duration, money, number, percent, sparkline, table, when

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from tensorone.client import Job, JobEvent, Watch

# Events shown by default: the latest few, as a glance at what happened last.
EVENTS_SHOWN = 5
# Styles of the phases in the live views.
PHASE_STYLES = {
    Phase.Pending: "dim",
    Phase.Queued: "dim",
    Phase.Running: "bold blue",
    Phase.Stopping: "yellow",
    Phase.Stopped: "yellow",
    Phase.Completed: "bold green",
    Phase.Failed: "bold red",
    Phase.Cancelled: "yellow",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    description = (
        "Follow a job live until it ends: phase, progress with ETA, losses, learning rate, throughput, cost, "
        "the latest Events and the loss curve. Without a terminal, one line per change. Exits 0 when the job "
        "completes, 10 failed, 11 cancelled, 12 stopped."
    )
    parser = subparsers.add_parser("watch", help="Follow a job live until it ends.", description=description)
    add_connection_arguments(parser)
    parser.add_argument("job")
    parser.add_argument(
        "--events", type=int, default=EVENTS_SHOWN, metavar="N", help=f"latest Events shown (default {EVENTS_SHOWN})"
    )
    parser.set_defaults(handler=_watch)


def final_phase(job: Job) -> str | None:
    """The phase that ends a watch of the job, or None while it goes on: Completed, Failed,
    Cancelled, and Stopped while ``spec.suspend`` holds it (Stopped with suspend cleared is a resume
    the operator has not acted on yet)."""
    phase = Phase(job.status.capitalize())
    if phase in TERMINAL_PHASES or (phase == Phase.Stopped and job.spec.suspend):
        return phase.value
    return None


def _watch(args: argparse.Namespace) -> int:
    jobs = kube_jobs(args, "t1 watch")
    screen = JobScreen(args.events)
    with Merged(job=jobs.watch(args.job), events=jobs.watch_events(args.job)) as changes:
        if sys.stdout.isatty():
            from rich.live import Live

            with Live(screen, console=_console(), auto_refresh=False) as live:
                for name, value in changes:
                    screen.update(name, value)
                    live.update(screen, refresh=True)
                    if screen.job is not None and (phase := final_phase(screen.job)):
                        return final_phase_exit_code(phase)
        else:
            lines = PlainLines(args.events)
            for name, value in changes:
                screen.update(name, value)
                lines.update(name, value)
                if screen.job is not None and (phase := final_phase(screen.job)):
                    return final_phase_exit_code(phase)
    raise AssertionError("a watch ends only with its job, an error or an interrupt")


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


class Merged:
    """Several watches, each iterated in a thread of its own; iterating yields ``(name, value)`` as
    the values come, and raises in the caller's thread what a watch raised. Leaving the ``with``
    block closes every watch and ends its thread."""

    def __init__(self, **watches: Watch[Any]) -> None:
        self._watches = watches
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._follow, args=(name, watch), name=f"t1-watch-{name}", daemon=True)
            for name, watch in watches.items()
        ]

    def _follow(self, name: str, watch: Watch[Any]) -> None:
        try:
            for value in watch:
                self._queue.put((name, value))
        except BaseException as error:  # handed to the caller's thread, which raises it
            self._queue.put((name, error))

    def __enter__(self) -> Merged:
        for thread in self._threads:
            thread.start()
        return self

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        while True:
            name, value = self._queue.get()
            if isinstance(value, BaseException):
                raise value
            yield name, value

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for watch in self._watches.values():
            watch.close()
        for thread in self._threads:
            thread.join(timeout=5)


class JobScreen:
    """The live view of one job: what its watches last brought, drawn with rich."""

    def __init__(self, events_shown: int) -> None:
        self.job: Job | None = None
        self.events: list[JobEvent] = []
        self.events_shown = events_shown

    def update(self, name: str, value: Any) -> None:
        if name == "job":
            self.job = value
        else:
            self.events = value

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        job = self.job
        if job is None:
            return Text("waiting for the job...")
        p, m = job.progress, job.metrics
        phase = Phase(job.status.capitalize())
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        headline = Text(phase.value, style=PHASE_STYLES[phase])
        if job.message:
            headline.append(f"  {job.message}")
        grid.add_row("Phase", headline)
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=100, completed=p.percentage or 0, width=40), progress_text(job))
        grid.add_row("Progress", bar)
        if eta := eta_text(job):
            grid.add_row("ETA", eta)
        grid.add_row("Loss", loss_text(job))
        grid.add_row("Learning rate", number(m.learning_rate))
        grid.add_row("Throughput", m.throughput or "-")
        grid.add_row("Cost", cost_text(job))
        curve = [sample.loss for sample in job.loss_history]
        if curve:
            steps = f"steps {job.loss_history[0].step}-{job.loss_history[-1].step}"
            grid.add_row("Loss curve", f"{sparkline(curve)}  {number(curve[0])} -> {number(curve[-1])}, {steps}")
        events = Table.grid(padding=(0, 2))
        for event in self.events[-self.events_shown :] if self.events_shown > 0 else []:
            style = "red" if event.type == "Warning" else ""
            events.add_row(when(event.last_seen), Text(event.type, style=style), event.reason, event_message(event))
        parts: list[RenderableType] = [grid]
        if events.row_count:
            parts += [Text("Events", style="bold"), events]
        return Panel(Group(*parts), title=f"trainingjob/{job.id} ({job.namespace})", title_align="left")


def progress_text(job: Job) -> str:
    """``51.4%  epoch 8/15  step 54/105``."""
    p = job.progress
    return (
        f"{percent(p.percentage)}  epoch {p.current_epoch or 0}/{p.total_epochs or '?'}  "
        f"step {p.current_step or 0}/{p.total_steps or '?'}"
    )


def eta_text(job: Job) -> str | None:
    """``17s (2026-11-22T01:18:50Z)``: the training left and when it should end; None once the job
    has ended or before the trainer has estimated it."""
    if final_phase(job) is not None or (job.progress.remaining_time is None and job.estimated_completion is None):
        return None
    return f"{duration(job.progress.remaining_time)} ({when(job.estimated_completion)})"


def loss_text(job: Job) -> str:
    m = job.metrics
    return (
        f"{number(m.current_loss)} (best {number(m.best_loss)})   "
        f"eval {number(m.eval_loss)} (best {number(m.best_eval_loss)})"
    )


def cost_text(job: Job) -> str:
    usage, estimate = job.resource_usage, job.estimated_cost
    currency = f" {estimate.currency}" if estimate.currency else ""
    estimated = [f"estimated {money(estimate.total)}"] if estimate.total is not None else []
    estimated += [f"{money(estimate.hourly)}/h"] if estimate.hourly is not None else []
    return f"{money(usage.cost)}{currency} so far" + (f" ({', '.join(estimated)})" if estimated else "")


def event_message(event: JobEvent) -> str:
    return event.message + (f" (x{event.count})" if event.count > 1 else "")


def job_line(job: Job) -> str:
    """One job's state on one line (without the time it is printed at)."""
    m = job.metrics
    p = job.progress
    line = (
        f"trainingjob/{job.id} {job.status.capitalize()}: epoch {p.current_epoch or 0}/{p.total_epochs or '?'}, "
        f"step {p.current_step or 0}/{p.total_steps or '?'} ({percent(p.percentage)}), "
        f"loss {number(m.current_loss)} (best {number(m.best_loss)}), eval {number(m.eval_loss)}, "
        f"lr {number(m.learning_rate)}, throughput {m.throughput or '-'}, cost {cost_text(job)}"
    )
    if final_phase(job) is None and job.estimated_completion is not None:
        line += f", ETA {when(job.estimated_completion)}"
    if job.message:
        line += f"; {job.message}"
    return line


class PlainLines:
    """``t1 watch`` without a terminal: a line for each change of what the job shows, and one for
    each new Event (the latest few at the start), each headed by the time it happened."""

    def __init__(self, events_shown: int) -> None:
        self.events_shown = events_shown
        self._last_line = ""
        self._printed: set[tuple[str, str, str, int]] = set()
        self._events_seen = False

    def update(self, name: str, value: Any) -> None:
        if name == "job":
            line = job_line(value)
            if line != self._last_line:
                print(f"{utc_now()} {line}", flush=True)
                self._last_line = line
            return
        events: list[JobEvent] = value
        fresh = [e for e in events if _event_key(e) not in self._printed]
        if not self._events_seen:  # the history before the watch: its latest few only
            fresh = fresh[-self.events_shown :] if self.events_shown > 0 else []
            self._printed.update(_event_key(e) for e in events)
            self._events_seen = True
        for event in fresh:
            self._printed.add(_event_key(event))
            print(f"{when(event.last_seen)} event {event.type} {event.reason}: {event_message(event)}", flush=True)


def _event_key(event: JobEvent) -> tuple[str, str, str, int]:
    return (when(event.first_seen), event.reason, event.message, event.count)


def follow_list(watch: Watch[list[Job]], header: Sequence[str], row: Callable[[Job], list[str]]) -> int:
    """``t1 list -w``: the job table kept current on a terminal; else the table once, then a row for
    each job that changed (its last row with STATUS deleted once it is gone), as ``kubectl get -w``
    does. Runs until interrupted."""
    with Merged(jobs=watch) as changes:
        if sys.stdout.isatty():
            _live_table(changes, header, row)
        else:
            _table_rows(changes, header, row)
    raise AssertionError("a list watch ends only with an error or an interrupt")


def _live_table(changes: Merged, header: Sequence[str], row: Callable[[Job], list[str]]) -> None:
    from rich.live import Live
    from rich.text import Text

    with Live(console=_console(), auto_refresh=False) as live:
        for _, jobs in changes:
            live.update(Text(table([list(header), *(row(job) for job in jobs)]).rstrip("\n")), refresh=True)


def _table_rows(changes: Merged, header: Sequence[str], row: Callable[[Job], list[str]]) -> None:
    status = list(header).index("STATUS")
    shown: dict[tuple[str, str], list[str]] = {}
    widths: list[int] = []
    for _, jobs in changes:
        current = {(job.namespace, job.id): row(job) for job in jobs}
        rows = [cells for key, cells in current.items() if shown.get(key) != cells]
        for key in shown.keys() - current.keys():
            gone = list(shown[key])
            gone[status] = "deleted"
            rows.append(gone)
        shown = current
        if not widths:  # the first rows set the columns' widths, as kubectl's do
            rows = [list(header), *rows]
            widths = [max(len(cells[i]) for cells in rows) for i in range(len(header))]
        for cells in rows:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip(), flush=True)
