"""A TrainingJob as the operator read it, parsed once where it enters (a handler, a read).

The metadata and spec become the API model (``TrainingJob``), so everything after the boundary
reads typed fields with the model's defaults; the status stays in its stored form (the wire form
the status logic compares and patches), and the body is kept for what kopf needs it for (Events).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tensorone.api.v1alpha1 import TrainingJob, TrainingJobSpec

JobKey = tuple[str, str]


@dataclass(frozen=True)
class ObservedJob:
    """A TrainingJob read from the API server: typed metadata and spec, the status as stored."""

    resource: TrainingJob
    status: Mapping[str, Any]
    body: Mapping[str, Any]

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ObservedJob:
        """Parse a TrainingJob body (a watch event's, or a read's)."""
        resource = TrainingJob.model_validate({key: value for key, value in body.items() if key != "status"})
        return cls(resource=resource, status=dict(body.get("status") or {}), body=body)

    @property
    def spec(self) -> TrainingJobSpec:
        return self.resource.spec

    @property
    def name(self) -> str:
        return str(self.resource.metadata.name)

    @property
    def namespace(self) -> str:
        return str(self.resource.metadata.namespace)

    @property
    def key(self) -> JobKey:
        return (self.namespace, self.name)

    @property
    def uid(self) -> str | None:
        return self.resource.metadata.uid

    @property
    def generation(self) -> int | None:
        return self.resource.metadata.generation

    @property
    def phase(self) -> str | None:
        """The phase the stored status shows (None before the first write)."""
        phase = self.status.get("phase")
        return None if phase is None else str(phase)

    def spec_changed(self) -> bool:
        """Whether the spec changed since the status was last written (generation moved on)."""
        return self.status.get("observedGeneration") != self.generation
