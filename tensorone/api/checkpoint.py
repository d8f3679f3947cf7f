"""A checkpoint's manifest: the contract between the trainer that writes a checkpoint
(``trainer.checkpoint``) and whoever reads one back from the claim (a resume, ``t1 download``).

``<checkpointDir>/<id>/manifest.json`` is written last into the checkpoint's folder: the id, step,
loss and data position of the checkpoint, the size and SHA-256 of every other file in the folder
(by '/'-separated path), and the SHA-256 of its own other fields, so that a copy of the folder can
be checked file by file without torch, and a change to the manifest itself is found too.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from pydantic import Field

from tensorone.api.report import CheckpointReport
from tensorone.api.v1alpha1.base import ApiModel

MANIFEST = "manifest.json"
# Files are read in pieces of this size to be digested.
DIGEST_CHUNK_BYTES = 1 << 20
# 2: the manifest holds the digests of every file and the data fingerprint; 3: and its own digest.
FORMAT_VERSION = 3


class FileDigest(ApiModel):
    """What one file of a checkpoint was when it was written."""

    size: int = Field(description="Bytes.")
    sha256: str = Field(description="SHA-256 of the content, hex.")

    def mismatch(self, size: int, sha256: Callable[[], str]) -> str | None:
        """How a file of ``size`` bytes differs from what was written, or None. ``sha256`` gives the
        digest of its content, and is called (the file read) only when the size matches."""
        if size != self.size:
            return f"is {size} bytes, {self.size} were written"
        content = sha256()
        if content != self.sha256:
            return (
                f"has changed since it was written (same size, {size} bytes; SHA-256 {content[:12]}..., "
                f"{self.sha256[:12]}... was written)"
            )
        return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(DIGEST_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class DataFingerprint(ApiModel):
    """The training examples as the data plan sees them: their number, tokens, and a digest of
    their content in order."""

    examples: int
    tokens: int
    sha256: str

    def describe(self) -> str:
        return f"{self.examples} examples, {self.tokens} tokens, content {self.sha256[:12]}"


class DataPosition(ApiModel):
    """Where in the data the next optimizer step starts."""

    epoch: int = Field(description="Epoch index (0-based) of the next step.")
    step_in_epoch: int = Field(description="Optimizer steps already done in that epoch.")


class CheckpointManifest(ApiModel):
    """What a checkpoint holds, written last into it."""

    format_version: int = FORMAT_VERSION
    id: str
    epoch: int = Field(description="Epochs completed.")
    step: int = Field(description="Optimizer steps completed.")
    loss: float | None = None
    eval_loss: float | None = None
    created_at: datetime
    size_bytes: int
    reason: str
    position: DataPosition
    world_size: int
    strategy: str
    base_model: str
    files: dict[str, FileDigest] | None = Field(
        default=None,
        description="Size and SHA-256 of every other file ('/'-separated paths inside the checkpoint); "
        "absent in checkpoints written before digests.",
    )
    data: DataFingerprint | None = Field(default=None, description="The training data the run was planned on.")
    start_id: str | None = Field(
        default=None,
        description="The start of the job that saved it (ResolvedJob.start_id); absent for a local run and in "
        "checkpoints written before starts were told apart.",
    )
    sha256: str | None = Field(
        default=None,
        description="SHA-256 of this manifest's other fields (compact JSON, camelCase keys), so that a change "
        "to the manifest itself is found too; absent before format 3.",
    )

    def own_digest(self) -> str:
        """The digest ``sha256`` must hold: of every other field, serialized the one way pydantic does."""
        # A field added since format 3 is left out while unset, so older manifests keep their digest.
        unset = {"start_id"} if self.start_id is None else set()
        return hashlib.sha256(self.model_dump_json(by_alias=True, exclude={"sha256", *unset}).encode()).hexdigest()

    def problem(self) -> str | None:
        """What is wrong with the manifest itself, or None. One flipped bit cannot pass unless it
        leaves every value as it was (``T``/``t`` in a timestamp): it changes a field the digest
        covers, the digest, or the key or version that say a digest is due."""
        if self.sha256 is None:
            return f"{MANIFEST} has no digest of its own" if self.format_version >= 3 else None
        if self.sha256 != self.own_digest():
            return f"{MANIFEST} has changed since it was written (its own sha256 differs)"
        return None

    def files_problem(self, found: Mapping[str, tuple[int, str]]) -> str | None:
        """What is wrong with a copy of the checkpoint's files, given as its files' sizes and SHA-256
        digests by '/'-separated path, against the digests listed here; None when each listed file
        is there as written (files not listed are not looked at), or when none are listed."""
        for name, expected in sorted((self.files or {}).items()):
            if name not in found:
                return f"{name} is missing"
            size, sha256 = found[name]
            problem = expected.mismatch(size, functools.partial(str, sha256))
            if problem is not None:
                return f"{name} {problem}"
        return None

    def to_report(self) -> CheckpointReport:
        return CheckpointReport(
            id=self.id,
            epoch=self.epoch,
            step=self.step,
            loss=self.loss,
            created_at=self.created_at,
            size_bytes=self.size_bytes,
            reason=self.reason,
        )
