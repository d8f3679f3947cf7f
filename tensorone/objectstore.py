"""Files to and from S3 and S3-compatible stores, each checked by its SHA-256.

Uploads send every file with its SHA-256 (``x-amz-checksum-sha256``): the store refuses a body
that does not match, and keeps the checksum, which ``HeadObject`` returns. A file up to
``PART_BYTES`` is one PUT, and its checksum is the SHA-256 of the whole file; a larger one is a
multipart upload of ``PART_BYTES`` parts, whose checksum is the SHA-256 of the parts' SHA-256s (S3's
*composite* checksum), computed here in the same pass as the file's own digest. So before a file is
sent the store is asked whether it holds it already with the same checksum (a restarted upload sends
only what is missing or different), and after it is sent, whether it now does. A store that keeps no
checksum (an older S3-compatible server) is read back instead, and the bytes hashed.

Downloads hash each file as it arrives and compare it with the digest the export's manifest holds.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorone.errors import DigestMismatch, MissingExtra, StoreError

# Parts of a multipart upload, and the size from which a file is sent in parts. S3 allows 10,000
# parts of 5 MiB to 5 GiB: 64 MiB parts carry files up to 640 GB (s3transfer enlarges the parts of
# larger files, and the expected checksum follows it).
PART_BYTES = 64 * 1024 * 1024
READ_BYTES = 1 << 20
DIGEST_METADATA = "sha256"  # x-amz-meta-sha256: the file's own hex digest, for people and other tools


@dataclass(frozen=True)
class LocalFile:
    """A file to upload: where it goes, its size, its SHA-256 and the checksum the store will keep."""

    key: str  # '/'-separated path under the destination
    path: Path
    size: int
    sha256: str  # hex, of the whole file
    checksum: str  # base64 ChecksumSHA256 the store keeps: the whole file's, or the composite of its parts


@dataclass
class Transfer:
    """What an upload or a download did."""

    sent: list[str]
    skipped: list[str]
    size_bytes: int = 0


def client(
    *,
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    needed_by: str,
    extra: str = "sdk",
) -> Any:
    """An S3 client: for ``endpoint_url`` (an S3-compatible server, path-style addressing) or AWS;
    with the given key pair, else the AWS tools' own chain (environment, profile, pod identity)."""
    try:
        import boto3
        from botocore.config import Config
    except ModuleNotFoundError as error:
        raise MissingExtra(extra, needed_by=needed_by, missing=error.name or "boto3") from error
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        # S3-compatible servers (MinIO, Ceph) are addressed by path; AWS by virtual host.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region or os.environ.get("AWS_REGION") or "us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        config=config,
    )


def part_bytes(size: int, part_size: int = PART_BYTES) -> int:
    """The part size s3transfer uses for a file of ``size`` bytes (``part_size`` unless that would
    make more than 10,000 parts)."""
    from s3transfer.utils import ChunksizeAdjuster

    return int(ChunksizeAdjuster().adjust_chunksize(part_size, size))


def local_file(path: Path, key: str, *, part_size: int = PART_BYTES) -> LocalFile:
    """``path`` described for an upload to ``key`` in parts of ``part_size`` bytes (one PUT when
    smaller): its SHA-256 and the checksum the store will keep, in one read."""
    size = path.stat().st_size
    multipart = size >= part_size
    part_size = part_bytes(size, part_size) if multipart else size
    whole = hashlib.sha256()
    parts: list[bytes] = []
    part = hashlib.sha256()
    in_part = 0
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BYTES):
            whole.update(chunk)
            # One PUT: the store's checksum is the whole file's SHA-256, no part to digest.
            while multipart and chunk:
                take = chunk[: part_size - in_part]
                part.update(take)
                in_part += len(take)
                chunk = chunk[len(take) :]
                if in_part == part_size:
                    parts.append(part.digest())
                    part, in_part = hashlib.sha256(), 0
    if multipart and in_part:
        parts.append(part.digest())
    digest = hashlib.sha256(b"".join(parts)).digest() if multipart else whole.digest()
    return LocalFile(
        key=key, path=path, size=size, sha256=whole.hexdigest(), checksum=base64.b64encode(digest).decode()
    )


def folder_files(folder: Path, under: str, *, part_size: int = PART_BYTES) -> list[LocalFile]:
    """Every file of ``folder`` (sorted), keyed ``<under>/<relative path>``."""
    return [
        local_file(path, f"{under}/{path.relative_to(folder).as_posix()}", part_size=part_size)
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
    ]


def join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


