"""The structural steps of admission, over a CRD's openAPIV3Schema: pruning of unknown fields,
structural defaulting, and the schema check with Kubernetes' messages.

The schema is checked with jsonschema (Draft 4, whose boolean ``exclusiveMinimum`` is OpenAPI
3.0's), plus ``x-kubernetes-list-type`` map/set uniqueness. Each violation becomes a
:class:`~tensorone.errors.FieldError` that says what is allowed and what was given.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import jsonschema.validators

from tensorone.errors import FieldError, field_path, json_type

# --- unknown fields, nulls and defaults -----------------------------------------------------------


def prune_unknown_fields(value: Any, schema: Mapping[str, Any], path: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Remove fields the schema does not declare and report each, as strict field validation does.

    The root's ``metadata`` is ObjectMeta, not the schema's: :mod:`tensorone.api.objectmeta`
    prunes it.
    """
    if isinstance(value, dict):
        return _prune_object(value, schema, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        errors: list[FieldError] = []
        for index, item in enumerate(value):
            errors += prune_unknown_fields(item, schema["items"], (*path, index))
        return errors
    return []


def _prune_object(value: dict[str, Any], schema: Mapping[str, Any], path: tuple[str | int, ...]) -> list[FieldError]:
    errors: list[FieldError] = []
    properties = schema.get("properties")
    if properties is None:
        if isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                errors += prune_unknown_fields(item, schema["additionalProperties"], (*path, key))
        return errors
    for key in list(value):
        if key in properties:
            if path or key != "metadata":
                errors += prune_unknown_fields(value[key], properties[key], (*path, key))
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            allowed = ", ".join(properties)
            errors.append(FieldError(field_path((*path, key)), f"unknown field; allowed here: {allowed}"))
            del value[key]
    return errors


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> None:
    """Apply the schema's defaults in place, as the API server's structural defaulting does.

    A null in a non-nullable field is dropped first (or replaced by the field's default); a
    default fills an absent property of an object that exists, and defaults inside the default
    (or inside any present value) apply in turn.
    """
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        for key, sub in properties.items():
            present = key in value
            if present and value[key] is None and not sub.get("nullable"):
                del value[key]
                present = False
            if not present and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            if key in properties:
                apply_defaults(item, properties[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


# --- the schema check ----------------------------------------------------------------------------


def map_key(item: Mapping[str, Any], keys: list[str]) -> tuple[str, ...]:
    """The identity of a map-list item; repr keeps it hashable whatever (wrong) type a key has."""
    return tuple(repr(item.get(k)) for k in keys)


def _list_type(validator: Any, list_type: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[Any]:
    """``x-kubernetes-list-type``: set items are unique; map items are unique by their keys."""
    if not isinstance(instance, list):
        return
    if list_type == "set":
        yield from _set_duplicates(instance)
    elif list_type == "map":
        yield from _map_duplicates(instance, schema.get("x-kubernetes-list-map-keys", []))


def _set_duplicates(instance: list[Any]) -> Iterator[jsonschema.ValidationError]:
    seen: list[Any] = []
    for index, item in enumerate(instance):
        if item in seen:
            yield jsonschema.ValidationError(
                f"duplicate value {item!r}: the list is a set", path=[index], validator="x-kubernetes-list-type"
            )
        else:
            seen.append(item)


def _map_duplicates(instance: list[Any], keys: list[str]) -> Iterator[jsonschema.ValidationError]:
    seen: set[tuple[Any, ...]] = set()
    for index, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = map_key(item, keys)
        if key in seen:
            described = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
            yield jsonschema.ValidationError(
                f"duplicate entry with {described}: entries are keyed by {', '.join(keys)}",
                path=[index],
                validator="x-kubernetes-list-type",
            )
        seen.add(key)


_format_checker = jsonschema.FormatChecker(formats=())


@_format_checker.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value.upper():
        return False
    dt.datetime.fromisoformat(value.replace("z", "Z"))
    return True


_CrdValidator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type})


def schema_errors(obj: dict[str, Any], schema: dict[str, Any]) -> Iterator[tuple[str, FieldError]]:
    """(keyword, error) for every violation of the openAPIV3Schema, in the schema's field order."""
    validator = _CrdValidator(schema, format_checker=_format_checker)
    for error in validator.iter_errors(obj):
        path = tuple(error.absolute_path)
        keyword = str(error.validator)
        if keyword == "required":
            instance = error.instance if isinstance(error.instance, dict) else {}
            for name in error.validator_value:
                if name not in instance:
                    yield keyword, FieldError(field_path((*path, name)), "required")
            continue
        yield keyword, FieldError(field_path(path), _reason(keyword, error.instance, error.schema, error.message))


# --- messages ------------------------------------------------------------------------------------


def _number(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def range_text(schema: Mapping[str, Any]) -> str:
    """What a numeric schema allows, in words: 'between 1e-06 and 0.1', 'at least 1', ..."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_open, high_open = schema.get("exclusiveMinimum") is True, schema.get("exclusiveMaximum") is True
    lower = f"greater than {_number(low)}" if low_open else f"at least {_number(low)}"
    upper = f"less than {_number(high)}" if high_open else f"at most {_number(high)}"
    if low is not None and high is not None:
        if not low_open and not high_open:
            return f"between {_number(low)} and {_number(high)}"
        return f"{lower} and {upper}"
    return lower if low is not None else upper


def _type_reason(value: Any, schema: Mapping[str, Any]) -> str:
    expected = schema.get("type")
    text = f"must be of type {expected}, got {json_type(value)} {value!r}"
    if expected == "string" and isinstance(value, bool):
        text += " (YAML reads unquoted yes/no/on/off/true/false as booleans: quote the value)"
    return text


def _enum_reason(value: Any, schema: Mapping[str, Any]) -> str:
    allowed = ", ".join(str(v) for v in schema["enum"])
    text = f"must be one of {allowed}, got {value!r}"
    if isinstance(value, bool):
        text += " (YAML reads unquoted yes/no/on/off as booleans: quote the value)"
    return text


def _bound_reason(value: Any, schema: Mapping[str, Any]) -> str:
    return f"must be {range_text(schema)}, got {_number(value)}"


def _min_length_reason(value: Any, schema: Mapping[str, Any]) -> str:
    return "must not be empty" if schema.get("minLength") == 1 else _length_reason(value, schema)


def _length_reason(value: Any, schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minLength"), schema.get("maxLength")
    if low is not None and high is not None:
        return f"must be {low} to {high} characters long, got {len(value)}"
    if high is not None:
        return f"must be at most {high} characters long, got {len(value)}"
    return f"must be at least {low} characters long, got {len(value)}"


def _min_items_reason(value: Any, schema: Mapping[str, Any]) -> str:
    if schema.get("minItems") == 1:
        high = schema.get("maxItems")
        return "must not be empty" + (f" (1 to {high} items)" if high is not None else "")
    return _items_reason(value, schema)


def _items_reason(value: Any, schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and low == high:
        return f"must have exactly {low} items, got {len(value)}"
    if low is not None and high is not None:
        return f"must have {low} to {high} items, got {len(value)}"
    if high is not None:
        return f"must have at most {high} items, got {len(value)}"
    return f"must have at least {low} items, got {len(value)}"


def _pattern_reason(value: Any, schema: Mapping[str, Any]) -> str:
    return f"must match the pattern {schema['pattern']}, got {value!r}"


def _format_reason(value: Any, schema: Mapping[str, Any]) -> str:
    return f"must be an RFC 3339 date-time such as 2024-01-15T10:30:00Z, got {value!r}"


# The message of each schema keyword: what is allowed, and what was given.
_REASONS = {
    "type": _type_reason,
    "enum": _enum_reason,
    "minimum": _bound_reason,
    "maximum": _bound_reason,
    "exclusiveMinimum": _bound_reason,
    "exclusiveMaximum": _bound_reason,
    "minLength": _min_length_reason,
    "maxLength": _length_reason,
    "minItems": _min_items_reason,
    "maxItems": _items_reason,
    "pattern": _pattern_reason,
    "format": _format_reason,
}


def _reason(keyword: str, value: Any, schema: Mapping[str, Any], fallback: str) -> str:
    """The message of one schema violation; jsonschema's own for a keyword without one here."""
    reason = _REASONS.get(keyword)
    return reason(value, schema) if reason else fallback
