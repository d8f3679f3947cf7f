"""Admit TrainingJob and Dataset objects the way the Kubernetes API server does for our CRDs.

The steps, in the API server's order:

1. **Unknown fields** are refused, as kubectl's default strict server-side field validation does
   (``unknown field "spec.foo"``), and pruned before the next steps.
2. **Nulls** of fields that are not nullable are dropped, then **defaults** are applied
   structurally: a property's ``default`` fills it when absent, and nested defaults apply only
   where their parent object exists (:mod:`tensorone.api.openapi`).
3. **ObjectMeta** rules (name, namespace, labels, annotations: :mod:`tensorone.api.objectmeta`).
4. The **openAPIV3Schema** is checked (:mod:`tensorone.api.openapi`).
5. Every **CEL rule** (``x-kubernetes-validations``) is evaluated at the node it is attached to
   (:mod:`tensorone.api.cel`). As in the API server, the rules are skipped when a *blocking*
   schema error (wrong type, missing required field, value not in the enum, too long, too many
   items) means they would see data of the wrong shape; one extra error then says so.

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
from collections.abc import Mapping
from typing import Any

from tensorone.api.cel import rule_errors
from tensorone.api.crd import CRD_DIR, KINDS, crd_for, load_crds
from tensorone.api.objectmeta import metadata_errors, name_unusable, prune_unknown_metadata
from tensorone.api.openapi import apply_defaults, prune_unknown_fields, schema_errors
from tensorone.errors import FieldError, ValidationFailed, json_type

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
        raise ValidationFailed([FieldError("<object>", f"must be a mapping, got {json_type(obj)}")])
    schema = _schema_for(obj, crds)

    errors = _pruned_and_defaulted(obj, schema)
    errors += metadata_errors(obj.get("metadata"))
    found = list(schema_errors(obj, schema))
    errors += [error for _, error in found]
    if name_unusable(obj.get("metadata")) or any(keyword in _BLOCKING_KEYWORDS for keyword, _ in found):
        errors.append(FieldError(obj["kind"], _RULES_SKIPPED))
    elif old is None:
        errors += rule_errors(obj, schema, None, False, root=True)
    else:
        old_obj = _json_value(old)
        _pruned_and_defaulted(old_obj, schema)
        errors += rule_errors(obj, schema, old_obj, True, root=True)

    if errors:
        raise ValidationFailed(list(dict.fromkeys(errors)))
    return obj


def _pruned_and_defaulted(obj: Any, schema: Mapping[str, Any]) -> list[FieldError]:
    """Steps 1 and 2 in place: unknown fields pruned (each reported), nulls dropped, defaults applied."""
    errors = prune_unknown_metadata(obj) if isinstance(obj, dict) else []
    errors += prune_unknown_fields(obj, schema)
    apply_defaults(obj, schema)
    return errors


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
    if not isinstance(api_version, str) or api_version not in versions:
        allowed = ", ".join(sorted(versions))
        raise ValidationFailed([FieldError("apiVersion", f"must be {allowed} for kind {kind}, got {api_version!r}")])
    schema: dict[str, Any] = versions[api_version]["schema"]["openAPIV3Schema"]
    return schema


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