def upload(
    s3: Any,
    bucket: str,
    prefix: str,
    files: Iterable[LocalFile],
    *,
    part_size: int = PART_BYTES,
    sent: Callable[[LocalFile], None] | None = None,
) -> Transfer:
    """Upload ``files`` (described with the same ``part_size``) under ``prefix``, skipping those the
    store holds with the same checksum; each one sent is verified before the next. ``sent`` is told
    of each file uploaded."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size, use_threads=True)
    done = Transfer(sent=[], skipped=[])
    for file in files:
        key = join(prefix, file.key)
        done.size_bytes += file.size
        if stored_matches(s3, bucket, key, file):
            done.skipped.append(file.key)
            continue
        _call(
            f"upload {file.key} to s3://{bucket}/{key}",
            lambda key=key, file=file: s3.upload_file(  # type: ignore[misc]
                str(file.path),
                bucket,
                key,
                Config=config,
                ExtraArgs={"ChecksumAlgorithm": "SHA256", "Metadata": {DIGEST_METADATA: file.sha256}},
            ),
        )
        if not stored_matches(s3, bucket, key, file):
            raise DigestMismatch(
                f"s3://{bucket}/{key} does not hold what was uploaded: its SHA-256 differs from that of "
                f"{file.path} ({file.sha256})"
            )
        done.sent.append(file.key)
        if sent is not None:
            sent(file)
    return done


def stored_matches(s3: Any, bucket: str, key: str, file: LocalFile) -> bool:
    """Whether the store holds ``file`` at ``key``: same size and same SHA-256 checksum, or, where
    the store keeps no checksum, the same bytes read back."""
    head = head_object(s3, bucket, key)
    if head is None or int(head.get("ContentLength", -1)) != file.size:
        return False
    stored = head.get("ChecksumSHA256")
    if stored:
        # S3 writes a composite checksum as <base64>-<parts>; some servers leave the count out.
        return bool(str(stored).split("-", 1)[0] == file.checksum)
    if (head.get("Metadata") or {}).get(DIGEST_METADATA) != file.sha256:
        return False
    return stored_sha256(s3, bucket, key) == file.sha256


def head_object(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's metadata and checksum; None when there is no such object."""
    head: dict[str, Any] | None = _unless_missing(
        f"read s3://{bucket}/{key}", lambda: s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    )
    return head


def stored_sha256(s3: Any, bucket: str, key: str) -> str:
    """The SHA-256 of the object's bytes, read back."""
    digest = hashlib.sha256()
    body = _call(f"read s3://{bucket}/{key}", lambda: s3.get_object(Bucket=bucket, Key=key)["Body"])
    for chunk in body.iter_chunks(READ_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def put_bytes(s3: Any, bucket: str, key: str, data: bytes) -> None:
    """Write a small object in one PUT, checked by the store against its SHA-256."""
    digest = hashlib.sha256(data)
    checksum = base64.b64encode(digest.digest()).decode()
    _call(
        f"write s3://{bucket}/{key}",
        lambda: s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ChecksumSHA256=checksum,
            Metadata={DIGEST_METADATA: digest.hexdigest()},
        ),
    )


def get_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    """A small object's bytes; None when there is no such object."""

    def read() -> bytes:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    data: bytes | None = _unless_missing(f"read s3://{bucket}/{key}", read)
    return data


def download(s3: Any, bucket: str, key: str, target: Path, *, size: int, sha256: str) -> None:
    """Download ``key`` to ``target``, hashing it on the way: ``target`` appears only when the
    bytes have the expected size and SHA-256 (DigestMismatch otherwise, and nothing is left)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    length = 0
    try:
        body = _call(f"read s3://{bucket}/{key}", lambda: s3.get_object(Bucket=bucket, Key=key)["Body"])
        with partial.open("wb") as handle:
            for chunk in body.iter_chunks(READ_BYTES):
                digest.update(chunk)
                length += len(chunk)
                handle.write(chunk)
        if length != size or digest.hexdigest() != sha256:
            raise DigestMismatch(
                f"s3://{bucket}/{key} is not the file the export recorded: {length} bytes with SHA-256 "
                f"{digest.hexdigest()}, the manifest says {size} bytes with SHA-256 {sha256}"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _call(what: str, call: Callable[[], Any]) -> Any:
    """``call()``, its failure a StoreError saying what was being done and what the store answered."""
    try:
        return call()
    except (StoreError, MissingExtra):
        raise
    except Exception as error:
        raise _store_error(what, error) from error


def _unless_missing(what: str, call: Callable[[], Any]) -> Any:
    """``call()``, or None when the store answers 404; any other failure as in ``_call``."""
    from botocore.exceptions import ClientError

    try:
        return _call(what, call)
    except StoreError as error:
        if isinstance(error.__cause__, ClientError) and _status(error.__cause__) == 404:
            return None
        raise


def _status(error: Any) -> int | None:
    status = (getattr(error, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _store_error(what: str, error: BaseException) -> StoreError:
    """A store's failure in a sentence: the operation, the store's error code and message."""
    response = getattr(error, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    text = (response.get("Error") or {}).get("Message") or str(error) or type(error).__name__
    if code in {"404", "NoSuchBucket"}:
        text = f"{text} (no such bucket, or no such object)"
    return StoreError(f"cannot {what}: " + (f"{code}: {text}" if code else text))
