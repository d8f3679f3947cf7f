"""The contract of spec.output between the operator, the trainer and ``t1 download``: where a job's
files go in the store, how the credentials reach the trainer, and the manifest that proves an export
complete.

Layout under ``<spec.output.uri>/<job name>/`` (the job's *export root*)::

    output/...                 the final model, as on the claim (merged/ included)
    checkpoints/<id>/...       each exported checkpoint's folder, as on the claim
    manifest.json              size and SHA-256 of every file above, uploaded last

Every file is uploaded with its SHA-256 (the store checks the body against it and keeps it), so a
restarted upload skips what is already there with the same digest, and a download checks each file
against the manifest. The manifest is written only once every file it lists was verified: an export
without it is incomplete, and ``t1 download`` refuses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime

from pydantic import Field

from tensorone.api.v1alpha1.base import ApiModel
from tensorone.api.v1alpha1.trainingjob import SHA256_PATTERN

OUTPUT_FOLDER = "output"
# The adapter merged into the base weights (config.output.merge), inside the output folder; not part
# of the output's own digest (it has one of its own).
MERGED_FOLDER = "merged"
CHECKPOINTS_FOLDER = "checkpoints"
EXPORT_MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
# The credentials of spec.output.credentialsSecret, under names of the project's own: AWS's names
# would be read by every other AWS client in the trainer too (an MLflow artifact store on S3).
ACCESS_KEY_ID_ENV = "TENSORONE_OUTPUT_ACCESS_KEY_ID"
SECRET_ACCESS_KEY_ENV = "TENSORONE_OUTPUT_SECRET_ACCESS_KEY"
SESSION_TOKEN_ENV = "TENSORONE_OUTPUT_SESSION_TOKEN"


class ExportedFile(ApiModel):
    """One file of an export."""

    size: int = Field(ge=0, description="Bytes.")
    sha256: str = Field(pattern=SHA256_PATTERN, description="SHA-256 of the content, hex.")


class ExportManifest(ApiModel):
    """``manifest.json`` at the export root: every file of the export, by its path under the root."""

    format_version: int = Field(default=MANIFEST_FORMAT, description="Version of this format.")
    job: str = Field(description="The TrainingJob's name.")
    namespace: str = Field(description="Its namespace.")
    uid: str | None = Field(default=None, description="Its uid, when it ran in a cluster.")
    exported_at: datetime = Field(description="When the manifest was written.")
    output_sha256: str | None = Field(
        default=None, description="status.output.sha256: the digest of the output folder's listing."
    )
    checkpoints: list[str] = Field(default_factory=list, description="Checkpoint ids exported, oldest first.")
    files: dict[str, ExportedFile] = Field(description="Every file, by its '/'-separated path under the export root.")


def listing_digest(digests: Mapping[str, str]) -> str:
    """The content digest of a model folder (status.output.sha256) from its files' SHA-256s by
    '/'-separated path: the SHA-256 of the ``sha256sum``-style listing, sorted by path."""
    listing = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    return hashlib.sha256(listing.encode()).hexdigest()


def export_root(uri: str, job_name: str) -> str:
    """``s3://bucket/prefix`` and ``llama`` -> ``s3://bucket/prefix/llama``."""
    return f"{uri.rstrip('/')}/{job_name}"


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``); the key prefix has no slash at either end."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


def checkpoint_folder(checkpoint_id: str) -> str:
    """Where a checkpoint goes under the export root."""
    return f"{CHECKPOINTS_FOLDER}/{checkpoint_id}"
