"""How ``t1`` prints: aligned tables, numbers, money and times (RFC 3339, as Kubernetes writes
them), loss sparklines, and the ``-o`` formats every verb that shows an object or a list takes.

The default format of each verb is its own (a table, or a few lines of text); ``-o json`` and
``-o yaml`` print the same data as a document, ``-o wide`` the default view with more columns.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tensorone.api.timestamps import rfc3339

FORMATS = ("json", "yaml", "wide")
# The eight heights of a sparkline, lowest first.
SPARKS = "▁▂▃▄▅▆▇█"


def add_output_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``-o/--output``: ``default`` (the verb's own view, the default: table or text), json, yaml
    or wide."""
    parser.add_argument(
        "-o",
        "--output",
        choices=(default, *FORMATS),
        default=default,
        help=f"{default} (the default), json, yaml, or wide (the {default} with more)",
    )


def print_document(data: Any, output: str) -> None:
    """Data as a JSON (indented) or YAML document; datetimes in RFC 3339."""
    if output == "json":
        print(json.dumps(data, indent=2, default=_json_default))
        return
    from tensorone.cli.manifests import dump_manifest

    sys.stdout.write(dump_manifest(json.loads(json.dumps(data, default=_json_default))))


def _json_default(value: Any) -> str:
    return rfc3339(value) if isinstance(value, datetime) else str(value)


def add_result_output_argument(parser: argparse.ArgumentParser, *, documents: bool = True) -> None:
    """``-o/--output`` of a verb that changes something, as kubectl's: a sentence (the default),
    ``name`` (kind/name per object, for scripts), or the object as it now is in json or yaml
    (``documents``; a delete has no object left to print)."""
    choices = ("text", "name", "json", "yaml") if documents else ("text", "name")
    shown = "name, json or yaml (the object as it now is)" if documents else "name"
    parser.add_argument(
        "-o", "--output", choices=choices, default="text", help=f"text (a sentence, the default), or {shown}"
    )


class Results:
    """What a verb did to several objects: each sentence or name printed as soon as it is done
    (a later failure leaves the earlier ones said), the documents printed together at the end."""

    def __init__(self, output: str) -> None:
        self.output = output
        self._documents: list[tuple[str, str, Any]] = []

    def add(self, ref: str, sentence: str, document: Any) -> None:
        if self.output in ("json", "yaml"):
            self._documents.append((ref, sentence, document))
        else:
            print_results(self.output, [(ref, sentence, document)])

    def done(self) -> None:
        if self._documents:
            print_results(self.output, self._documents)


def print_results(output: str, results: Sequence[tuple[str, str, Any]]) -> None:
    """What a verb did, one ``(ref, sentence, document)`` per object: the sentences, the refs
    (``-o name``), or the documents (one, or a List of several, as kubectl prints them)."""
    if output == "name":
        print("\n".join(ref for ref, _, _ in results))
    elif output in ("json", "yaml"):
        documents = [document for _, _, document in results]
        print_document(
            documents[0] if len(documents) == 1 else {"apiVersion": "v1", "kind": "List", "items": documents}, output
        )
    else:
        print("\n".join(sentence for _, sentence, _ in results))


def add_wait_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--wait [SECONDS]`` of a delete: wait until ``what`` is gone."""
    parser.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=60.0,
        metavar="SECONDS",
        help=f"wait until {what} is gone (default 60 s when given without a value)",
    )


def print_deletion(ref: str, state: str, wait: float | None, held_by: str) -> None:
    """What a delete left: ``ref`` (kind/name) gone, or still terminating because ``held_by``."""
    if state == "deleted":
        print(f"{ref} deleted")
    elif wait:
        print(f"{ref} still terminating after {wait:g} s: {held_by}")
    else:
        print(f"{ref} terminating: {held_by} (--wait waits until it is gone)")


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as columns separated by two spaces, each as wide as its widest cell, as kubectl does."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows
    )


def print_table(rows: Sequence[Sequence[str]]) -> None:
    sys.stdout.write(table(rows))


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def money(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def when(value: datetime | None) -> str:
    return "-" if value is None else rfc3339(value)


def json_time(value: datetime | None) -> str | None:
    """A time for a JSON or YAML document: RFC 3339, or null."""
    return None if value is None else rfc3339(value)


def duration(seconds: float | None) -> str:
    """Seconds as kubectl shows an age: 45s, 12m5s, 3h4m, 2d5h."""
    if seconds is None:
        return "-"
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def sparkline(values: Sequence[float], width: int = 64) -> str:
    """Values as a line of block characters, lowest ▁ to highest █; at most ``width`` characters
    (every value kept when there are fewer, else evenly spaced ones, the first and last included)."""
    if not values:
        return ""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    low, high = min(values), max(values)
    spread = high - low
    if spread <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(int((v - low) / spread * len(SPARKS)), len(SPARKS) - 1)] for v in values)
