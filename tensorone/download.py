"""A job's final model, or one of its checkpoints, onto this machine (``t1 download``,
``TensorOneClient.download``).

From the job's export (status.output.exportUri, written by spec.output): the export's manifest is
read first (an export without one is incomplete and refused), the output's files in it must make
the digest the status recorded (status.output.sha256), and each file is hashed as it arrives and
kept only when it matches the manifest. The store is reached with this machine's own credentials
(the AWS tools' chain: AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws) at spec.output.endpointUrl, or at
another address for the same store (``endpoint_url``: a laptop does not reach the cluster's
in-cluster address).

A job without an export keeps its model on its checkpoint claim only: ``download`` says so and how
to copy it from there (docs/output.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tensorone import objectstore
from tensorone.api.export import (
    EXPORT_MANIFEST,
    OUTPUT_FOLDER,
    ExportManifest,
    checkpoint_folder,
    listing_digest,
    split_uri,
)
from tensorone.api.pods import checkpoint_claim_name
from tensorone.api.v1alpha1.trainingjob import FINAL_CHECKPOINT_ID
from tensorone.errors import CheckpointNotFound, ConfigurationError, DigestMismatch, InvalidJobState, StoreError

MERGED_FOLDER = "merged"  # not part of the output's digest (trainer.output)


@dataclass(frozen=True)
class Downloaded:
    """What a download wrote: the folder, the files, their bytes, and where they came from."""

    directory: Path
    files: int
    size_bytes: int
    source: str


def download_job_files(
    job: Any,
    *,
    directory: Path,
    checkpoint: str | None = None,
    endpoint_url: str | None = None,
    s3: Any = None,
) -> Downloaded:
    """Download the final model (``checkpoint`` None or ``final``) or checkpoint ``checkpoint`` of
    ``job`` (a ``tensorone.client.Job``) into ``directory``. ``s3`` is a client to use instead of
    one made from this machine's credentials."""
    wanted = checkpoint or FINAL_CHECKPOINT_ID
    output = job.output
    if wanted == FINAL_CHECKPOINT_ID and output is None:
        raise InvalidJobState(
            f"job {job.id!r} has no final model yet (phase {job.status}): the trainer writes it when the training "
            "completes; t1 checkpoints JOB lists the checkpoints to download instead",
            field="checkpoint",
        )
    if wanted != FINAL_CHECKPOINT_ID and wanted not in {c.id for c in job.checkpoints}:
        listed = ", ".join(c.id for c in job.checkpoints) or "none"
        raise CheckpointNotFound(
            f"job {job.id!r} has no checkpoint {wanted!r} (its checkpoints: {listed}, and final once written)",
            field="checkpoint",
        )
    root = output.export_uri if output is not None else None
    if not root:
        raise InvalidJobState(_not_exported(job, wanted), field="checkpoint")
    spec_output = job.spec.output
    if s3 is None:
        s3 = objectstore.client(
            endpoint_url=endpoint_url or (spec_output.endpoint_url if spec_output is not None else None),
            region=spec_output.region if spec_output is not None else None,
            needed_by="t1 download",
        )
    bucket, prefix = split_uri(root)
    manifest = _manifest(s3, bucket, prefix, root)
    folder = OUTPUT_FOLDER if wanted == FINAL_CHECKPOINT_ID else checkpoint_folder(wanted)
    files = {name: entry for name, entry in manifest.files.items() if name.startswith(f"{folder}/")}
    if not files:
        raise CheckpointNotFound(
            f"checkpoint {wanted!r} is not in the export {root} (exported: "
            f"{', '.join(manifest.checkpoints) or 'none'}; spec.output.checkpoints uploads the kept ones)",
            field="checkpoint",
        )
    if wanted == FINAL_CHECKPOINT_ID:
        _check_output_digest(files, recorded=output.sha256 if output is not None else None, root=root)
    size = 0
    for name, entry in sorted(files.items()):
        relative = name[len(folder) + 1 :]
        objectstore.download(
            s3,
            bucket,
            objectstore.join(prefix, name),
            directory / relative,
            size=entry.size,
            sha256=entry.sha256,
        )
        size += entry.size
    return Downloaded(directory=directory, files=len(files), size_bytes=size, source=f"{root}/{folder}")


def _manifest(s3: Any, bucket: str, prefix: str, root: str) -> ExportManifest:
    data = objectstore.get_bytes(s3, bucket, objectstore.join(prefix, EXPORT_MANIFEST))
    if data is None:
        raise StoreError(
            f"{root} has no {EXPORT_MANIFEST}: the export is not complete (the manifest is written last), or the "
            "files were removed"
        )
    try:
        return ExportManifest.model_validate(json.loads(data))
    except (ValueError, ValidationError) as error:
        raise StoreError(f"{root}/{EXPORT_MANIFEST} is not an export manifest: {error}") from None


def _check_output_digest(files: dict[str, Any], *, recorded: str | None, root: str) -> None:
    """The output's files in the manifest must make the digest the job's status recorded."""
    if recorded is None:
        return
    prefix = f"{OUTPUT_FOLDER}/"
    digests = {
        name[len(prefix) :]: entry.sha256
        for name, entry in files.items()
        if not name[len(prefix) :].startswith(f"{MERGED_FOLDER}/")
    }
    if listing_digest(digests) != recorded:
        raise DigestMismatch(
            f"the output in {root} is not the one the job wrote: its files make the digest {listing_digest(digests)}, "
            f"status.output.sha256 is {recorded}"
        )


def _not_exported(job: Any, wanted: str) -> str:
    claim = checkpoint_claim_name(job.id, job.spec)
    where = f"output/ ({job.output.path})" if wanted == FINAL_CHECKPOINT_ID and job.output else f"{wanted}/"
    exported = job.spec.output is not None
    why = (
        "its upload (spec.output) has not succeeded: condition Exported says why"
        if exported
        else "it has no spec.output"
    )
    return (
        f"job {job.id!r} was not exported ({why}); its files are on the checkpoint claim {claim}, under {where}: "
        "copy them from a pod that mounts the claim (docs/output.md shows one), or export with spec.output in the "
        "next job"
    )


def check_directory(directory: Path) -> None:
    """The folder to download into must be new or empty: files of two models are never mixed."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigurationError(f"{directory} exists and is not an empty folder", field="-o")
