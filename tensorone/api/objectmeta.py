"""The API server's own rules for the ``metadata`` of a namespaced custom resource (ObjectMeta).

The CRD's schema does not describe metadata beyond ``name`` and ``generateName``: its fields,
the name and namespace formats and the label and annotation limits are Kubernetes' own, checked
here with the messages of :mod:`tensorone.api.admission`.
"""

from __future__ import annotations

import re
from typing import Any

from tensorone.api.v1alpha1.base import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN
from tensorone.errors import FieldError, field_path, json_type

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

_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_MAX_ANNOTATIONS_BYTES = 256 * 1024
_NAME_REQUIRED = "required: set metadata.name (or metadata.generateName)"


def prune_unknown_metadata(obj: dict[str, Any]) -> list[FieldError]:
    """Remove the fields of ``obj``'s metadata that ObjectMeta does not have, reporting each."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return []
    unknown = [key for key in metadata if key not in OBJECT_META_FIELDS]
    for key in unknown:
        del metadata[key]
    return [FieldError(field_path(("metadata", key)), "unknown field") for key in unknown]


def metadata_errors(metadata: Any) -> list[FieldError]:
    """The API server's own ObjectMeta rules for a namespaced custom resource."""
    if metadata is None:
        return [FieldError("metadata.name", _NAME_REQUIRED)]
    if not isinstance(metadata, dict):
        return [FieldError("metadata", f"must be an object, got {json_type(metadata)}")]
    return [
        *_name_errors(metadata),
        *_namespace_errors(metadata.get("namespace")),
        *_label_errors(metadata.get("labels")),
        *_annotation_errors(metadata.get("annotations")),
    ]


def name_unusable(metadata: Any) -> bool:
    """Whether the object has no name (or generateName) a CEL rule could read: a Required or
    TypeInvalid error, which blocks the rules like a schema error does."""
    return not isinstance(metadata, dict) or not isinstance(metadata.get("name", metadata.get("generateName")), str)


def _name_errors(metadata: dict[str, Any]) -> list[FieldError]:
    name = metadata.get("name")
    if name is None:
        return [] if metadata.get("generateName") else [FieldError("metadata.name", _NAME_REQUIRED)]
    if not isinstance(name, str):
        return [FieldError("metadata.name", f"must be a string, got {json_type(name)}")]
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [
            FieldError(
                "metadata.name",
                f"must be a lower-case DNS subdomain (a-z, 0-9, '-' and '.', at most 253 characters), got {name!r}",
            )
        ]
    return []


def _namespace_errors(namespace: Any) -> list[FieldError]:
    if namespace is None or (isinstance(namespace, str) and len(namespace) <= 63 and _DNS_LABEL.match(namespace)):
        return []
    return [FieldError("metadata.namespace", f"must be a DNS label (at most 63 characters), got {namespace!r}")]


def _label_errors(labels: Any) -> list[FieldError]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [FieldError("metadata.labels", f"must be a map of strings, got {json_type(labels)}")]
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


def _annotation_errors(annotations: Any) -> list[FieldError]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        return [FieldError("metadata.annotations", "must be a map of string keys to string values")]
    if sum(len(k) + len(v) for k, v in annotations.items()) > _MAX_ANNOTATIONS_BYTES:
        return [FieldError("metadata.annotations", "must have at most 262144 bytes in total")]
    return []
