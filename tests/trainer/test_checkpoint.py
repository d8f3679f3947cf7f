"""Checkpoints on disk: atomic writes, torn ones never listed, retention, finding by id."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tensorone.errors import CheckpointNotFound
from trainer.checkpoint import CheckpointStore, DataPosition, TrainingState, checkpoint_id
from trainer.distributed import Topology


def save(store: CheckpointStore, step: int, loss: float | None, *, reason: str = "step", keep: int = 10) -> str:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())

    def write_model(directory: Path) -> None:
        directory.mkdir()
        (directory / "adapter_model.safetensors").write_bytes(b"weights")

    saved, _ = store.save(
        reason=reason,
        epoch=step // 10,
        step=step,
        position=DataPosition(epoch=step // 10, step_in_epoch=step % 10),
        loss=loss,
        eval_loss=None,
        strategy="lora",
        base_model="tiny",
        write_model=write_model,
        state=lambda: TrainingState(optimizer.state_dict(), {}, {}, {"bestLoss": loss}, {}),
        keep=keep,
    )
    return saved.id


def test_ids_are_readable() -> None:
    assert checkpoint_id("epoch", epoch=2, step=40) == "ckpt-epoch-2"
    assert checkpoint_id("stop", epoch=2, step=47) == "ckpt-step-47"


def test_a_checkpoint_has_its_manifest_states_and_every_rank_rng(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, Topology())
    assert save(store, 5, 1.5) == "ckpt-step-5"
    folder = tmp_path / "ckpt-step-5"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "model",
        "optimizer.pt",
        "rng",
        "scaler.pt",
        "schedule.pt",
        "trainer_state.json",
    ]
    assert (folder / "rng" / "rank-0.pt").is_file()
    manifest = store.checkpoints()[0]
    assert (manifest.step, manifest.loss, manifest.reason, manifest.world_size) == (5, 1.5, "step", 1)
    assert manifest.size_bytes == sum(
        f.stat().st_size for f in folder.rglob("*") if f.is_file() and f.name != "manifest.json"
    )
    state = store.load(manifest, strategy="lora", base_model="tiny")
    assert state.trainer == {"bestLoss": 1.5}
    assert torch.equal(state.rng["torch"], torch.load(folder / "rng" / "rank-0.pt")["torch"])


def test_torn_checkpoints_are_never_listed_and_are_cleaned_up(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, Topology())
    save(store, 1, 2.0)
    # A crash mid-write leaves a temporary folder; a copy without manifest is not a checkpoint
    # either; nor is a folder whose manifest names another id.
    (tmp_path / ".tmp-ckpt-step-2" / "model").mkdir(parents=True)
    (tmp_path / "ckpt-step-3").mkdir()
    (tmp_path / "ckpt-step-4").mkdir()
    (tmp_path / "ckpt-step-4" / "manifest.json").write_text("{truncated")
    assert [m.id for m in store.checkpoints()] == ["ckpt-step-1"]
    store.clean_up()
    assert not (tmp_path / ".tmp-ckpt-step-2").exists()


def test_a_checkpoint_being_replaced_is_put_back_after_a_crash(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, Topology())
    save(store, 1, 2.0)
    (tmp_path / "ckpt-step-1").rename(tmp_path / ".old-ckpt-step-1")
    store.clean_up()
    assert [m.id for m in store.checkpoints()] == ["ckpt-step-1"]


def test_saving_an_existing_id_replaces_it(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, Topology())
    save(store, 1, 2.0)
    save(store, 1, 1.0)
    assert [(m.id, m.loss) for m in store.checkpoints()] == [("ckpt-step-1", 1.0)]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_retention_keeps_the_last_few_plus_the_best(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, Topology())
    for step, loss in [(1, 3.0), (2, 0.5), (3, 2.0), (4, 2.5), (5, 2.2)]:
        save(store, step, loss, keep=2)
    assert [m.id for m in store.checkpoints()] == ["ckpt-step-2", "ckpt-step-4", "ckpt-step-5"]


def chosen(store: CheckpointStore, resume_from: str | None) -> str | None:
    checkpoint = store.choose(resume_from).checkpoint
    return checkpoint.id if checkpoint is not None else None


def test_choose(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, Topology())
    assert chosen(store, None) is None and chosen(store, "latest") is None
    save(store, 1, 2.0)
    save(store, 10, 1.0, reason="epoch")
    assert chosen(store, None) == "ckpt-epoch-1"
    assert chosen(store, "ckpt-step-1") == "ckpt-step-1"
    assert chosen(store, "none") is None
    with pytest.raises(CheckpointNotFound) as raised:
        store.choose("ckpt-step-7")
    assert raised.value.field == "resumeFrom"
    assert "available: ckpt-step-1, ckpt-epoch-1" in str(raised.value)


def test_a_restart_continues_its_own_start_where_resume_from_names_the_beginning(tmp_path: Path) -> None:
    """resumeFrom (an id, or none) says where a start of the job begins; a restart of that start
    (same start id: its pods failed or were preempted) goes on from the checkpoints it saved."""
    save(CheckpointStore(tmp_path, Topology(), start_id="uid:1"), 1, 2.0)
    save(CheckpointStore(tmp_path, Topology(), start_id="uid:1"), 2, 1.9)
    resumed = CheckpointStore(tmp_path, Topology(), start_id="uid:4")
    assert chosen(resumed, "ckpt-step-1") == "ckpt-step-1"  # the start begins where it is told
    save(resumed, 3, 1.8)
    save(resumed, 4, 1.7)
    assert [m.start_id for m in resumed.checkpoints()] == ["uid:1", "uid:1", "uid:4", "uid:4"]
    assert chosen(resumed, "ckpt-step-1") == "ckpt-step-4"  # its restart goes on
    assert chosen(resumed, "none") == "ckpt-step-4"
    assert chosen(resumed, "latest") == "ckpt-step-4"

    # Another start from the same checkpoint (a new resume) begins there again; a local run (no
    # start id) does what it is told.
    assert chosen(CheckpointStore(tmp_path, Topology(), start_id="uid:9"), "ckpt-step-1") == "ckpt-step-1"
    assert chosen(CheckpointStore(tmp_path, Topology(), start_id="uid:9"), "none") is None
    assert chosen(CheckpointStore(tmp_path, Topology()), "ckpt-step-2") == "ckpt-step-2"

    # The start's newest does not verify: the one before it, named as skipped; none of them: the
    # beginning, with every skip named.
    (tmp_path / "ckpt-step-4" / "optimizer.pt").write_bytes(b"")
    choice = resumed.choose("ckpt-step-1")
    assert choice.checkpoint is not None and choice.checkpoint.id == "ckpt-step-3"
    assert [s.id for s in choice.skipped] == ["ckpt-step-4"]
    (tmp_path / "ckpt-step-3" / "optimizer.pt").write_bytes(b"")
    choice = resumed.choose("ckpt-step-1")
    assert choice.checkpoint is not None and choice.checkpoint.id == "ckpt-step-1"
    assert [s.id for s in choice.skipped] == ["ckpt-step-4", "ckpt-step-3"]


def test_a_manifest_written_before_starts_were_told_apart_still_verifies(tmp_path: Path) -> None:
    """Such a manifest has no startId key at all, and its own digest covers the fields it had."""
    import json

    store = CheckpointStore(tmp_path, Topology())
    save(store, 1, 2.0)
    path = tmp_path / "ckpt-step-1" / "manifest.json"
    written = json.loads(path.read_text())
    written.pop("startId", None)
    path.write_text(json.dumps(written))
    [manifest] = store.checkpoints()
    assert manifest.start_id is None and manifest.problem() is None
    assert chosen(store, None) == "ckpt-step-1"
    # A start id written later into such a manifest is a change its digest finds.
    path.write_text(json.dumps(written | {"startId": "uid:1"}))
    assert store.checkpoints() == []


def test_a_checkpoint_of_another_strategy_or_model_is_refused(tmp_path: Path) -> None:
    from tensorone.errors import ConfigurationError

    store = CheckpointStore(tmp_path, Topology())
    save(store, 1, 2.0)
    manifest = store.checkpoints()[0]
    with pytest.raises(ConfigurationError, match="strategy lora, not full"):
        store.load(manifest, strategy="full", base_model="tiny")
    with pytest.raises(ConfigurationError, match="trained from tiny"):
        store.load(manifest, strategy="lora", base_model="other")
