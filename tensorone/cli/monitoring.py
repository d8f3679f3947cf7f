"""``t1`` verbs that follow a job's training: ``logs`` (the trainer's log from the job's pods) and
``plot`` (the loss curves, from the job's status or from a local run's metrics log)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tensorone.cli.connection import add_verb, client, kube_jobs
from tensorone.errors import ConfigurationError, InvalidJobState, MissingExtra

if TYPE_CHECKING:
    from tensorone.curves import Curve, TrainingCurves

# The terminal plot: at most this wide, and this tall for the loss and for the learning rate.
PLOT_WIDTH, LOSS_HEIGHT, RATE_HEIGHT = 120, 20, 10


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = "Print the trainer's log from a job's pod; -f follows it across restarts until the job ends."
    logs = add_verb(subparsers, "logs", help_text, _logs)
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

    help_text = "Plot a job's training loss, eval loss and learning rate in the terminal, or as a PNG (-o)."
    plot = add_verb(subparsers, "plot", help_text, _plot)
    plot.add_argument("job", nargs="?", help="a job on the cluster: the curves its status keeps")
    plot.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="a local run instead: the folder t1 train writes (runs/<job>), whose metrics log has every step",
    )
    plot.add_argument(
        "-o", "--output", type=Path, metavar="FILE.png", help="write a PNG instead (needs the plot extra: matplotlib)"
    )


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


def _plot(args: argparse.Namespace) -> int:
    from tensorone.curves import curves_of_status, metrics_log_path, read_metrics_log

    if (args.job is None) == (args.run is None):
        raise ConfigurationError("give a job, or --run DIR for a local run (not both)", field="JOB")
    if args.output is not None and args.output.suffix.lower() != ".png":
        raise ConfigurationError(f"must name a .png file, got {str(args.output)!r}", field="--output")
    if args.run is not None:
        curves = read_metrics_log(metrics_log_path(args.run))
    else:
        job = client(args).training.jobs.get(args.job)
        curves = curves_of_status(job.id, job.raw.get("status") or {})
        if not curves.loss:
            raise InvalidJobState(f"job {job.id!r} is {job.status} and has no loss history yet")
    if args.output is not None:
        _write_png(curves, args.output)
        print(f"wrote {args.output}")
        return 0
    print(_terminal_plot(curves, color=sys.stdout.isatty()))
    print("\n".join(_summary(curves)))
    return 0


def _summary(curves: TrainingCurves) -> list[str]:
    """A line per curve: what the plot shows, in numbers."""
    lines = [f"{curves.source}:"]
    for curve in (curves.loss, curves.eval_loss):
        if curve:
            lowest = min(range(len(curve.values)), key=curve.values.__getitem__)
            lines.append(
                f"  {curve.name}: {len(curve.steps)} points, steps {curve.steps[0]} to {curve.steps[-1]}, "
                f"{curve.values[0]:.4g} -> {curve.values[-1]:.4g} (lowest {curve.values[lowest]:.4g} at step "
                f"{curve.steps[lowest]})"
            )
    rate = curves.learning_rate
    if rate:
        highest = max(range(len(rate.values)), key=rate.values.__getitem__)
        lines.append(
            f"  {rate.name}: {len(rate.steps)} points, highest {rate.values[highest]:.3g} at step "
            f"{rate.steps[highest]}, {rate.values[-1]:.3g} at step {rate.steps[-1]}"
        )
    elif curves.current_learning_rate is not None:
        lines.append(
            f"  learning rate: {curves.current_learning_rate:.3g} now (a job's status keeps no history of it; "
            "the metrics log has every step)"
        )
    return lines


def _terminal_plot(curves: TrainingCurves, *, color: bool) -> str:
    """The loss and eval-loss curves, and the learning rate's below them, drawn with plotext."""
    try:
        import plotext
    except ModuleNotFoundError as error:
        raise MissingExtra("sdk", needed_by="t1 plot", missing=error.name or "plotext") from error
    width = min(shutil.get_terminal_size((PLOT_WIDTH, 40)).columns, PLOT_WIDTH)
    charts = [_chart(plotext.figure, f"{curves.name}: loss", [curves.loss, curves.eval_loss], width, LOSS_HEIGHT)]
    if curves.learning_rate:
        charts.append(_chart(plotext.figure, "learning rate", [curves.learning_rate], width, RATE_HEIGHT))
    return "\n".join(chart.string(colorless=not color) for chart in charts)


def _chart(figure: Any, title: str, series: list[Curve], width: int, height: int) -> Any:
    """One plotext chart of the curves of ``series`` that have points, by step, built on plotext's
    one figure. Several curves get a legend, in the top right corner (a loss falls away from it)."""
    shown = [curve for curve in series if curve]
    figure.clear()
    figure.theme("simple")
    figure.plot_size(width, height)
    figure.title(title if len(title) < width - 4 else title[: width - 5] + "…")  # plotext drops a longer one
    for curve, marker in zip(shown, ("hd", "•"), strict=False):
        signal = figure.signal(list(curve.steps), list(curve.values), marker=marker).lines(True)
        figure.draw(signal.label(curve.name) if len(shown) > 1 else signal)
    first, last = min(c.steps[0] for c in shown), max(c.steps[-1] for c in shown)
    if len(shown) > 1:
        figure.legend(x=last, y=max(max(c.values) for c in shown), relative=True, ha="right", va="top")
    figure.ruler(axis=0).ticks(sorted({round(first + (last - first) * i / 4) for i in range(5)}))
    figure.label("step", axis=0)
    return figure.build()


def _write_png(curves: TrainingCurves, path: Path) -> None:
    """The curves as a PNG, drawn by matplotlib's Agg canvas (no display, whatever the backend
    configured): loss and eval loss above, the learning rate below when there is one."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as error:
        raise MissingExtra("plot", needed_by="t1 plot -o", missing=error.name or "matplotlib") from error
    rows = 2 if curves.learning_rate else 1
    figure = Figure(figsize=(8, 3 + 2.5 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=[3, 2][:rows])[:, 0]
    figure.suptitle(curves.source)
    for curve, style in ((curves.loss, "-"), (curves.eval_loss, "o-")):
        if curve:
            axes[0].plot(curve.steps, curve.values, style, label=curve.name, markersize=3)
    axes[0].set_ylabel("loss")
    axes[0].legend()
    if curves.learning_rate:
        axes[1].plot(curves.learning_rate.steps, curves.learning_rate.values, color="tab:green")
        axes[1].set_ylabel("learning rate")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as error:
        raise ConfigurationError(f"cannot write {path}: {error.strerror or error}", field="--output") from error
