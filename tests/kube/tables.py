"""Server-side printing: the ``meta.k8s.io`` Table a real API server answers for custom resources.

``kubectl get`` asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the
columns the server chose. For a custom resource, kube-apiserver (apiextensions-apiserver's
``tableconvertor``) builds them from the CRD version's ``additionalPrinterColumns``:

- a first ``Name`` column (type string, format ``name``), then one column per printer column, with
  the column's own description or ``Custom resource definition column (in JSONPath format): P``;
  a version without printer columns gets one ``Age`` column (``.metadata.creationTimestamp``);
- each cell is the first result of the column's JSONPath (the Kubernetes dialect, evaluated with
  missing keys allowed); no result, or an evaluation error, gives an empty (null) cell;
- ``string`` cells print any value as the JSONPath printer does (objects and lists as compact
  JSON); ``integer`` takes integers and truncates floats; ``number`` takes both as a float;
  ``boolean`` takes booleans; ``date`` turns an RFC 3339 string into an age ("5m", "3h12m",
  ``<invalid>`` when it does not parse); a value of another type gives an empty cell;
- kinds without a printer of their own (CustomResourceDefinitions here) get the default table
  convertor's ``Name`` and ``Created At`` (the RFC 3339 time, not an age);
- each row carries the object as ``includeObject`` asks: ``Metadata`` (the default) a
  PartialObjectMetadata, ``Object`` the whole object, ``None`` nothing.

Pure functions over plain dicts: ``tests/kube/emulator.py`` serves them.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

TABLE_GROUP = "meta.k8s.io"
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT_POLICIES = ("None", "Metadata", "Object")
COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _object_meta_description(field: str) -> str:
    """The OpenAPI description of an ObjectMeta field (the API server's column descriptions
    are these texts), read from the kubernetes client's generated model."""
    from kubernetes.client.models.v1_object_meta import V1ObjectMeta

    description = V1ObjectMeta.model_fields[field].description
    return description or ""


class JsonPathError(ValueError):
    """A JSONPath the Kubernetes parser refuses, or one that fails on an object."""


# -- JSONPath (the Kubernetes dialect of k8s.io/client-go/util/jsonpath) -----------------------


@dataclass(frozen=True)
class _Field:
    name: str  # "*" for every value


@dataclass(frozen=True)
class _Recursive:
    pass


@dataclass(frozen=True)
class _Index:
    start: int | None
    stop: int | None
    step: int | None
    single: bool  # [i] rather than a slice


@dataclass(frozen=True)
class _Union:
    branches: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class _Filter:
    left: tuple[Any, ...]  # the path from @
    operator: str  # "exists" or a comparison
    right: Any  # a literal


_TERMINATORS = set(" \t\r\n.,[]$@{}")
_FILTER = re.compile(r"^([^!<>=]+)([!<>=]+)(.+?)$")


