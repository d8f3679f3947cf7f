"""The Dataset kind: where training data lives, its format, and how its columns map to the task."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from tensorone.api.v1alpha1.base import (
    CONDITIONS_SCHEMA_EXTRA,
    DNS_SUBDOMAIN_PATTERN,
    ApiModel,
    Condition,
    cel,
)
from tensorone.api.v1alpha1.trainingjob import ObjectMeta


class DatasetFormat(StrEnum):
    """File format of the data."""

    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"
    text = "text"
    imagefolder = "imagefolder"
    coco = "coco"


# What each kind of task reads: text formats (llm, custom) and image formats (vision).
TEXT_FORMATS = (DatasetFormat.jsonl, DatasetFormat.json, DatasetFormat.csv, DatasetFormat.parquet, DatasetFormat.text)
IMAGE_FORMATS = (DatasetFormat.imagefolder, DatasetFormat.coco)


# A segment is any name but "." and ".."; one slash between segments (no ambiguity, so a regex
# engine that backtracks takes linear time on any input).
_PATH_SEGMENT = r"([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+)"
PVC_PATH_PATTERN = rf"^/({_PATH_SEGMENT}(/{_PATH_SEGMENT})*/?)?$"


class PvcSource(ApiModel):
    """Data on a PersistentVolumeClaim in the Dataset's namespace, mounted read-only into the pods."""

    claim_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the claim."
    )
    path: str = Field(
        default="/",
        min_length=1,
        max_length=1024,
        # No "." or ".." segment: the path stays inside the claim.
        pattern=PVC_PATH_PATTERN,
        description="File or folder inside the claim, absolute from the claim's root (a folder means every "
        "file of the format in it); no '.' or '..' segments.",
    )


class HuggingFaceSource(ApiModel):
    """A dataset on the Hugging Face hub (needs network access from the pods)."""

    name: str = Field(
        min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_./]*$", description="Hub dataset id."
    )
    subset: str | None = Field(default=None, max_length=128, description="Configuration (subset) name.")
    split: str = Field(default="train", min_length=1, max_length=128, description="Split to train on.")
    revision: str | None = Field(default=None, max_length=128, description="Git revision (branch, tag or commit).")


class InlineSource(ApiModel):
    """A tiny dataset written in the manifest itself (up to 1000 records), for tests and demos."""

    records: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=1000,
        description="The records, each an object with the columns named in the columns mapping.",
    )


class DatasetSource(ApiModel):
    """Where the data is: exactly one of pvc, uri, huggingFace or inline."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(has(self.pvc) ? 1 : 0) + (has(self.uri) ? 1 : 0) + (has(self.huggingFace) ? 1 : 0) "
                    "+ (has(self.inline) ? 1 : 0) == 1",
                    "source must set exactly one of pvc, uri, huggingFace or inline",
                )
            ]
        }
    )

    pvc: PvcSource | None = Field(default=None, description="Data on a PersistentVolumeClaim.")
    uri: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^(https?|s3|gs)://[^\s]+$",
        description="An http(s), s3 or gs URI of a file; fetched by the trainer at start.",
    )
    hugging_face: HuggingFaceSource | None = Field(default=None, description="A Hugging Face hub dataset.")
    inline: InlineSource | None = Field(default=None, description="Records written in the manifest.")


class ColumnMapping(ApiModel):
    """Which columns hold what. Set the ones of one layout: text; prompt and completion; messages;
    or image and label (annotations for COCO)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.prompt) == has(self.completion)",
                    "columns.prompt and columns.completion go together: set both or neither",
                ),
                cel(
                    "(has(self.text) ? 1 : 0) + (has(self.prompt) ? 1 : 0) + (has(self.messages) ? 1 : 0) "
                    "+ (has(self.image) ? 1 : 0) <= 1",
                    "columns must describe one layout: text; prompt and completion; messages; or image and label",
                ),
            ]
        }
    )

    text: str | None = Field(default=None, min_length=1, max_length=128, description="Column of plain text.")
    prompt: str | None = Field(
        default=None, min_length=1, max_length=128, description="Column of prompts (no loss on them by default)."
    )
    completion: str | None = Field(
        default=None, min_length=1, max_length=128, description="Column of completions (the loss is computed on them)."
    )
    messages: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Column of chat messages (a list of {role, content}); the loss is on assistant turns.",
    )
    image: str | None = Field(default=None, min_length=1, max_length=128, description="Column of image paths.")
    label: str | None = Field(default=None, min_length=1, max_length=128, description="Column of class labels.")
    annotations: str | None = Field(
        default=None, min_length=1, max_length=1024, description="COCO annotation file, relative to the source."
    )


class DatasetSpec(ApiModel):
    """Desired state of a Dataset."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.source.inline) || self.format in ['jsonl', 'json']",
                    "inline records are JSON objects: format must be jsonl or json",
                    ".format",
                ),
                cel(
                    "!(self.format in ['imagefolder', 'coco']) || !has(self.source.inline)",
                    "image formats need files: use pvc, uri or huggingFace",
                    ".source",
                ),
            ]
        }
    )

    source: DatasetSource = Field(description="Where the data is.")
    format: DatasetFormat = Field(description="jsonl, json, csv, parquet, text, imagefolder or coco.")
    columns: ColumnMapping | None = Field(
        default=None,
        description="Column mapping; absent means auto-detection from the first record (messages, "
        "prompt/completion, then text).",
    )
    description: str | None = Field(default=None, max_length=2048, description="Free-text description.")


class DatasetStatus(ApiModel):
    """Observed state of a Dataset, written by the operator."""

    observed_generation: int | None = Field(default=None, ge=0, description="Generation last acted on.")
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        description="Ready when the source is usable.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )
    records: int | None = Field(default=None, ge=0, description="Number of records, when known (inline sources).")


class Dataset(ApiModel):
    """Training data a TrainingJob refers to by name (datasetId)."""

    api_version: Literal["training.tensorone.ai/v1alpha1"] = Field(
        default="training.tensorone.ai/v1alpha1", description="API version."
    )
    kind: Literal["Dataset"] = Field(default="Dataset", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: DatasetSpec = Field(description="Desired state.")
    status: DatasetStatus | None = Field(default=None, description="Observed state.")
