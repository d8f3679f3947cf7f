"""Building blocks shared by the v1alpha1 types: the model base class and the Condition type."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Kubernetes names: the longest TrainingJob name whose every child object and pod name stays a
# valid DNS-1035 label (63 characters). The Training Operator names a worker's Service and pod
# "<job>-worker-<index>", so with up to 32 workers ("-worker-31", 10 characters) a job name may
# have at most 53 characters.
MAX_JOB_NAME_LENGTH = 53
# The Kubernetes object-name patterns, anchored. The models, CEL rules, the offline validator, the
# REST conversion and the operator's configuration import them from here.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry: a CEL rule, the message shown when it fails,
    and optionally the field the failure is reported on."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python, unknown fields refused.

    Both spellings are accepted on input, so a REST body's ``batch_size`` and a manifest's
    ``batchSize`` fill the same field.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it is stored in Kubernetes: camelCase keys, no unset fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(ApiModel):
    """The standard Kubernetes condition (metav1.Condition): one aspect of the object's state."""

    type: str = Field(
        description="Type of the condition, in CamelCase: Ready, Reconciling, Stalled, or a domain "
        "type such as DatasetReady, ResourcesAvailable, Running, Suspended, Restarting, Succeeded, Failed.",
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition: True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was set from; older than the object's generation means stale.",
    )
    last_transition_time: datetime = Field(
        description="When the condition last changed from one status to another (RFC 3339)."
    )
    reason: str = Field(
        description="Programmatic identifier of why the condition is in its state, in CamelCase or an "
        "error code such as DATASET_NOT_FOUND, INSUFFICIENT_RESOURCES or CONFIGURATION_ERROR.",
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="Human-readable details about the condition: what happened, which field or id, what to do.",
    )


CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
