"""A job's final model, or one of its checkpoints, onto this machine (``t1 download``,
``TensorOneClient.download``).

From the job's export (status.output.exportUri, written by spec.output) when it has one: the
export's manifest is read first (an export without one is incomplete and refused), the output's
files in it must make the digest the status recorded (status.output.sha256), and each file is
hashed as it arrives and kept only when it matches the manifest. The store is reached with this
machine's own credentials (the AWS tools' chain: AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws) at
spec.output.endpointUrl, or at another address for the same store (``endpoint_url``: a laptop does
not reach the cluster's in-cluster address).

From the job's checkpoint claim otherwise, through a short-lived pod made with the caller's own
Kubernetes credentials (``tensorone.download_pod``): a checkpoint's files are checked against the
manifest the trainer wrote into it (and the manifest against its own digest), the output's against
status.output.sha256 (and merged/ against status.output.merged.sha256).

Either way the files land in a hidden folder beside the target, which becomes the target only once
every file was checked: a failure or an interruption leaves no partial file and no partial folder,
and a rerun starts over.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tensorone import objectstore
from tensorone.api.checkpoint import MANIFEST, CheckpointManifest
from tensorone.api.export import (
    EXPORT_MANIFEST,
    MERGED_FOLDER,
    OUTPUT_FOLDER,
    ExportManifest,
    checkpoint_folder,
    listing_digest,
    split_uri,
)
from tensorone.api.pods import checkpoint_claim_name
from tensorone.api.v1alpha1.trainingjob import FINAL_CHECKPOINT_ID
from tensorone.download_pod import START_SECONDS, ClaimCopy, CopiedFile, claim_folder
from tensorone.errors import CheckpointNotFound, ConfigurationError, DigestMismatch, InvalidJobState, StoreError

STAGING_SUFFIX = ".t1-download"


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
    kube: Any = None,
    image: str | None = None,
    start_seconds: float = START_SECONDS,
) -> Downloaded:
    """Download the final model (``checkpoint`` None or ``final``) or checkpoint ``checkpoint`` of
    ``job`` (a ``tensorone.client.Job``) into ``directory``: from its export, with ``s3`` (a client
    to use instead of one made from this machine's credentials), or else from its checkpoint claim
    through a pod made with ``kube`` (a ``tensorone.client.KubeApi``; None through the gateway,
    which cannot), running ``image`` (default: the job's trainer image), that must run within
    ``start_seconds``."""
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
    if not root and kube is None:
        raise InvalidJobState(_not_exported(job, wanted), field="TENSORONE_BASE_URL")
    with staged(directory) as stage:
        if root:
            files, size, source = _from_export(job, wanted, root, stage, endpoint_url=endpoint_url, s3=s3)
        else:
            files, size, source = _from_claim(job, wanted, stage, kube, image=image, start_seconds=start_seconds)
    return Downloaded(directory=directory, files=files, size_bytes=size, source=source)


@contextlib.contextmanager
def staged(directory: Path) -> Iterator[Path]:
    """A hidden folder beside ``directory`` that becomes it when the block ends without an error
    (``directory`` new or empty); removed whatever happens, and first if a killed run left one."""
    directory = directory.resolve()
    stage = directory.parent / f".{directory.name}{STAGING_SUFFIX}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
        if directory.exists():
            directory.rmdir()  # empty: checked before the download
        stage.rename(directory)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _from_export(
    job: Any, wanted: str, root: str, stage: Path, *, endpoint_url: str | None, s3: Any
) -> tuple[int, int, str]:
    output = job.output
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
            stage / relative,
            size=entry.size,
            sha256=entry.sha256,
        )
        size += entry.size
    return len(files), size, f"{root}/{folder}"


def _from_claim(
    job: Any, wanted: str, stage: Path, kube: Any, *, image: str | None, start_seconds: float
) -> tuple[int, int, str]:
    claim = checkpoint_claim_name(job.id, job.spec)
    folder = claim_folder(job.output.path if wanted == FINAL_CHECKPOINT_ID else wanted)
    copier = ClaimCopy(kube, job, claim=claim, image=image, start_seconds=start_seconds)
    copied = copier.copy(folder, stage)
    where = f"the checkpoint claim {claim}, {folder}/"
    if wanted == FINAL_CHECKPOINT_ID:
        _check_copied_output(copied, job.output, where)
    else:
        _check_copied_checkpoint(copied, stage / MANIFEST, wanted, where)
    return len(copied), sum(f.size for f in copied.values()), f"{where} (pod {copier.pod_name})"


def _check_copied_output(copied: dict[str, CopiedFile], output: Any, where: str) -> None:
    """The output's files must make status.output.sha256, and merged/'s status.output.merged.sha256."""
    merged_prefix = f"{MERGED_FOLDER}/"
    own = {name: f.sha256 for name, f in copied.items() if not name.startswith(merged_prefix)}
    digest = listing_digest(own)
    if digest != output.sha256:
        raise DigestMismatch(
            f"the output on {where} is not the one the job wrote: its {len(own)} files make the digest "
            f"{digest}, status.output.sha256 is {output.sha256} (a file was changed, added or removed "
            "after the trainer wrote it)"
        )
    merged = {name[len(merged_prefix) :]: f.sha256 for name, f in copied.items() if name.startswith(merged_prefix)}
    under_output = output.merged is not None and output.merged.path == f"{output.path}/{MERGED_FOLDER}"
    digest = listing_digest(merged)
    if under_output and digest != output.merged.sha256:
        raise DigestMismatch(
            f"the merged model on {where}{MERGED_FOLDER}/ is not the one the job wrote: its files make the digest "
            f"{digest}, status.output.merged.sha256 is {output.merged.sha256}"
        )


def _check_copied_checkpoint(copied: dict[str, CopiedFile], manifest_path: Path, wanted: str, where: str) -> None:
    """Every file of the checkpoint as its manifest lists it, no other, and the manifest whole."""
    if MANIFEST not in copied:
        raise DigestMismatch(f"{where} has no {MANIFEST}: not a complete checkpoint, nothing to check it against")
    try:
        manifest = CheckpointManifest.model_validate_json(manifest_path.read_bytes())
    except (ValueError, ValidationError) as error:
        raise DigestMismatch(f"{where}{MANIFEST} cannot be read: {str(error).splitlines()[0]}") from None
    problem = manifest.problem()
    if problem is None and manifest.id != wanted:
        problem = f"it names another checkpoint, {manifest.id}"
    if problem is None and manifest.files is None:
        problem = "it lists no file digests (written by a trainer before digests): nothing to check the files against"
    if problem is not None:
        raise DigestMismatch(f"{where}{MANIFEST} cannot be trusted: {problem}")
    assert manifest.files is not None
    problem = manifest.files_problem({name: (f.size, f.sha256) for name, f in copied.items()})
    if problem is not None:
        raise DigestMismatch(f"{where}{problem}: not the checkpoint the trainer wrote, says its manifest")
    extra = sorted(set(copied) - set(manifest.files) - {MANIFEST})
    if extra:
        raise DigestMismatch(f"{where} holds files its manifest does not list: {', '.join(extra)}")


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
    digest = listing_digest(digests)
    if digest != recorded:
        raise DigestMismatch(
            f"the output in {root} is not the one the job wrote: its files make the digest {digest}, "
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
        "t1 download copies them from there through the Kubernetes API (a pod that mounts the claim), which the "
        "gateway does not offer"
    )


def check_directory(directory: Path) -> None:
    """The folder to download into must be new or empty: files of two models are never mixed."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigurationError(f"{directory} exists and is not an empty folder", field="-o")
