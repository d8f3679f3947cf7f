"""The final model as an artifact: what it is, how big, its content digest, what it needs.

The digest is the SHA-256 of a ``sha256sum``-style listing of the folder (one line per file: hex
digest, two spaces, '/'-separated relative path, newline; sorted by path), so a user can check a
copy with standard tools::

    cd output && find . -path ./merged -prune -o -type f -printf '%P\\n' | LC_ALL=C sort \\
        | xargs sha256sum | sha256sum

A ``merged/`` sub-folder (the adapter merged into the base weights) is an artifact of its own and
not part of its parent's digest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tensorone.api.checkpoint import file_sha256
from tensorone.api.export import MERGED_FOLDER, listing_digest
from tensorone.api.report import ArtifactReport, OutputReport
from tensorone.api.v1alpha1.trainingjob import OutputKind, Strategy


def folder_digest(folder: Path, *, exclude: str | None = None) -> tuple[str, int]:
    """(content digest, total bytes) of every file under ``folder``, leaving out the sub-folder ``exclude``."""
    digests: dict[str, str] = {}
    size = 0
    for path in folder.rglob("*"):
        if not path.is_file() or (exclude is not None and path.relative_to(folder).parts[0] == exclude):
            continue
        size += path.stat().st_size
        digests[path.relative_to(folder).as_posix()] = file_sha256(path)
    return listing_digest(digests), size


def describe_output(
    written: list[Path],
    *,
    checkpoint_dir: Path,
    strategy: Strategy | None,
    base_model: str | None,
    checkpoint: str | None,
) -> OutputReport:
    """The report of the folders ``save_final`` wrote: the output, and its merged form when there is one."""
    folder = written[0]
    sha256, size = folder_digest(folder, exclude=MERGED_FOLDER)
    adapter = strategy in (Strategy.lora, Strategy.qlora)
    merged = next((p for p in written[1:] if p.name == MERGED_FOLDER), None)
    merged_report = None
    if merged is not None:
        merged_sha256, merged_size = folder_digest(merged)
        merged_report = ArtifactReport(
            path=_shown(merged, checkpoint_dir), kind=OutputKind.merged, size_bytes=merged_size, sha256=merged_sha256
        )
    return OutputReport(
        path=_shown(folder, checkpoint_dir),
        kind=OutputKind.adapter if adapter else OutputKind.full,
        size_bytes=size,
        sha256=sha256,
        base_model=base_model,
        checkpoint=checkpoint,
        created_at=datetime.now(UTC),
        merged=merged_report,
    )


def _shown(folder: Path, checkpoint_dir: Path) -> str:
    """The folder relative to the checkpoint directory (the claim's root in a pod), else absolute."""
    resolved = folder.resolve()
    try:
        return resolved.relative_to(checkpoint_dir.resolve()).as_posix()
    except ValueError:
        return str(resolved)