def parse_jsonpath(path: str) -> tuple[Any, ...]:
    """Parse one Kubernetes JSONPath expression (the part between the braces of a template).

    Supported: ``.field`` (backslash escapes a terminator), ``.*``, ``..field`` (recursive),
    ``[n]``, ``[-n]``, ``[a:b]``, ``[a:b:step]``, ``[*]``, ``['key']``, unions ``[a,b]``, and
    filters ``[?(@.path)]`` and ``[?(@.path OP literal)]`` with ``== != < > <= >=``."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    steps, rest = _parse_steps(text, path)
    if rest:
        raise JsonPathError(f"JSONPath {path!r}: unexpected {rest!r}")
    return steps


def _parse_steps(text: str, path: str) -> tuple[tuple[Any, ...], str]:
    steps: list[Any] = []
    position = 0
    while position < len(text):
        char = text[position]
        if text.startswith("..", position):
            steps.append(_Recursive())
            position += 1  # the second dot starts the field
        elif char == ".":
            position += 1
            name, position = _read_field(text, position)
            if name:
                steps.append(_Field(name))
        elif char == "[":
            end = _closing_bracket(text, position, path)
            steps.append(_parse_bracket(text[position + 1 : end], path))
            position = end + 1
        elif char == "@" and not steps:
            position += 1
        else:
            return tuple(steps), text[position:]
    return tuple(steps), ""


def _read_field(text: str, position: int) -> tuple[str, int]:
    name = ""
    while position < len(text) and text[position] not in _TERMINATORS:
        if text[position] == "\\" and position + 1 < len(text):
            position += 1
        name += text[position]
        position += 1
    return name, position


def _closing_bracket(text: str, start: int, path: str) -> int:
    depth, quote = 0, ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            quote = "" if char == quote and text[index - 1] != "\\" else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
    raise JsonPathError(f"JSONPath {path!r}: unterminated array")


def _literal(text: str, path: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in {"true", "false"}:
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise JsonPathError(f"JSONPath {path!r}: {text!r} is not a string, number or boolean") from None


def _parse_bracket(inner: str, path: str) -> Any:
    inner = inner.strip()
    if inner.startswith("?"):
        body = inner[1:].strip()
        if not (body.startswith("(") and body.endswith(")")):
            raise JsonPathError(f"JSONPath {path!r}: a filter is written [?(...)]")
        body = body[1:-1].strip()
        match = _FILTER.match(body)
        left_text, operator, right = (body, "exists", None) if match is None else match.groups()
        if operator not in {"exists", "==", "!=", "<", ">", "<=", ">="}:
            raise JsonPathError(f"JSONPath {path!r}: unrecognized filter operator {operator}")
        left, rest = _parse_steps(left_text.strip(), path)
        if rest:
            raise JsonPathError(f"JSONPath {path!r}: unexpected {rest!r} in a filter")
        return _Filter(left, operator, None if right is None else _literal(right, path))
    if "," in inner:
        return _Union(tuple(_parse_steps(f"[{part.strip()}]", path)[0] for part in inner.split(",")))
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return _Field(inner[1:-1])
    if inner == "*":
        return _Index(None, None, None, single=False)
    parts = inner.split(":")
    if len(parts) > 3:
        raise JsonPathError(f"JSONPath {path!r}: [{inner}] has too many colons")
    try:
        numbers = [int(part) if part.strip() else None for part in parts]
    except ValueError:
        raise JsonPathError(f"JSONPath {path!r}: [{inner}] is not an index or a slice") from None
    if len(numbers) == 1:
        return _Index(numbers[0], None, None, single=True)
    return _Index(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else None, single=False)


def _descendants(value: Any) -> Iterator[Any]:
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from _descendants(child)


def _compare(left: Any, operator: str, right: Any) -> bool:
    numbers = (int, float)
    comparable = (
        (isinstance(left, str) and isinstance(right, str))
        or (isinstance(left, bool) and isinstance(right, bool))
        or (
            isinstance(left, numbers)
            and isinstance(right, numbers)
            and not isinstance(left, bool)
            and not isinstance(right, bool)
        )
    )
    if not comparable:
        raise JsonPathError(f"incompatible types for comparison: {left!r} {operator} {right!r}")
    if operator == "==":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    if isinstance(left, bool):
        raise JsonPathError(f"invalid type for comparison: {left!r} {operator} {right!r}")
    return bool({"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[operator])


def _step(values: Iterable[Any], step: Any) -> list[Any]:
    results: list[Any] = []
    for value in values:
        if isinstance(step, _Field):
            results.extend(_field(value, step.name))
        elif isinstance(step, _Recursive):
            results.extend(_descendants(value))
        elif isinstance(step, _Index) and isinstance(value, list):
            results.extend(_index(value, step))
        elif isinstance(step, _Union):
            for branch in step.branches:
                results.extend(evaluate_steps(branch, value))
        elif isinstance(step, _Filter) and isinstance(value, list):
            results.extend(_filtered(value, step))
    return results


def _field(value: Any, name: str) -> list[Any]:
    if isinstance(value, dict):
        if name == "*":
            return [value[key] for key in sorted(value)]
        return [value[name]] if name in value else []
    if isinstance(value, list) and name == "*":
        return list(value)
    return []


def _filtered(items: list[Any], step: _Filter) -> list[Any]:
    kept = []
    for item in items:
        found = evaluate_steps(step.left, item)
        if step.operator == "exists":
            if found:
                kept.append(item)
        elif len(found) > 1:
            raise JsonPathError("can only compare one element at a time")
        elif found and _compare(found[0], step.operator, step.right):
            kept.append(item)
    return kept


def _index(value: list[Any], step: _Index) -> list[Any]:
    length = len(value)
    start = step.start or 0
    start = start + length if start < 0 else start
    if step.single:
        stop = start + 1
    else:
        stop = length if step.stop is None else step.stop
        stop = stop + length if stop < 0 else stop
    if start == stop:
        return []
    if not 0 <= start < length or not 0 <= stop <= length:
        raise JsonPathError(f"array index out of bounds: index {start}, length {length}")
    if start > stop:
        raise JsonPathError(f"starting index {start} is greater than ending index {stop}")
    return value[start : stop : step.step or 1]


def evaluate_steps(steps: tuple[Any, ...], obj: Any) -> list[Any]:
    """Every value a parsed JSONPath reaches in ``obj`` (missing keys give no value)."""
    values = [obj]
    for step in steps:
        values = _step(values, step)
    return values


# -- Go's text forms, which the cells of string columns use -------------------------------------


def go_float_text(value: float) -> str:
    """``fmt.Sprint(float64)``: shortest digits, exponent form below 1e-4 and from 1e6 (``%g``
    with Go's shortest-precision threshold 6): ``0.5``, ``100000``, ``1e+06``, ``1.5e-05``."""
    if math.isnan(value) or math.isinf(value):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    digits = Decimal(repr(value))
    if digits.is_zero():
        return "-0" if str(digits).startswith("-") else "0"
    exponent = digits.adjusted()
    if exponent < -4 or exponent >= 6:
        mantissa = format(digits.scaleb(-exponent).normalize(), "f")
        return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return format(digits.normalize(), "f")


def _go_json_number(value: float) -> str:
    # encoding/json: positional notation from 1e-6 up to 1e21, else exponent with no padding.
    if value == 0 or 1e-6 <= abs(value) < 1e21:
        return format(Decimal(repr(value)).normalize(), "f") if value else "0"
    text = repr(value)
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", text)


def go_json(value: Any) -> str:
    """``json.Marshal`` of a decoded JSON value: sorted keys, no spaces, Go's number forms and
    its HTML-safe escapes of ``<``, ``>`` and ``&``."""
    if isinstance(value, dict):
        inner = ",".join(f"{go_json(str(key))}:{go_json(value[key])}" for key in sorted(value))
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(item) for item in value) + "]"
    if isinstance(value, float):
        return _go_json_number(value)
    text = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(char, escape)
    return text.replace("\u2029", "\\u2029")


