"""Generate the field reference of docs/api.md from the API models.

``python -m tensorone.api.docs`` rewrites everything in docs/api.md below the marker line (the
hand-written introduction above it is kept); ``--check`` exits 1 when the committed file differs
from what the models generate. The tables come from the same structural schema the CRDs carry,
so every field path, type, default, allowed range or value, and description matches what the API
server enforces.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tensorone.api import API_VERSION
from tensorone.api.crd import KINDS, REPO_ROOT, Kind, structural_schema
from tensorone.api.openapi import range_text

DOC_PATH = REPO_ROOT / "docs" / "api.md"
MARKER = "<!-- Generated below by `python -m tensorone.api.docs` from tensorone/api/v1alpha1: do not edit below. -->"


def render_reference() -> str:
    """The generated part of docs/api.md: one field table and one rule table per kind."""
    sections = [MARKER, ""]
    for kind in KINDS:
        sections += _kind_section(kind)
    return "\n".join(sections).rstrip() + "\n"


def _kind_section(kind: Kind) -> list[str]:
    schema = structural_schema(kind.model)
    lines = [
        f"## {kind.kind} ({API_VERSION})",
        "",
        _cell(schema.get("description", "")),
        "",
        f"`kubectl get {kind.plural}`"
        + (f" (short name `{kind.short_names[0]}`)" if kind.short_names else "")
        + " shows: "
        + ", ".join(column["name"] for column in kind.printer_columns)
        + ".",
        "",
    ]
    for part in ("spec", "status"):
        lines += [
            f"### {part}",
            "",
            "| Field | Type | Default | Allowed | Description |",
            "|---|---|---|---|---|",
        ]
        lines += [_row(path, node, required) for path, node, required in _fields(schema["properties"][part], part)]
        lines.append("")
    rules = list(_rules(schema, ""))
    if rules:
        lines += [
            f"### {kind.kind} rules",
            "",
            "Checked at apply time by CEL (`x-kubernetes-validations`). A rule that mentions `oldSelf` is a",
            "transition rule: it runs on update only.",
            "",
            "| Reported on | Rule | Message |",
            "|---|---|---|",
        ]
        for where, rule in rules:
            field = (where + rule.get("fieldPath", "")).lstrip(".") or "(object)"
            lines.append(f"| `{field}` | `{_cell(rule['rule'])}` | {_cell(rule['message'])} |")
        lines.append("")
    return lines


def _fields(
    node: Mapping[str, Any], path: str, required: bool = False
) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    """Every field below ``node`` (depth first, in declaration order), with whether it is required."""
    yield path, node, required
    needed = set(node.get("required", []))
    for name, sub in (node.get("properties") or {}).items():
        yield from _fields(sub, f"{path}.{name}", name in needed)
    items = node.get("items")
    if isinstance(items, dict) and items.get("properties"):
        needed = set(items.get("required", []))
        for name, sub in items["properties"].items():
            yield from _fields(sub, f"{path}[].{name}", name in needed)


def _rules(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for rule in node.get("x-kubernetes-validations", []):
        yield path, rule
    for name, sub in (node.get("properties") or {}).items():
        yield from _rules(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _rules(node["items"], f"{path}[]")


def _type(node: Mapping[str, Any]) -> str:
    kind = str(node.get("type", "any"))
    if kind == "array":
        items = node.get("items") or {}
        kind = f"array of {_type(items)}"
        if node.get("x-kubernetes-list-type") == "map":
            kind += f" (keyed by {', '.join(node.get('x-kubernetes-list-map-keys', []))})"
        elif node.get("x-kubernetes-list-type") == "set":
            kind += " (unique)"
    elif node.get("format"):
        kind += f" ({node['format']})"
    elif kind == "object" and node.get("x-kubernetes-preserve-unknown-fields"):
        kind = "object (free-form)"
    return kind


def _allowed(node: Mapping[str, Any]) -> str:
    return _cell(_allowed_text(node))


def _allowed_text(node: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append(", ".join(f"`{value}`" for value in node["enum"]))
    if "minimum" in node or "maximum" in node:
        parts.append(range_text(node))
    low, high = node.get("minLength"), node.get("maxLength")
    if high is not None:
        parts.append(f"{low or 0} to {high} characters")
    elif low:
        parts.append(f"at least {low} characters")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    low, high = node.get("minItems"), node.get("maxItems")
    if low is not None and low == high:
        parts.append(f"exactly {low} items")
    elif high is not None:
        parts.append(f"{low or 0} to {high} items")
    items = node.get("items")
    if isinstance(items, dict) and not items.get("properties"):
        each = _allowed_text(items)
        if each:
            parts.append(f"each item: {each}")
    return "; ".join(parts)


def _row(path: str, node: Mapping[str, Any], required: bool) -> str:
    default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
    name = f"`{path}`" + (" (required)" if required else "")
    return f"| {name} | {_type(node)} | {default} | {_allowed(node)} | {_cell(node.get('description', ''))} |"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def document(current: str) -> str:
    """docs/api.md with its hand-written part (up to the marker) kept and the reference regenerated."""
    head, found, _ = current.partition(MARKER)
    if not found:
        raise ValueError(
            f"{DOC_PATH} has no generated-part marker; add this line where the reference starts:\n{MARKER}"
        )
    return head + render_reference()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tensorone.api.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md differs from the models")
    parser.add_argument("--path", type=Path, default=DOC_PATH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    current = args.path.read_text()
    wanted = document(current)
    if args.check:
        if current != wanted:
            print(f"out of date (run `python -m tensorone.api.docs`): {args.path}", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
