"""Validate TrainingJob and Dataset objects the way the Kubernetes API server does for our CRDs.

The steps, in the API server's order:

1. **Unknown fields** are refused, as kubectl's default strict server-side field validation does
   (``unknown field "spec.foo"``), and pruned before the next steps.
2. **Nulls** of fields that are not nullable are dropped, then **defaults** are applied
   structurally: a property's ``default`` fills it when absent, and nested defaults apply only
   where their parent object exists.
3. **ObjectMeta** rules (name, namespace, labels, annotations).
4. The **openAPIV3Schema** is checked with jsonschema (Draft 4, whose boolean
   ``exclusiveMinimum`` is OpenAPI 3.0's), plus ``x-kubernetes-list-type`` map/set uniqueness.
5. Every **CEL rule** (``x-kubernetes-validations``) is evaluated with cel-python at the node it
   is attached to. Rules that mention ``oldSelf`` are transition rules: they run only on update
   and only where the old object has a value at the same place. As in the API server, the rules
   are skipped when a *blocking* schema error (wrong type, missing required field, value not in
   the enum, too long, too many items) means they would see data of the wrong shape; one extra
   error then says so.

Unlike the API server, which stops at the first stage that finds unknown fields, this reports
unknown fields together with the schema errors, so one run shows as much as it can. Every problem
is collected and raised at once as :class:`~tensorone.errors.ValidationFailed`, each
:class:`~tensorone.errors.FieldError` naming the field (``spec.config.training.learningRate``) and
what is allowed there.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import celpy
import jsonschema
import jsonschema.validators
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from tensorone.api.crd import CRD_DIR, KINDS, crd_for, load_crds
from tensorone.api.v1alpha1.base import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN
from tensorone.errors import ConfigurationError, FieldError, ValidationFailed

# Fields of metav1.ObjectMeta: anything else under metadata is an unknown field.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

# What the API server lets root-level CEL rules see of metadata.
_CEL_VISIBLE_META = ("name", "generateName")

_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_MAX_ANNOTATIONS_BYTES = 256 * 1024

# Schema errors after which the API server does not evaluate CEL rules (hasBlockingErr in
# apiextensions-apiserver): the data may not have the shape the rules were compiled against.
_BLOCKING_KEYWORDS = frozenset({"type", "required", "enum", "maxLength", "maxItems"})
_RULES_SKIPPED = (
    "some validation rules were not checked because the object was invalid; correct the other errors "
    "to complete validation"
)


@functools.cache
def committed_crds() -> dict[str, dict[str, Any]]:
    """The CRDs committed in crds/, by kind; read once. An installed package has no crds/ folder:
    the CRDs are then generated from the models (the drift test keeps the two identical)."""
    crds = load_crds() if CRD_DIR.is_dir() else {}
    return crds or {kind.kind: crd_for(kind) for kind in KINDS}


def validate(obj: dict[str, Any], old: dict[str, Any] | None = None, *, crds: dict[str, dict] | None = None) -> dict:
    """Validate ``obj`` (a TrainingJob or Dataset) as the API server would on create, or on update
    when ``old`` (the stored object) is given; return a defaulted deep copy.

    ``crds`` maps kind to CustomResourceDefinition; the committed crds/ by default. Raises
    :class:`ValidationFailed` listing every problem found.
    """
    crds = committed_crds() if crds is None else crds
    obj = _json_value(obj)
    if not isinstance(obj, dict):
        raise ValidationFailed([FieldError("<object>", f"must be a mapping, got {_json_type(obj)}")])
    schema = _schema_for(obj, crds)
    kind = obj["kind"]

    errors: list[FieldError] = []
    errors += _prune_unknown_fields(obj, schema, ())
    apply_defaults(obj, schema)
    metadata = obj.get("metadata")
    errors += _metadata_errors(metadata)
    # A missing or mistyped name is a Required / TypeInvalid error, blocking like the schema's.
    name_unusable = not isinstance(metadata, dict) or not isinstance(
        metadata.get("name", metadata.get("generateName")), str
    )

    schema_errors = list(_schema_errors(obj, schema))
    errors += [error for _, error in schema_errors]
    if name_unusable or any(keyword in _BLOCKING_KEYWORDS for keyword, _ in schema_errors):
        errors.append(FieldError(kind, _RULES_SKIPPED))
    else:
        old_obj: Any = None
        if old is not None:
            old_obj = _json_value(old)
            _prune_unknown_fields(old_obj, schema, ())
            apply_defaults(old_obj, schema)
        errors += _rule_errors(obj, schema, old_obj, old is not None, (), root=True)

    if errors:
        raise ValidationFailed(_unique(errors))
    return obj


def _schema_for(obj: dict[str, Any], crds: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The openAPIV3Schema of obj's kind and version; refuses unknown kinds and versions."""
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in crds:
        allowed = ", ".join(sorted(crds))
        raise ValidationFailed([FieldError("kind", f"must be one of {allowed}, got {kind!r}")])
    crd = crds[kind]
    group = crd["spec"]["group"]
    versions = {f"{group}/{v['name']}": v for v in crd["spec"]["versions"] if v.get("served", True)}
    api_version = obj.get("apiVersion")
    if api_version not in versions:
        allowed = ", ".join(sorted(versions))
        raise ValidationFailed([FieldError("apiVersion", f"must be {allowed} for kind {kind}, got {api_version!r}")])
    schema: dict[str, Any] = versions[api_version]["schema"]["openAPIV3Schema"]
    return schema