def jsonpath_text(value: Any) -> str:
    """How the JSONPath printer prints one result: objects and lists as JSON, the rest as Go's
    ``fmt.Sprint`` (``true``, ``5``, ``0.5``)."""
    if isinstance(value, dict | list):
        return go_json(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float_text(value)
    return str(value)


# -- ages -------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration`` of apimachinery: about two significant figures of a duration
    ("45s", "3m20s", "25m", "5h12m", "3d4h", "2y30d"); a time more than a second in the future
    is ``<invalid>``."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str, now: datetime.datetime) -> str:
    """The age a ``date`` cell shows for an RFC 3339 timestamp: ``<unknown>`` for an empty one
    (Go's zero time), ``<invalid>`` for one that does not parse."""
    if timestamp in {"", "null"}:
        return "<unknown>"
    if not _RFC3339.match(timestamp):
        return "<invalid>"
    try:
        moment = datetime.datetime.fromisoformat(timestamp.upper().replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((now - moment).total_seconds())


# -- columns and tables ------------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry of a CRD version, with its JSONPath parsed."""

    name: str
    type: str
    json_path: str
    description: str = ""
    format: str = ""
    priority: int = 0

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(
                f"additionalPrinterColumns[{self.name}].type: {self.type!r} is not one of {', '.join(COLUMN_TYPES)}"
            )
        try:
            parse_jsonpath(self.json_path)
        except JsonPathError as exc:
            raise ValueError(f"additionalPrinterColumns[{self.name}].jsonPath: {exc}") from exc

    @classmethod
    def from_crd(cls, column: dict[str, Any]) -> PrinterColumn:
        """From the CRD's camelCase form."""
        return cls(
            name=column["name"],
            type=column["type"],
            json_path=column["jsonPath"],
            description=column.get("description", ""),
            format=column.get("format", ""),
            priority=int(column.get("priority", 0)),
        )

    def definition(self) -> dict[str, Any]:
        """The Table's ``columnDefinitions`` entry."""
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description
            or f"Custom resource definition column (in JSONPath format): {self.json_path}",
            "priority": self.priority,
        }

    def cell(self, obj: dict[str, Any], now: datetime.datetime) -> Any:
        """The cell of this column for one object (None: empty)."""
        try:
            results = evaluate_steps(parse_jsonpath(self.json_path), obj)
        except JsonPathError:
            return None
        if not results or results[0] is None:
            return None
        value = results[0]
        if self.type == "string":
            return jsonpath_text(value)
        if self.type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)  # a float is truncated toward zero, as Go's int64(f)
        if self.type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if self.type == "boolean" and isinstance(value, bool):
            return value
        if self.type == "date" and isinstance(value, str):
            return age(value, now)
        return None


