"""Checkpoints: written atomically, found by id, pruned to the last few plus the best.

Layout of one checkpoint (ids a person can read: ``ckpt-epoch-2``, ``ckpt-step-500``)::

    <checkpointDir>/ckpt-step-500/
        manifest.json          id, epoch, step, loss, createdAt, sizeBytes, reason, data position, ...
        model/                 the adapter (adapter_model.safetensors) or the whole model
                               (model.safetensors), in the Hugging Face layout
        optimizer.pt           optimizer state (torch.save)
        schedule.pt            learning-rate schedule state
        scaler.pt              gradient scaler state (fp16)
        trainer_state.json     best losses, loss curves, counters: what the report continues from
        rng/rank-<N>.pt        random generator states of every process

Atomic: everything is written into ``.tmp-<id>``, every file and folder fsynced, and the folder
renamed to ``<id>`` only when complete; ``manifest.json`` is written last inside it (under a
temporary name, fsynced, then renamed). Only folders named like a checkpoint and holding a readable
manifest are listed, so a checkpoint torn by a crash or a SIGKILL is never picked up, and leftovers
are removed at the next start.

Verified: the manifest holds the size and sha256 of every other file, and a digest of its own
fields. A manifest that does not match its own digest is as unreadable as a torn one. Before a
resume the chosen checkpoint is checked against it; one that does not verify (a file truncated,
emptied, deleted or changed after it was written) is skipped for the newest one that does, and the
skip is said. A checkpoint named by ``resumeFrom`` that does not verify is refused, never replaced
by another.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from tensorone.api.checkpoint import (
    MANIFEST,
    CheckpointManifest,
    DataFingerprint,
    DataPosition,
    FileDigest,
    file_sha256,
)
from tensorone.errors import CheckpointNotFound, ConfigurationError
from trainer import distributed
from trainer.distributed import Topology

CHECKPOINT_ID = re.compile(r"^ckpt-(epoch|step)-[0-9]+$")
# What a checkpoint written before digests must hold (besides its model folder and every process's
# RNG state) to be trusted with a warning.
STATE_FILES = ("optimizer.pt", "schedule.pt", "scaler.pt", "trainer_state.json")


class CheckpointDamaged(CheckpointNotFound):
    """A checkpoint exists but cannot be trusted: a file is missing, truncated or changed, or its
    manifest is unreadable (CHECKPOINT_DAMAGED). A permanent error, like a missing one."""

    code = "CHECKPOINT_DAMAGED"


class DamagedManifest(ValueError):
    """A manifest that parses but does not match its own digest: as unreadable as a torn one (its
    values, the creation time that orders the checkpoints included, cannot be trusted)."""


@dataclass(frozen=True)
class TrainingState:
    """Everything a checkpoint restores besides the model weights."""

    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    scaler: dict[str, Any]
    trainer: dict[str, Any]
    rng: dict[str, Any]  # this process's generators, when loading (each process saves its own)


@dataclass(frozen=True)
class SkippedCheckpoint:
    """A checkpoint passed over when choosing where to resume, and why."""

    id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.id} ({self.problem})"


@dataclass(frozen=True)
class ResumeChoice:
    """Where to resume: a checkpoint that verifies (None: start over), the newer ones skipped, and
    whether the chosen one predates digests (so only the presence of its files was checked)."""

    checkpoint: CheckpointManifest | None
    skipped: list[SkippedCheckpoint] = field(default_factory=list)
    unverified: bool = False


def checkpoint_id(reason: str, *, epoch: int, step: int) -> str:
    """``ckpt-epoch-N`` for the end of epoch N, ``ckpt-step-N`` otherwise."""
    return f"ckpt-epoch-{epoch}" if reason == "epoch" else f"ckpt-step-{step}"


def rng_state() -> dict[str, Any]:
    """This process's random generator states."""
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointStore:
    """The checkpoints of one job, in one folder shared by every process."""

    def __init__(self, root: Path, topology: Topology, start_id: str | None = None) -> None:
        self.root = root
        self.topology = topology
        self.start_id = start_id  # written into every checkpoint saved: see choose

    def checkpoints(self) -> list[CheckpointManifest]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found: list[CheckpointManifest] = []
        for folder in self.root.iterdir():
            if not CHECKPOINT_ID.match(folder.name):
                continue
            try:
                manifest = _read_manifest(folder)
            except (OSError, ValidationError, DamagedManifest):
                continue  # torn, changed, or not ours
            if manifest.id == folder.name:
                found.append(manifest)
        return sorted(found, key=lambda m: (m.created_at, m.step))

    def unreadable(self) -> list[SkippedCheckpoint]:
        """Folders named like a checkpoint whose manifest is missing or cannot be read."""
        if not self.root.is_dir():
            return []
        found: list[SkippedCheckpoint] = []
        for folder in sorted(self.root.iterdir()):
            if not CHECKPOINT_ID.match(folder.name):
                continue
            try:
                manifest = _read_manifest(folder)
            except FileNotFoundError:
                found.append(SkippedCheckpoint(folder.name, f"{MANIFEST} is missing"))
            except DamagedManifest as error:
                found.append(SkippedCheckpoint(folder.name, str(error)))
            except (OSError, ValidationError) as error:
                found.append(SkippedCheckpoint(folder.name, f"{MANIFEST} is unreadable: {_first_line(error)}"))
            else:
                if manifest.id != folder.name:
                    found.append(SkippedCheckpoint(folder.name, f"{MANIFEST} names another checkpoint, {manifest.id}"))
        return found

    def verify(self, manifest: CheckpointManifest) -> str | None:
        """What is wrong with a checkpoint's files, or None when every file matches its digest. A
        checkpoint written before digests is checked for the presence of its files only."""
        folder = self.root / manifest.id
        if manifest.files is None:
            return self._missing_state(folder, manifest.world_size)
        for name, digest in sorted(manifest.files.items()):
            problem = _file_problem(folder / name, digest)
            if problem is not None:
                return f"{name} {problem}"
        return None

    def choose(self, resume_from: str | None) -> ResumeChoice:
        """The checkpoint to resume from: ``none`` -> start over; ``latest`` or unset -> the newest
        one that verifies, naming those skipped (start over when there are none; CheckpointDamaged
        when every one is damaged); an id -> that one when it verifies, else CheckpointNotFound or
        CheckpointDamaged naming the checkpoints that verify.

        ``none`` and an id say where a start of the job begins. A restart of the same start (its
        pods failed, were preempted or drained: the same ``start_id``) continues from the newest
        checkpoint that start saved and that verifies: a crash at step 5,000 of a job told to
        begin at step 100, or from nothing, does not send it back there."""
        existing = self.checkpoints()
        if resume_from not in (None, "latest") and self.start_id is not None:
            continued = self._continued(existing)
            if continued.checkpoint is not None:
                return continued
            # None of this start's own verifies (or it saved none): begin where the start says,
            # naming the ones skipped.
            chosen = self._begin(resume_from, existing)
            return replace(chosen, skipped=continued.skipped + chosen.skipped)
        return self._begin(resume_from, existing)

    def _begin(self, resume_from: str | None, existing: list[CheckpointManifest]) -> ResumeChoice:
        if resume_from == "none":
            return ResumeChoice(None)
        if resume_from not in (None, "latest"):
            return self._named(resume_from, existing)
        skipped = self.unreadable()
        for manifest in reversed(existing):
            problem = self.verify(manifest)
            if problem is None:
                return ResumeChoice(manifest, skipped, unverified=manifest.files is None)
            skipped.append(SkippedCheckpoint(manifest.id, problem))
        if skipped:
            raise CheckpointDamaged(
                f"no checkpoint in {self.root} can be trusted: {'; '.join(map(str, skipped))}. Set resumeFrom: "
                "none to start over",
                field="resumeFrom",
            )
        return ResumeChoice(None)

    def _continued(self, existing: list[CheckpointManifest]) -> ResumeChoice:
        """The newest checkpoint of this start that verifies, with those of it skipped on the way
        (no checkpoint when it saved none that does)."""
        skipped: list[SkippedCheckpoint] = []
        for manifest in reversed(existing):
            if manifest.start_id != self.start_id:
                continue
            problem = self.verify(manifest)
            if problem is None:
                return ResumeChoice(manifest, skipped, unverified=manifest.files is None)
            skipped.append(SkippedCheckpoint(manifest.id, problem))
        return ResumeChoice(None, skipped)

    def _named(self, resume_from: str, existing: list[CheckpointManifest]) -> ResumeChoice:
        chosen = next((m for m in existing if m.id == resume_from), None)
        problem = self.verify(chosen) if chosen is not None else None
        if chosen is not None and problem is None:
            return ResumeChoice(chosen, unverified=chosen.files is None)
        available = ", ".join(m.id for m in existing if m is not chosen and self.verify(m) is None) or "none"
        torn = {s.id: s.problem for s in self.unreadable()}
        if problem is None and resume_from in torn:
            problem = torn[resume_from]
        if problem is not None:
            raise CheckpointDamaged(
                f"checkpoint {resume_from} in {self.root} cannot be trusted: {problem}; checkpoints that verify: "
                f"{available}",
                field="resumeFrom",
            )
        raise CheckpointNotFound(
            f"no checkpoint {resume_from} in {self.root}; available: {available}", field="resumeFrom"
        )

    def _missing_state(self, folder: Path, world_size: int) -> str | None:
        expected = [*STATE_FILES, *(f"rng/rank-{rank}.pt" for rank in range(world_size))]
        for name in expected:
            path = folder / name
            if not path.is_file() or path.stat().st_size == 0:
                return f"{name} is missing or empty"
        model = folder / "model"
        if not model.is_dir() or not any(f.is_file() and f.stat().st_size > 0 for f in model.iterdir()):
            return "model/ holds no weights"
        return None

    def clean_up(self) -> None:
        """Remove what a crash left (rank 0, before training): half-written folders, and put back a
        checkpoint that was being replaced."""
        if not self.topology.is_main or not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.name.startswith(".old-"):
                original = self.root / folder.name.removeprefix(".old-")
                if not original.exists():
                    folder.rename(original)
                else:
                    shutil.rmtree(folder, ignore_errors=True)
        for folder in self.root.iterdir():
            if folder.name.startswith(".tmp-"):
                shutil.rmtree(folder, ignore_errors=True)

    def save(
        self,
        *,
        reason: str,
        epoch: int,
        step: int,
        position: DataPosition,
        loss: float | None,
        eval_loss: float | None,
        strategy: str,
        base_model: str,
        write_model: Callable[[Path], None],
        state: Callable[[], TrainingState],
        keep: int,
        data: DataFingerprint | None = None,
        protect: str | None = None,
    ) -> tuple[CheckpointManifest, list[CheckpointManifest]]:
        """Write a checkpoint, then keep the newest ``keep`` plus the best, and ``protect`` (the
        checkpoint of the best evaluation) whatever its age; every process calls this together. ``write_model`` and ``state`` are called on rank 0 only (the model and optimizer
        are the same on every process). Returns the new checkpoint and those kept, oldest first."""
        identifier = checkpoint_id(reason, epoch=epoch, step=step)
        tmp = self.root / f".tmp-{identifier}"
        if self.topology.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "rng").mkdir(parents=True)
        distributed.barrier(self.topology)
        _save_torch(rng_state(), tmp / "rng" / f"rank-{self.topology.rank}.pt")
        distributed.barrier(self.topology)
        if self.topology.is_main:
            captured = state()
            write_model(tmp / "model")
            _save_torch(captured.optimizer, tmp / "optimizer.pt")
            _save_torch(captured.schedule, tmp / "schedule.pt")
            _save_torch(captured.scaler, tmp / "scaler.pt")
            _write_text(tmp / "trainer_state.json", json.dumps(captured.trainer))
            files = _digests(tmp)
            manifest = CheckpointManifest(
                id=identifier,
                epoch=epoch,
                step=step,
                loss=loss,
                eval_loss=eval_loss,
                created_at=datetime.now(UTC),
                size_bytes=sum(d.size for d in files.values()),
                reason=reason,
                position=position,
                world_size=self.topology.world_size,
                strategy=strategy,
                base_model=base_model,
                files=files,
                data=data,
                start_id=self.start_id,
            )
            manifest = manifest.model_copy(update={"sha256": manifest.own_digest()})
            _fsync_tree(tmp)
            # Last, and whole or not at all: a manifest names only files already on disk.
            _write_text(tmp / f".{MANIFEST}", manifest.model_dump_json(by_alias=True, indent=2))
            (tmp / f".{MANIFEST}").rename(tmp / MANIFEST)
            _fsync_dir(tmp)
            self._replace(tmp, self.root / identifier)
            self._prune(keep, protect)
        distributed.barrier(self.topology)
        kept = self.checkpoints()
        for saved in kept:
            if saved.id == identifier:
                return saved, kept
        raise OSError(f"checkpoint {identifier} is not readable after saving it in {self.root}")

    def _replace(self, tmp: Path, final: Path) -> None:
        if final.exists():
            # A checkpoint of the same id from an earlier run (resumeFrom: none): set it aside so
            # the new one appears in one rename; clean_up puts it back after a crash in between.
            old = self.root / f".old-{final.name}"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        _fsync_dir(self.root)

    def load(self, manifest: CheckpointManifest, *, strategy: str, base_model: str) -> TrainingState:
        """The optimizer, schedule, scaler, trainer and this process's RNG states of a checkpoint."""
        if manifest.world_size != self.topology.world_size:
            raise ConfigurationError(
                f"checkpoint {manifest.id} was written by {manifest.world_size} processes and this run has "
                f"{self.topology.world_size}; the data order depends on it, so resume with the same number of "
                "workers or set resumeFrom: none",
                field="resumeFrom",
            )
        if manifest.strategy != strategy:
            raise ConfigurationError(
                f"checkpoint {manifest.id} was trained with strategy {manifest.strategy}, not {strategy}",
                field="resumeFrom",
            )
        if manifest.base_model != base_model:
            raise ConfigurationError(
                f"checkpoint {manifest.id} was trained from {manifest.base_model}, not {base_model}",
                field="resumeFrom",
            )
        folder = self.root / manifest.id

        def read(name: str, reader: Callable[[Path], Any]) -> Any:
            try:
                return reader(folder / name)
            except Exception as error:
                raise CheckpointDamaged(
                    f"checkpoint {manifest.id}: {name} cannot be read ({type(error).__name__}: {_first_line(error)}); "
                    "choose another checkpoint, or set resumeFrom: none to start over",
                    field="resumeFrom",
                ) from error

        return TrainingState(
            optimizer=read("optimizer.pt", _load_torch),
            schedule=read("schedule.pt", _load_torch),
            scaler=read("scaler.pt", _load_torch),
            trainer=read("trainer_state.json", lambda path: json.loads(path.read_text())),
            rng=read(f"rng/rank-{self.topology.rank}.pt", _load_torch),
        )

    def model_dir(self, manifest: CheckpointManifest) -> Path:
        return self.root / manifest.id / "model"

    def _prune(self, keep: int, protect: str | None = None) -> None:
        """Delete all but the newest ``keep`` checkpoints, the one with the lowest loss and ``protect``."""
        existing = self.checkpoints()
        kept = {m.id for m in existing[-keep:]} | ({protect} if protect else set())
        with_loss = [m for m in existing if m.loss is not None]
        if with_loss:
            # The latest of equally good ones, so the best is also as far along as possible.
            best = min(reversed(with_loss), key=lambda m: m.loss if m.loss is not None else float("inf"))
            kept.add(best.id)
        for manifest in existing:
            if manifest.id not in kept:
                shutil.rmtree(self.root / manifest.id, ignore_errors=True)


def _read_manifest(folder: Path) -> CheckpointManifest:
    """The manifest of a checkpoint folder, checked against its own digest (DamagedManifest). Read
    as bytes: bytes that are not UTF-8 are a ValidationError like any other damage."""
    manifest = CheckpointManifest.model_validate_json((folder / MANIFEST).read_bytes())
    problem = manifest.problem()
    if problem is not None:
        raise DamagedManifest(problem)
    return manifest


def _digests(folder: Path) -> dict[str, FileDigest]:
    """Size and SHA-256 of every file under ``folder``, by '/'-separated relative path."""
    digests: dict[str, FileDigest] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digests[path.relative_to(folder).as_posix()] = FileDigest(
                size=path.stat().st_size, sha256=file_sha256(path)
            )
    return digests


def _file_problem(path: Path, expected: FileDigest) -> str | None:
    """How a file differs from what was written, or None."""
    if not path.is_file():
        return "is missing"
    return expected.mismatch(path.stat().st_size, lambda: file_sha256(path))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _save_torch(obj: Any, path: Path) -> None:
    with path.open("wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            _fsync_dir(path)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
