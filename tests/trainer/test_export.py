"""spec.output: the trainer's upload of the output and checkpoints to a real S3-compatible server
(moto's, on loopback): byte for byte, a restarted upload sending only what is missing, a file in
the store with other content sent again, and a failure that never fails the training."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tensorone import objectstore
from tensorone.api.export import ACCESS_KEY_ID_ENV, EXPORT_MANIFEST, SECRET_ACCESS_KEY_ENV, listing_digest
from tensorone.api.report import ExportState
from tensorone.api.resolved import ResolvedJob
from tensorone.api.v1alpha1.trainingjob import OutputExport
from tensorone.reporting.client import Reporter
from tests.s3_server import ACCESS_KEY_ID, BUCKET, SECRET_ACCESS_KEY, S3Server, s3_server
from tests.trainer.conftest import log_events, make_job
from trainer.checkpoint import CheckpointStore
from trainer.distributed import Topology
from trainer.export import export_job
from trainer.run import RunOptions, run


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    # The key pair as the operator gives it to the pod (secretKeyRef), under the trainer's names.
    monkeypatch.setenv(ACCESS_KEY_ID_ENV, ACCESS_KEY_ID)
    monkeypatch.setenv(SECRET_ACCESS_KEY_ENV, SECRET_ACCESS_KEY)
    with s3_server() as server:
        yield server


def exported(job: ResolvedJob, server: S3Server, *, uri: str = f"s3://{BUCKET}/team-a", **fields: Any) -> ResolvedJob:
    return job.model_copy(update={"output": OutputExport(uri=uri, endpoint_url=server.endpoint_url, **fields)})


def files_of(folder: Path, under: str) -> dict[str, bytes]:
    return {f"{under}/{p.relative_to(folder).as_posix()}": p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_completed_job_uploads_its_output_and_checkpoints_byte_for_byte_manifest_last(
    tmp_path: Path, s3: S3Server
) -> None:
    job = exported(
        make_job(tmp_path, training={"maxSteps": 4, "checkpointSteps": 2, "checkpointEveryEpoch": False}),
        s3,
        checkpoints=True,
    )
    result = run(job, RunOptions(serve_reports=False))

    assert result.exit_code == 0 and result.report is not None and result.report.output is not None
    export = result.report.export
    assert export is not None, result.report.message
    assert export.state == ExportState.exported, export.message
    assert export.uri == f"s3://{BUCKET}/team-a/test-job"
    assert export.checkpoints == ["ckpt-step-2", "ckpt-step-4"]
    checkpoints = tmp_path / "checkpoints"
    expected = files_of(tmp_path / "output", "output")
    for checkpoint in export.checkpoints:
        expected |= files_of(checkpoints / checkpoint, f"checkpoints/{checkpoint}")
    stored = s3.objects("team-a/test-job/")
    manifest = json.loads(stored.pop(f"team-a/test-job/{EXPORT_MANIFEST}"))
    assert {key.removeprefix("team-a/test-job/"): data for key, data in stored.items()} == expected
    assert sorted(manifest["files"]) == sorted(expected)
    assert manifest["checkpoints"] == export.checkpoints and manifest["job"] == "test-job"
    assert (export.files, export.size_bytes) == (len(expected), sum(len(d) for d in expected.values()))
    # The output's files in the manifest make the digest the report (and so status.output) holds.
    output_files = {k.removeprefix("output/"): v["sha256"] for k, v in manifest["files"].items() if k[:7] == "output/"}
    assert listing_digest(output_files) == manifest["outputSha256"] == result.report.output.sha256
    assert [e["state"] for e in log_events(checkpoints, "export")] == ["uploading", "exported"]


def test_an_upload_that_fails_leaves_the_training_completed_and_says_where_the_model_is(
    tmp_path: Path, s3: S3Server
) -> None:
    job = exported(make_job(tmp_path, training={"maxSteps": 2}), s3, uri="s3://no-such-bucket/x")
    result = run(job, RunOptions(serve_reports=False))

    assert result.exit_code == 0 and result.report is not None
    assert result.report.state == "completed"
    export = result.report.export
    assert export is not None and export.state == ExportState.failed
    assert export.message is not None
    assert "NoSuchBucket" in export.message and f"the model is still at {tmp_path / 'output'}" in export.message
    assert (tmp_path / "output" / "adapter_model.safetensors").is_file()


def model_folder(root: Path) -> ResolvedJob:
    """A job whose output folder holds five small files (no training: the upload alone is tested)."""
    job = make_job(root)
    output = Path(job.output_dir)
    (output / "sub").mkdir(parents=True)
    for index in range(4):
        (output / f"part-{index}.bin").write_bytes(os.urandom(1000 + index))
    (output / "sub" / "config.json").write_text('{"a": 1}')
    return job


def export_with(job: ResolvedJob, client: Any) -> Any:
    return export_job(
        job,
        Reporter(serve=False),
        CheckpointStore(Path(job.checkpoint_dir), Topology(rank=0, world_size=1, local_rank=0)),
        output_sha256=None,
        s3=client,
    )


def puts_counted(client: Any, *, fail_after: int | None = None) -> list[str]:
    """The keys of the PutObject requests ``client`` sends; the one after ``fail_after`` fails as a
    dropped connection would."""
    keys: list[str] = []

    def before(params: dict[str, Any], **_: Any) -> None:
        if fail_after is not None and len(keys) == fail_after:
            raise ConnectionResetError("connection reset by peer")
        keys.append(params["Key"])

    client.meta.events.register("before-parameter-build.s3.PutObject", before)
    return keys


def test_a_checkpoint_changed_since_it_was_written_is_not_exported(
    tmp_path: Path, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    job = exported(
        make_job(tmp_path, training={"maxSteps": 4, "checkpointSteps": 2, "checkpointEveryEpoch": False}),
        s3,
        uri=f"s3://{BUCKET}/first",
        checkpoints=True,
    )
    assert run(job, RunOptions(serve_reports=False)).exit_code == 0
    weights = tmp_path / "checkpoints" / "ckpt-step-2" / "model" / "adapter_model.safetensors"
    weights.write_bytes(bytes(reversed(weights.read_bytes())))  # same size, other content

    assert job.output is not None
    again = job.model_copy(update={"output": job.output.model_copy(update={"uri": f"s3://{BUCKET}/again"})})
    with caplog.at_level("WARNING", logger="trainer"):
        report = export_with(again, s3.client())

    assert report.state == ExportState.exported and report.checkpoints == ["ckpt-step-4"], report.message
    assert not s3.objects("again/test-job/checkpoints/ckpt-step-2/")
    assert s3.objects("again/test-job/checkpoints/ckpt-step-4/")
    assert "checkpoint ckpt-step-2 is not exported: model/adapter_model.safetensors has changed since" in caplog.text


def test_a_restarted_upload_sends_only_the_files_that_are_missing(tmp_path: Path, s3: S3Server) -> None:
    job = exported(model_folder(tmp_path), s3)
    first = s3.client()
    puts_counted(first, fail_after=2)
    report = export_with(job, first)
    assert report.state == ExportState.failed and "connection reset" in report.message
    assert len(s3.objects("team-a/test-job/")) == 2, "two files made it, and no manifest"

    again = s3.client()
    sent = puts_counted(again)
    report = export_with(job, again)

    assert report.state == ExportState.exported, report.message
    assert sent == [
        "team-a/test-job/output/part-2.bin",
        "team-a/test-job/output/part-3.bin",
        "team-a/test-job/output/sub/config.json",
        f"team-a/test-job/{EXPORT_MANIFEST}",
    ]
    assert "3 sent, 2 already there" in report.message
    stored = s3.objects("team-a/test-job/output/")
    assert {k.removeprefix("team-a/test-job/"): v for k, v in stored.items()} == files_of(
        Path(job.output_dir), "output"
    )


def test_a_stored_file_with_other_content_is_sent_again_whatever_its_metadata_claims(
    tmp_path: Path, s3: S3Server
) -> None:
    job = exported(model_folder(tmp_path), s3)
    export_with(job, s3.client())
    # Same size, other bytes, written without a checksum and with the metadata of the good file.
    path = Path(job.output_dir) / "part-1.bin"
    key = "team-a/test-job/output/part-1.bin"
    good = objectstore.local_file(path, "output/part-1.bin")
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"x" * good.size, Metadata={"sha256": good.sha256})

    client = s3.client()
    sent = puts_counted(client)
    report = export_with(job, client)

    assert report.state == ExportState.exported
    assert sent == [key, f"team-a/test-job/{EXPORT_MANIFEST}"]
    assert s3.objects(key)[key] == path.read_bytes()


def test_a_large_file_goes_in_parts_and_its_composite_checksum_is_known_before_it_is_sent(
    tmp_path: Path, s3: S3Server
) -> None:
    part = 5 * 1024 * 1024  # S3's smallest part
    path = tmp_path / "model.safetensors"
    path.write_bytes(os.urandom(2 * part + 12345))
    file = objectstore.local_file(path, "output/model.safetensors", part_size=part)
    client = s3.client()

    first = objectstore.upload(client, BUCKET, "big", [file], part_size=part)
    again = objectstore.upload(client, BUCKET, "big", [file], part_size=part)

    assert (first.sent, again.skipped) == (["output/model.safetensors"], ["output/model.safetensors"])
    head = client.head_object(Bucket=BUCKET, Key="big/output/model.safetensors", ChecksumMode="ENABLED")
    assert str(head["ChecksumSHA256"]).split("-")[0] == file.checksum
    assert s3.objects("big/")["big/output/model.safetensors"] == path.read_bytes()
