"""spec.output: rank 0 uploads the final model (and, when asked, the kept checkpoints) once the
training completed and the output is written. The layout, the manifest and the credentials'
variables are tensorone.api.export's; the transfers and their checks tensorone.objectstore's.

The upload never changes how the training ended: a failure is reported (the report's ``export``,
which the operator turns into condition Exported and an ExportFailed Event) and logged, and the
model stays where it was written. A restarted upload sends only the files the store does not hold
with the same SHA-256. The manifest is written after every file it lists was verified, first for
the output alone, then again with the checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tensorone import objectstore
from tensorone.api.export import (
    ACCESS_KEY_ID_ENV,
    EXPORT_MANIFEST,
    OUTPUT_FOLDER,
    SECRET_ACCESS_KEY_ENV,
    SESSION_TOKEN_ENV,
    ExportedFile,
    ExportManifest,
    checkpoint_folder,
    export_root,
    split_uri,
)
from tensorone.api.report import MAX_EXPORT_MESSAGE_LENGTH, ExportReport, ExportState
from tensorone.api.resolved import ResolvedJob
from tensorone.errors import ConfigurationError, MissingExtra, StoreError
from tensorone.reporting.client import Reporter
from trainer.checkpoint import CheckpointStore

log = logging.getLogger("trainer.export")


def export_job(
    job: ResolvedJob,
    reporter: Reporter,
    store: CheckpointStore,
    *,
    output_sha256: str | None,
    s3: Any = None,
) -> ExportReport | None:
    """Upload the output (and the checkpoints with spec.output.checkpoints) and report how it went;
    None when the job asks for no export. ``s3`` is a client to use instead of spec.output's."""
    if job.output is None:
        return None
    root = export_root(job.output.uri, job.name)
    reporter.export(ExportReport(uri=root, state=ExportState.uploading, message="uploading the output"))
    started = time.monotonic()
    try:
        report = _upload(job, root, store, output_sha256=output_sha256, s3=s3 or _client(job))
    except (StoreError, MissingExtra, ConfigurationError, OSError) as error:
        where = f"; the model is still at {job.output_dir}"
        text = f"upload to {root} failed: {error}"[: MAX_EXPORT_MESSAGE_LENGTH - len(where)] + where
        log.error("%s", text)
        report = ExportReport(uri=root, state=ExportState.failed, message=text)
    else:
        log.info("%s (%.1f s)", report.message, time.monotonic() - started)
    reporter.export(report)
    return report


def _client(job: ResolvedJob) -> Any:
    """spec.output's store, with the Secret's key pair when the pod has one (both keys, or neither)."""
    assert job.output is not None
    access_key, secret_key = os.environ.get(ACCESS_KEY_ID_ENV), os.environ.get(SECRET_ACCESS_KEY_ENV)
    if bool(access_key) != bool(secret_key):
        missing = SECRET_ACCESS_KEY_ENV if access_key else ACCESS_KEY_ID_ENV
        raise ConfigurationError(
            f"{missing} is empty: spec.output.credentialsSecret needs both keys of the pair", field="spec.output"
        )
    return objectstore.client(
        endpoint_url=job.output.endpoint_url,
        region=job.output.region,
        access_key_id=access_key or None,
        secret_access_key=secret_key or None,
        session_token=os.environ.get(SESSION_TOKEN_ENV) or None,
        needed_by="spec.output",
        extra="trainer",
    )


def _upload(job: ResolvedJob, root: str, store: CheckpointStore, *, output_sha256: str | None, s3: Any) -> ExportReport:
    assert job.output is not None
    bucket, prefix = split_uri(root)
    output_dir = Path(job.output_dir)
    output_files = objectstore.folder_files(output_dir, OUTPUT_FOLDER)
    if not output_files:
        raise StoreError(f"nothing to upload: {output_dir} holds no file")
    listed: dict[str, ExportedFile] = {}
    sent = skipped = 0
    exported: list[str] = []
    # The output first, then each checkpoint: the manifest is rewritten after each, once its files are in.
    batches: list[tuple[str | None, list[objectstore.LocalFile]]] = [(None, output_files), *_checkpoints(job, store)]
    for checkpoint, files in batches:
        done = objectstore.upload(s3, bucket, prefix, files)
        sent, skipped = sent + len(done.sent), skipped + len(done.skipped)
        listed.update({f.key: ExportedFile(size=f.size, sha256=f.sha256) for f in files})
        if checkpoint is not None:
            exported.append(checkpoint)
        manifest = ExportManifest(
            job=job.name,
            namespace=job.namespace,
            uid=job.uid,
            exported_at=datetime.now(UTC),
            output_sha256=output_sha256,
            checkpoints=exported,
            files=listed,
        )
        # Last, once every file it lists is in the store: an export without it is incomplete.
        body = json.dumps(manifest.to_wire(), indent=1, sort_keys=True).encode()
        objectstore.put_bytes(s3, bucket, objectstore.join(prefix, EXPORT_MANIFEST), body)
    size = sum(f.size for f in listed.values())
    what = "the output" + (f" and {len(exported)} checkpoints" if exported else "")
    message = (
        f"{what} uploaded: {len(listed)} files, {size} bytes ({sent} sent, {skipped} already there), each verified "
        f"by its SHA-256, to {root}"
    )
    return ExportReport(
        uri=root,
        state=ExportState.exported,
        message=message[:MAX_EXPORT_MESSAGE_LENGTH],
        checkpoints=exported,
        files=len(listed),
        size_bytes=size,
    )


def _checkpoints(job: ResolvedJob, store: CheckpointStore) -> list[tuple[str | None, list[objectstore.LocalFile]]]:
    """The kept checkpoints that verify against their manifests, oldest first (spec.output.checkpoints),
    each with its files described for the upload. Each file is read once for both: the SHA-256
    checked against the manifest is the one the store then verifies the upload by."""
    assert job.output is not None
    if not job.output.checkpoints:
        return []
    found: list[tuple[str | None, list[objectstore.LocalFile]]] = []
    for manifest in store.checkpoints():
        folder, under = store.root / manifest.id, checkpoint_folder(manifest.id)
        if manifest.files is None:
            # Written before digests: what can be checked is that its files are there.
            problem = store.verify(manifest)
            files = [] if problem is not None else objectstore.folder_files(folder, under)
        else:
            files = objectstore.folder_files(folder, under)
            problem = manifest.files_problem({f.path.relative_to(folder).as_posix(): (f.size, f.sha256) for f in files})
        if problem is not None:
            log.warning("checkpoint %s is not exported: %s", manifest.id, problem)
            continue
        found.append((manifest.id, files))
    return found
