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
renamed to ``<id>`` only when complete; ``manifest.json`` is written last inside it. Only folders
named like a checkpoint and holding a readable manifest are listed, so a checkpoint torn by a
crash or a SIGKILL is never picked up, and leftovers are removed at the next start.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError

from tensorone.api.report import CheckpointReport
from tensorone.api.v1alpha1.base import ApiModel
from tensorone.errors import CheckpointNotFound, ConfigurationError
from trainer import distributed
from trainer.distributed import Topology

CHECKPOINT_ID = re.compile(r"^ckpt-(epoch|step)-[0-9]+$")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


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


@dataclass(frozen=True)
class TrainingState:
    """Everything a checkpoint restores besides the model weights."""

    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    scaler: dict[str, Any]
    trainer: dict[str, Any]
    rng: dict[str, Any]  # this process's generators, when loading (each process saves its own)


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

    def __init__(self, root: Path, topology: Topology) -> None:
        self.root = root
        self.topology = topology

    def checkpoints(self) -> list[CheckpointManifest]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found: list[CheckpointManifest] = []
        for folder in self.root.iterdir():
            if not CHECKPOINT_ID.match(folder.name):
                continue
            try:
                manifest = CheckpointManifest.model_validate_json((folder / MANIFEST).read_text())
            except (OSError, ValidationError):
                continue  # torn, or not ours
            if manifest.id == folder.name:
                found.append(manifest)
        return sorted(found, key=lambda m: (m.created_at, m.step))

    def find(self, resume_from: str | None) -> CheckpointManifest | None:
        """The checkpoint to resume from: ``none`` -> None; ``latest`` or unset -> the newest, if
        any; an id -> that one, or CheckpointNotFound naming the ones there are."""
        if resume_from == "none":
            return None
        existing = self.checkpoints()
        if resume_from in (None, "latest"):
            return existing[-1] if existing else None
        for manifest in existing:
            if manifest.id == resume_from:
                return manifest
        available = ", ".join(m.id for m in existing) or "none"
        raise CheckpointNotFound(
            f"no checkpoint {resume_from} in {self.root}; available: {available}", field="resumeFrom"
        )

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
    ) -> tuple[CheckpointManifest, list[CheckpointManifest]]:
        """Write a checkpoint, then keep the newest ``keep`` plus the best; every process calls this
        together. ``write_model`` and ``state`` are called on rank 0 only (the model and optimizer
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
            manifest = CheckpointManifest(
                id=identifier,
                epoch=epoch,
                step=step,
                loss=loss,
                eval_loss=eval_loss,
                created_at=datetime.now(UTC),
                size_bytes=sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()),
                reason=reason,
                position=position,
                world_size=self.topology.world_size,
                strategy=strategy,
                base_model=base_model,
            )
            _write_text(tmp / MANIFEST, manifest.model_dump_json(by_alias=True, indent=2))
            _fsync_tree(tmp)
            self._replace(tmp, self.root / identifier)
            self._prune(keep)
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
        return TrainingState(
            optimizer=_load_torch(folder / "optimizer.pt"),
            schedule=_load_torch(folder / "schedule.pt"),
            scaler=_load_torch(folder / "scaler.pt"),
            trainer=json.loads((folder / "trainer_state.json").read_text()),
            rng=_load_torch(folder / "rng" / f"rank-{self.topology.rank}.pt"),
        )

    def model_dir(self, manifest: CheckpointManifest) -> Path:
        return self.root / manifest.id / "model"

    def _prune(self, keep: int) -> None:
        """Delete all but the newest ``keep`` checkpoints and the one with the lowest loss."""
        existing = self.checkpoints()
        kept = {m.id for m in existing[-keep:]}
        with_loss = [m for m in existing if m.loss is not None]
        if with_loss:
            # The latest of equally good ones, so the best is also as far along as possible.
            best = min(reversed(with_loss), key=lambda m: m.loss if m.loss is not None else float("inf"))
            kept.add(best.id)
        for manifest in existing:
            if manifest.id not in kept:
                shutil.rmtree(self.root / manifest.id, ignore_errors=True)


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