# --- paths -------------------------------------------------------------------------------------


def field_path(parts: tuple[str | int, ...] | list[str | int]) -> str:
    """``("spec", "tags", 0)`` -> ``spec.tags[0]``, the API server's spelling of a field path."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "<object>"


def _join_field_path(base: tuple[str | int, ...], relative: str) -> str:
    """A rule's fieldPath (``.config.custom``, ``.env['name']``) joined onto its node's path."""
    prefix = field_path(base) if base else ""
    return (prefix + relative) if prefix else relative.lstrip(".")


# --- JSON normalisation --------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """A deep copy in JSON terms: YAML timestamps become RFC 3339 strings, tuples lists."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return copy.deepcopy(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --- unknown fields, nulls and defaults -----------------------------------------------------------


def _prune_unknown_fields(value: Any, schema: Mapping[str, Any], path: tuple[str | int, ...]) -> list[FieldError]:
    """Remove fields the schema does not declare and report each, as strict field validation does."""
    errors: list[FieldError] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        if not path:
            metadata = value.get("metadata")
            if isinstance(metadata, dict):
                for key in [k for k in metadata if k not in OBJECT_META_FIELDS]:
                    errors.append(FieldError(field_path(("metadata", key)), "unknown field"))
                    del metadata[key]
        if properties is not None:
            for key in list(value):
                if key in properties:
                    if path or key != "metadata":
                        errors += _prune_unknown_fields(value[key], properties[key], (*path, key))
                elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                    allowed = ", ".join(properties)
                    errors.append(FieldError(field_path((*path, key)), f"unknown field; allowed here: {allowed}"))
                    del value[key]
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                errors += _prune_unknown_fields(item, schema["additionalProperties"], (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += _prune_unknown_fields(item, schema["items"], (*path, index))
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


# --- ObjectMeta ----------------------------------------------------------------------------------


def _metadata_errors(metadata: Any) -> list[FieldError]:
    """The API server's own ObjectMeta rules for a namespaced custom resource."""
    if metadata is None:
        return [FieldError("metadata.name", "required: set metadata.name (or metadata.generateName)")]
    if not isinstance(metadata, dict):
        return [FieldError("metadata", f"must be an object, got {_json_type(metadata)}")]
    errors: list[FieldError] = []
    name = metadata.get("name")
    if name is None:
        if not metadata.get("generateName"):
            errors.append(FieldError("metadata.name", "required: set metadata.name (or metadata.generateName)"))
    elif not isinstance(name, str):
        errors.append(FieldError("metadata.name", f"must be a string, got {_json_type(name)}"))
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        errors.append(
            FieldError(
                "metadata.name",
                f"must be a lower-case DNS subdomain (a-z, 0-9, '-' and '.', at most 253 characters), got {name!r}",
            )
        )
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace)
    ):
        errors.append(
            FieldError("metadata.namespace", f"must be a DNS label (at most 63 characters), got {namespace!r}")
        )
    errors += _label_errors(metadata.get("labels"))
    annotations = metadata.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            errors.append(FieldError("metadata.annotations", "must be a map of string keys to string values"))
        elif sum(len(k) + len(v) for k, v in annotations.items()) > _MAX_ANNOTATIONS_BYTES:
            errors.append(FieldError("metadata.annotations", "must have at most 262144 bytes in total"))
    return errors


