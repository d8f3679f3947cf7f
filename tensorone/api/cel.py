"""The CEL rules of a CRD (``x-kubernetes-validations``), evaluated with cel-python as the API
server evaluates them.

Every rule runs at the schema node it is attached to, over the CEL value the API server builds
from the JSON there (typed by the schema). Rules that mention ``oldSelf`` are transition rules:
they run only on update and only where the old object has a value at the same place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from tensorone.api.openapi import map_key
from tensorone.errors import FieldError, field_path

# What the API server lets root-level CEL rules see of metadata.
CEL_VISIBLE_METADATA = ("name", "generateName")

# A value's place in the object: property names and list indexes.
FieldParts = tuple[str | int, ...]


@functools.cache
def cel_environment() -> celpy.Environment:
    """The one CEL environment every rule is compiled in."""
    return celpy.Environment()


@functools.cache
def compiled_rule(rule: str) -> tuple[celpy.Runner, bool]:
    """The runnable program of a CEL rule, and whether it is a transition rule (uses oldSelf)."""
    environment = cel_environment()
    ast = environment.compile(rule)
    is_transition = any(
        token.type == "IDENT" and token.value == "oldSelf" for token in ast.scan_values(lambda v: hasattr(v, "type"))
    )
    return environment.program(ast), is_transition


def rule_errors(
    value: Any, schema: Mapping[str, Any], old: Any, has_old: bool, path: FieldParts = (), *, root: bool = False
) -> list[FieldError]:
    """Evaluate every x-kubernetes-validations rule in the subtree at ``path``; ``old`` is the value
    at the same place in the stored object, when ``has_old``."""
    errors: list[FieldError] = []
    if schema.get("x-kubernetes-validations"):
        errors += _node_rule_errors(value, schema, old, has_old, path, root=root)
    if isinstance(value, dict):
        errors += _property_rule_errors(value, schema, old if has_old else None, path, root=root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        old_items = _correlated_items(value, old if has_old else None, schema)
        for index, item in enumerate(value):
            found, old_item = old_items[index]
            errors += rule_errors(item, schema["items"], old_item, found, (*path, index))
    return errors


def _node_rule_errors(
    value: Any, schema: Mapping[str, Any], old: Any, has_old: bool, path: FieldParts, *, root: bool
) -> list[FieldError]:
    """The failures of the rules attached to this node."""
    errors: list[FieldError] = []
    self_value = to_cel(value, schema, root=root)
    old_value = to_cel(old, schema, root=root) if has_old else None
    for entry in schema["x-kubernetes-validations"]:
        program, is_transition = compiled_rule(entry["rule"])
        if is_transition and not has_old:
            continue
        activation: dict[str, Any] = {"self": self_value}
        if is_transition:
            activation["oldSelf"] = old_value
        result: Any
        try:
            result = program.evaluate(activation)
        except CELEvalError as error:
            result = error
        if isinstance(result, CELEvalError) or not isinstance(result, bool | celtypes.BoolType):
            problem = result.args[0] if isinstance(result, CELEvalError) and result.args else f"{result!r}"
            errors.append(FieldError(field_path(path), f"rule {entry['rule']!r} could not be evaluated: {problem}"))
        elif not result:
            where = _join_field_path(path, entry["fieldPath"]) if entry.get("fieldPath") else field_path(path)
            errors.append(FieldError(where, entry.get("message") or f"failed rule: {entry['rule']}"))
    return errors


def _property_rule_errors(
    value: dict[str, Any], schema: Mapping[str, Any], old: Any, path: FieldParts, *, root: bool
) -> list[FieldError]:
    """The rule failures under each property of an object; the root's metadata has no rules."""
    errors: list[FieldError] = []
    properties: Mapping[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    old_map = old if isinstance(old, dict) else {}
    for key, item in value.items():
        sub = properties.get(key, additional if isinstance(additional, dict) else None)
        if sub is None or (root and key == "metadata"):
            continue
        errors += rule_errors(item, sub, old_map.get(key), key in old_map, (*path, key))
    return errors


def _join_field_path(base: FieldParts, relative: str) -> str:
    """A rule's fieldPath (``.config.custom``, ``.env['name']``) joined onto its node's path."""
    prefix = field_path(base) if base else ""
    return (prefix + relative) if prefix else relative.lstrip(".")


def _correlated_items(value: list[Any], old: Any, schema: Mapping[str, Any]) -> list[tuple[bool, Any]]:
    """For each item, its old counterpart: only map lists correlate items (by their keys), as in
    the API server; items of other lists have no old value, so transition rules skip them."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old, list):
        return [(False, None)] * len(value)
    keys = schema.get("x-kubernetes-list-map-keys", [])
    by_key = {map_key(item, keys): item for item in old if isinstance(item, dict)}
    result: list[tuple[bool, Any]] = []
    for item in value:
        key = map_key(item, keys) if isinstance(item, dict) else None
        result.append((key in by_key, by_key.get(key)) if key is not None else (False, None))
    return result


# --- JSON to CEL ---------------------------------------------------------------------------------


def to_cel(value: Any, schema: Mapping[str, Any], *, root: bool = False) -> Any:
    """A JSON value as the CEL value the API server builds from it: typed by the schema, so a
    ``number`` written as ``0`` is the double ``0.0`` and a ``date-time`` string a timestamp."""
    if value is None:
        return None
    if schema.get("x-kubernetes-int-or-string"):
        return celtypes.IntType(value) if isinstance(value, int) else celtypes.StringType(value)
    kind = schema.get("type")
    if kind == "object" or (kind is None and isinstance(value, dict)):
        return _object_to_cel(value, schema, root=root)
    if kind == "array":
        item_schema = schema.get("items") or {}
        return celtypes.ListType([to_cel(item, item_schema) for item in value])
    if kind == "string":
        return _string_to_cel(value, schema)
    scalar = _SCALAR_TYPES.get(kind)
    return scalar(value) if scalar else json_to_cel(value)


_SCALAR_TYPES: dict[str | None, Callable[[Any], Any]] = {
    "integer": celtypes.IntType,
    "number": lambda value: celtypes.DoubleType(float(value)),
    "boolean": celtypes.BoolType,
}


def _object_to_cel(value: dict[str, Any], schema: Mapping[str, Any], *, root: bool) -> celtypes.MapType:
    properties: Mapping[str, Any] | None = schema.get("properties")
    additional = schema.get("additionalProperties")
    items: dict[Any, Any] = {}
    for key, item in value.items():
        if root and key == "metadata":
            items[celtypes.StringType(key)] = json_to_cel(_visible_metadata(item))
        elif properties is not None and key in properties:
            items[celtypes.StringType(key)] = to_cel(item, properties[key])
        elif isinstance(additional, dict):
            items[celtypes.StringType(key)] = to_cel(item, additional)
        else:
            items[celtypes.StringType(key)] = json_to_cel(item)
    return celtypes.MapType(items)


def _visible_metadata(metadata: Any) -> dict[str, Any]:
    """What root-level rules see of metadata."""
    visible = {k: metadata[k] for k in CEL_VISIBLE_METADATA if isinstance(metadata, dict) and k in metadata}
    if "name" not in visible and "generateName" in visible:
        # The API server generates the name (generateName plus 5 characters) before it
        # validates; rules see a name of that length.
        visible["name"] = f"{visible['generateName']}xxxxx"
    return visible


def _string_to_cel(value: Any, schema: Mapping[str, Any]) -> Any:
    if schema.get("format") == "date-time":
        try:
            return celtypes.TimestampType(value)
        except ValueError:
            # As in the API server, a malformed timestamp is an error only for a rule that reads
            # it; the schema check has already reported it.
            return CELEvalError(f"invalid date-time {value!r}")
    return celtypes.StringType(value)