@dataclass(frozen=True)
class CreatedAtColumn(PrinterColumn):
    """The "Created At" column of the API server's default table convertor (the one kinds without
    a printer of their own get, CustomResourceDefinitions among them): the creation time itself,
    in RFC 3339 and UTC, not an age."""

    name: str = "Created At"
    type: str = "date"
    json_path: str = ".metadata.creationTimestamp"
    description: str = ""

    def definition(self) -> dict[str, Any]:
        """The column definition, described as ObjectMeta.creationTimestamp."""
        return {**super().definition(), "description": _object_meta_description("creation_timestamp")}

    def cell(self, obj: dict[str, Any], now: datetime.datetime) -> Any:
        """Go's ``Time.UTC().Format(time.RFC3339)``; the zero time when there is none."""
        stamp = (obj.get("metadata") or {}).get("creationTimestamp") or ""
        if not _RFC3339.match(stamp):
            return "0001-01-01T00:00:00Z"
        moment = datetime.datetime.fromisoformat(stamp.upper().replace("Z", "+00:00"))
        return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def crd_columns(version: dict[str, Any]) -> list[PrinterColumn]:
    """The printer columns of one ``spec.versions[]`` entry of a CRD; a version without any gets
    the API server's default ``Age`` column."""
    columns = version.get("additionalPrinterColumns") or []
    if not columns:
        return [
            PrinterColumn(
                name="Age",
                type="date",
                json_path=".metadata.creationTimestamp",
                description=_object_meta_description("creation_timestamp"),
            )
        ]
    return [PrinterColumn.from_crd(column) for column in columns]


def _row_object(obj: dict[str, Any], include_object: str, table_version: str) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"{TABLE_GROUP}/{table_version}",
        "metadata": obj.get("metadata", {}),
    }


def to_table(
    columns: list[PrinterColumn],
    objects: list[dict[str, Any]],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    table_version: str = "v1",
    no_headers: bool = False,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The Table of ``objects`` (one for a GET of one object, every item for a LIST).

    ``no_headers`` leaves the column definitions out (null), as in the watch events after the
    first."""
    if include_object not in INCLUDE_OBJECT_POLICIES:
        raise ValueError(f"includeObject: {include_object!r} is not one of {', '.join(INCLUDE_OBJECT_POLICIES)}")
    if table_version not in TABLE_VERSIONS:
        raise ValueError(f"Table version {table_version!r} is not one of {', '.join(TABLE_VERSIONS)}")
    moment = now or datetime.datetime.now(tz=datetime.UTC)
    name_column = {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": _object_meta_description("name"),
        "priority": 0,
    }
    rows = []
    for obj in objects:
        row: dict[str, Any] = {
            "cells": [obj.get("metadata", {}).get("name", ""), *(column.cell(obj, moment) for column in columns)]
        }
        included = _row_object(obj, include_object, table_version)
        if included is not None:
            row["object"] = included
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"{TABLE_GROUP}/{table_version}",
        "metadata": {"resourceVersion": resource_version} if resource_version else {},
        "columnDefinitions": None if no_headers else [name_column, *(column.definition() for column in columns)],
        "rows": rows,
    }


def wanted_table_version(accept: str) -> str | None:
    """The Table version the client's ``Accept`` header asks for first, or None when it prefers
    (or only takes) the plain object."""
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        params = dict(parameter.partition("=")[::2] for parameter in parameters)
        if media_type not in {"application/json", "*/*", "application/*"}:
            continue
        if params.get("as") == "Table" and params.get("g") == TABLE_GROUP and params.get("v") in TABLE_VERSIONS:
            return params["v"]
        if "as" not in params:
            return None
    return None