def _label_errors(labels: Any) -> list[FieldError]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [FieldError("metadata.labels", f"must be a map of strings, got {_json_type(labels)}")]
    errors: list[FieldError] = []
    for key, value in labels.items():
        path = f"metadata.labels.{key}"
        prefix, _, name = key.rpartition("/")
        if (prefix and not _DNS_SUBDOMAIN.match(prefix)) or len(name) > 63 or not _QUALIFIED_NAME.match(name):
            errors.append(
                FieldError(path, "label key must be a qualified name ([prefix/]name, name at most 63 characters)")
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(
                FieldError(path, f"label value must be at most 63 characters of A-Za-z0-9 '-', '_', '.', got {value!r}")
            )
    return errors


# --- OpenAPI schema ------------------------------------------------------------------------------


def _list_type(validator: Any, list_type: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[Any]:
    """``x-kubernetes-list-type``: set items are unique; map items are unique by their keys."""
    if not isinstance(instance, list):
        return
    if list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(instance):
            if item in seen:
                yield jsonschema.ValidationError(
                    f"duplicate value {item!r}: the list is a set", path=[index], validator="x-kubernetes-list-type"
                )
            else:
                seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen_keys: set[tuple[Any, ...]] = set()
        for index, item in enumerate(instance):
            if not isinstance(item, dict):
                continue
            key = _map_key(item, keys)
            if key in seen_keys:
                described = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
                yield jsonschema.ValidationError(
                    f"duplicate entry with {described}: entries are keyed by {', '.join(keys)}",
                    path=[index],
                    validator="x-kubernetes-list-type",
                )
            seen_keys.add(key)


def _map_key(item: Mapping[str, Any], keys: list[str]) -> tuple[str, ...]:
    """The identity of a map-list item; repr keeps it hashable whatever (wrong) type a key has."""
    return tuple(repr(item.get(k)) for k in keys)


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


def _schema_errors(obj: dict[str, Any], schema: dict[str, Any]) -> Iterator[tuple[str, FieldError]]:
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


def _number(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def range_text(schema: Mapping[str, Any]) -> str:
    """What a numeric schema allows, in words: 'between 1e-06 and 0.1', 'at least 1', ..."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_open, high_open = schema.get("exclusiveMinimum") is True, schema.get("exclusiveMaximum") is True
    if low is not None and high is not None:
        if not low_open and not high_open:
            return f"between {_number(low)} and {_number(high)}"
        lower = f"greater than {_number(low)}" if low_open else f"at least {_number(low)}"
        upper = f"less than {_number(high)}" if high_open else f"at most {_number(high)}"
        return f"{lower} and {upper}"
    if low is not None:
        return f"greater than {_number(low)}" if low_open else f"at least {_number(low)}"
    return f"less than {_number(high)}" if high_open else f"at most {_number(high)}"


def _reason(keyword: str, value: Any, schema: Mapping[str, Any], fallback: str) -> str:
    """The message of one schema violation: what is allowed, and what was given."""
    if keyword == "type":
        expected = schema.get("type")
        text = f"must be of type {expected}, got {_json_type(value)} {value!r}"
        if expected == "string" and isinstance(value, bool):
            text += " (YAML reads unquoted yes/no/on/off/true/false as booleans: quote the value)"
        return text
    if keyword == "enum":
        allowed = ", ".join(str(v) for v in schema["enum"])
        text = f"must be one of {allowed}, got {value!r}"
        if isinstance(value, bool):
            text += " (YAML reads unquoted yes/no/on/off as booleans: quote the value)"
        return text
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"must be {range_text(schema)}, got {_number(value)}"
    if keyword in ("minLength", "maxLength"):
        low, high = schema.get("minLength"), schema.get("maxLength")
        if keyword == "minLength" and low == 1:
            return "must not be empty"
        if low is not None and high is not None:
            return f"must be {low} to {high} characters long, got {len(value)}"
        if high is not None:
            return f"must be at most {high} characters long, got {len(value)}"
        return f"must be at least {low} characters long, got {len(value)}"
    if keyword in ("minItems", "maxItems"):
        low, high = schema.get("minItems"), schema.get("maxItems")
        if keyword == "minItems" and low == 1:
            return "must not be empty" + (f" (1 to {high} items)" if high is not None else "")
        if low is not None and low == high:
            return f"must have exactly {low} items, got {len(value)}"
        if low is not None and high is not None:
            return f"must have {low} to {high} items, got {len(value)}"
        if high is not None:
            return f"must have at most {high} items, got {len(value)}"
        return f"must have at least {low} items, got {len(value)}"
    if keyword == "pattern":
        return f"must match the pattern {schema['pattern']}, got {value!r}"
    if keyword == "format":
        return f"must be an RFC 3339 date-time such as 2024-01-15T10:30:00Z, got {value!r}"
    return fallback


# --- CEL rules -----------------------------------------------------------------------------------


@functools.cache
def _cel_environment() -> celpy.Environment:
    return celpy.Environment()


@functools.cache
def compiled_rule(rule: str) -> tuple[celpy.Runner, bool]:
    """The runnable program of a CEL rule, and whether it is a transition rule (uses oldSelf)."""
    environment = _cel_environment()
    ast = environment.compile(rule)
    is_transition = any(
        token.type == "IDENT" and token.value == "oldSelf" for token in ast.scan_values(lambda v: hasattr(v, "type"))
    )
    return environment.program(ast), is_transition


def _rule_errors(
    value: Any,
    schema: Mapping[str, Any],
    old: Any,
    has_old: bool,
    path: tuple[str | int, ...],
    *,
    root: bool = False,
) -> list[FieldError]:
    """Evaluate every x-kubernetes-validations rule in the subtree at ``path``; ``old`` is the value
    at the same place in the stored object, when ``has_old``."""
    errors: list[FieldError] = []
    rules = schema.get("x-kubernetes-validations") or []
    if rules:
        self_value = to_cel(value, schema, root=root)
        old_value = to_cel(old, schema, root=root) if has_old else None
        for entry in rules:
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

    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        old_map = old if has_old and isinstance(old, dict) else {}
        for key, item in value.items():
            sub = properties.get(key, additional if isinstance(additional, dict) else None)
            if sub is None or (root and key == "metadata"):
                continue
            errors += _rule_errors(item, sub, old_map.get(key), key in old_map, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        old_items = _correlated_items(value, old if has_old else None, schema)
        for index, item in enumerate(value):
            found, old_item = old_items[index]
            errors += _rule_errors(item, schema["items"], old_item, found, (*path, index))
    return errors


def _correlated_items(value: list[Any], old: Any, schema: Mapping[str, Any]) -> list[tuple[bool, Any]]:
    """For each item, its old counterpart: only map lists correlate items (by their keys), as in
    the API server; items of other lists have no old value, so transition rules skip them."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old, list):
        return [(False, None)] * len(value)
    keys = schema.get("x-kubernetes-list-map-keys", [])
    by_key = {_map_key(item, keys): item for item in old if isinstance(item, dict)}
    result: list[tuple[bool, Any]] = []
    for item in value:
        key = _map_key(item, keys) if isinstance(item, dict) else None
        result.append((key in by_key, by_key.get(key)) if key is not None else (False, None))
    return result


def to_cel(value: Any, schema: Mapping[str, Any], *, root: bool = False) -> Any:
    """A JSON value as the CEL value the API server builds from it: typed by the schema, so a
    ``number`` written as ``0`` is the double ``0.0`` and a ``date-time`` string a timestamp."""
    if value is None:
        return None
    if schema.get("x-kubernetes-int-or-string"):
        return celtypes.IntType(value) if isinstance(value, int) else celtypes.StringType(value)
    kind = schema.get("type")
    if kind == "object" or (kind is None and isinstance(value, dict)):
        properties: Mapping[str, Any] | None = schema.get("properties")
        additional = schema.get("additionalProperties")
        items: dict[Any, Any] = {}
        for key, item in value.items():
            if root and key == "metadata":
                visible = {k: item[k] for k in _CEL_VISIBLE_META if isinstance(item, dict) and k in item}
                if "name" not in visible and "generateName" in visible:
                    # The API server generates the name (generateName plus 5 characters) before
                    # it validates; rules see a name of that length.
                    visible["name"] = f"{visible['generateName']}xxxxx"
                items[celtypes.StringType(key)] = json_to_cel(visible)
            elif properties is not None and key in properties:
                items[celtypes.StringType(key)] = to_cel(item, properties[key])
            elif isinstance(additional, dict):
                items[celtypes.StringType(key)] = to_cel(item, additional)
            else:
                items[celtypes.StringType(key)] = json_to_cel(item)
        return celtypes.MapType(items)
    if kind == "array":
        item_schema = schema.get("items") or {}
        return celtypes.ListType([to_cel(item, item_schema) for item in value])
    if kind == "string":
        if schema.get("format") == "date-time":
            try:
                return celtypes.TimestampType(value)
            except ValueError:
                # As in the API server, a malformed timestamp is an error only for a rule that
                # reads it; the schema check has already reported it.
                return CELEvalError(f"invalid date-time {value!r}")
        return celtypes.StringType(value)
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "boolean":
        return celtypes.BoolType(value)
    return json_to_cel(value)


# --- soundness of the rules themselves -----------------------------------------------------------


def rule_problems(crd: dict[str, Any]) -> list[str]:
    """Problems the API server would report when the CRD is created: rules that do not compile,
    and field selections (``self.config.baseModle``) that name no property of the schema."""
    problems: list[str] = []
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        problems += _node_rule_problems(schema, (), root=True)
    return problems


def _node_rule_problems(schema: Mapping[str, Any], path: tuple[str | int, ...], *, root: bool = False) -> list[str]:
    problems: list[str] = []
    for entry in schema.get("x-kubernetes-validations") or []:
        rule = entry["rule"]
        try:
            compiled_rule(rule)
        except Exception as error:  # celpy raises lark's and its own parse errors
            problems.append(f"{field_path(path)}: rule {rule!r} does not compile: {error}")
            continue
        for chain in _selections(_cel_environment().compile(rule)):
            missing = _unresolved(chain, schema, root=root)
            if missing:
                problems.append(f"{field_path(path)}: rule {rule!r} selects undefined field {missing}")
    for key, sub in (schema.get("properties") or {}).items():
        problems += _node_rule_problems(sub, (*path, key))
    if isinstance(schema.get("items"), dict):
        problems += _node_rule_problems(schema["items"], (*path, 0))
    if isinstance(schema.get("additionalProperties"), dict):
        problems += _node_rule_problems(schema["additionalProperties"], (*path, "*"))
    return problems


def _selections(tree: Any) -> list[list[str]]:
    """Every ``self.a.b`` / ``oldSelf.a.b`` chain in a parsed rule, as ['a', 'b']."""
    chains: list[list[str]] = []
    for node in tree.iter_subtrees():
        if node.data != "member_dot":
            continue
        chain = _chain(node)
        # Keep only maximal chains: skip a member_dot that is the inner part of a longer one.
        if chain is not None and all(chain != other[: len(chain)] for other in chains):
            chains = [c for c in chains if c != chain[: len(c)]]
            chains.append(chain)
    return chains


def _chain(node: Any) -> list[str] | None:
    names: list[str] = []
    while True:
        if node.data == "member_dot":
            inner, name = node.children
            names.insert(0, str(name))
            node = inner
        elif node.data in ("member", "primary") and len(node.children) == 1 and hasattr(node.children[0], "data"):
            node = node.children[0]
        elif node.data == "ident":
            token = node.children[0]
            if getattr(token, "type", None) == "IDENT" and str(token) in ("self", "oldSelf"):
                return names
            return None
        else:
            return None


def _unresolved(chain: list[str], schema: Mapping[str, Any], *, root: bool) -> str | None:
    """The first name of ``chain`` the schema does not declare, or None."""
    node: Mapping[str, Any] = schema
    for depth, name in enumerate(chain):
        if root and depth == 0 and name == "metadata":
            return None if len(chain) > 1 and chain[1] in _CEL_VISIBLE_META else ".".join(chain[:2])
        if node.get("x-kubernetes-preserve-unknown-fields") and not node.get("properties"):
            return None
        properties = node.get("properties")
        if properties is None or name not in properties:
            return ".".join(chain[: depth + 1])
        node = properties[name]
    return None


def _unique(errors: list[FieldError]) -> list[FieldError]:
    return list(dict.fromkeys(errors))


# --- reading manifests as kubectl does -----------------------------------------------------------


class _KubectlYamlLoader(yaml.SafeLoader):
    """YAML as kubectl reads it (go-yaml v2): ``2e-4`` is a number (PyYAML alone reads a string
    there), timestamps stay strings; unquoted yes/no/on/off are booleans in both."""


_KubectlYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_KubectlYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def load_manifests(text: str) -> list[dict[str, Any]]:
    """The objects of a (multi-document) YAML or JSON text, read as kubectl reads them; empty
    documents are skipped. Raises ConfigurationError when a document is not a mapping."""
    objects: list[dict[str, Any]] = []
    try:
        documents = list(yaml.load_all(text, Loader=_KubectlYamlLoader))  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as error:
        raise ConfigurationError(f"not valid YAML: {error}") from error
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigurationError(f"document {index + 1} is a {_json_type(document)}, not an object")
        objects.append(document)
    return objects


class _KubectlYamlDumper(yaml.SafeDumper):
    """Writes YAML that kubectl reads back the same: a string such as "2e-4" is quoted."""


_KubectlYamlDumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def dump_manifest(obj: dict[str, Any]) -> str:
    """One object as YAML, keys in their given order, readable back by kubectl and load_manifests."""
    text: str = yaml.dump(obj, Dumper=_KubectlYamlDumper, sort_keys=False, allow_unicode=True)
    return text
