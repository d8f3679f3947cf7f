"""Torn checkpoints: every kind of damage to every kind of file is detected, never loaded; a resume
falls back to the newest checkpoint that verifies, says which it skipped and why, and is then
bit-identical to a run that never stopped; a checkpoint named by resumeFrom that does not verify
is refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import assert_same_weights, example_records, log_events, make_job, step_losses
from trainer.checkpoint import MANIFEST, CheckpointDamaged, CheckpointStore
from trainer.distributed import Topology
from trainer.run import RunOptions, run

# 24 records, batches of 4: 6 steps; checkpoints at steps 2 and 4, and the end of the epoch.
TRAINING: dict[str, Any] = {"epochs": 1, "checkpointSteps": 2, "keepCheckpoints": 100}
GOOD, NEWEST = "ckpt-step-2", "ckpt-step-4"

# Every file a LoRA checkpoint holds besides its manifest (test_every_file_kind_is_covered keeps
# this list whole); a full-model checkpoint's weights are FULL_MODEL_FILES.
FILES = {
    "adapter": "model/adapter_model.safetensors",
    "adapter-config": "model/adapter_config.json",
    "adapter-readme": "model/README.md",  # peft's model card: not needed to resume, digested all the same
    "optimizer": "optimizer.pt",
    "schedule": "schedule.pt",
    "scaler": "scaler.pt",
    "trainer-state": "trainer_state.json",
    "rng": "rng/rank-0.pt",
}
FULL_MODEL_FILES = {
    "weights": "model/model.safetensors",
    "config": "model/config.json",
    "generation-config": "model/generation_config.json",
}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def delete(path: Path) -> None:
    path.unlink()


def flip_a_bit(path: Path, position: int | None = None) -> None:
    """Flip one bit of the byte at ``position`` (the middle one by default): the size stays the same."""
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if position is None else position
    data[index] ^= 1 << (index % 8)
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": truncate,
    "empty": empty,
    "deleted": delete,
    "bit-flipped": flip_a_bit,
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    result = run(make_job(root, training=TRAINING), RunOptions(serve_reports=False))
    assert result.exit_code == 0, result.report
    return root


@pytest.fixture(scope="module")
def reference_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run with the full strategy: its checkpoints hold the whole model."""
    root = tmp_path_factory.mktemp("reference-full")
    result = run(make_job(root, training=TRAINING, strategy="full"), RunOptions(serve_reports=False))
    assert result.exit_code == 0, result.report
    return root


def copy_checkpoints(reference: Path, root: Path, *ids: str) -> Path:
    for identifier in ids:
        shutil.copytree(reference / "checkpoints" / identifier, root / "checkpoints" / identifier)
    return root / "checkpoints"


def test_every_file_kind_is_covered(reference: Path, reference_full: Path) -> None:
    """A file kind added to checkpoints must be added to the damage tests too."""
    state_files = [f for f in FILES.values() if not f.startswith("model/")]
    for root, model_files in ((reference, [f for f in FILES.values() if f.startswith("model/")]), (reference_full, [])):
        manifest = CheckpointStore(root / "checkpoints", Topology()).checkpoints()[-1]
        assert manifest.files is not None
        assert sorted(manifest.files) == sorted([*state_files, *(model_files or FULL_MODEL_FILES.values())])


def assert_detected(checkpoints: Path, file: str) -> None:
    """The newest checkpoint is skipped for the good one, naming ``file``; named, it is refused."""
    store = CheckpointStore(checkpoints, Topology())
    choice = store.choose("latest")
    assert choice.checkpoint is not None and choice.checkpoint.id == GOOD
    assert [s.id for s in choice.skipped] == [NEWEST]
    assert file in choice.skipped[0].problem, choice.skipped[0].problem

    with pytest.raises(CheckpointDamaged) as raised:
        store.choose(NEWEST)
    assert raised.value.field == "resumeFrom"
    assert f"checkpoint {NEWEST}" in str(raised.value) and file in str(raised.value)
    assert f"checkpoints that verify: {GOOD}" in str(raised.value)


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
@pytest.mark.parametrize("kind", FILES, ids=list(FILES))
def test_every_damage_to_every_file_is_detected(reference: Path, tmp_path: Path, kind: str, damage: str) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    DAMAGE[damage](checkpoints / NEWEST / FILES[kind])
    assert_detected(checkpoints, FILES[kind])
    assert CheckpointStore(checkpoints, Topology()).choose("latest").skipped[0].problem.startswith(FILES[kind])


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
@pytest.mark.parametrize("kind", FULL_MODEL_FILES, ids=list(FULL_MODEL_FILES))
def test_every_damage_to_full_model_weights_is_detected(
    reference_full: Path, tmp_path: Path, kind: str, damage: str
) -> None:
    checkpoints = copy_checkpoints(reference_full, tmp_path, GOOD, NEWEST)
    DAMAGE[damage](checkpoints / NEWEST / FULL_MODEL_FILES[kind])
    assert_detected(checkpoints, FULL_MODEL_FILES[kind])


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_every_damage_to_the_manifest_is_detected(reference: Path, tmp_path: Path, damage: str) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    DAMAGE[damage](checkpoints / NEWEST / MANIFEST)
    assert_detected(checkpoints, MANIFEST)


def test_no_flipped_bit_anywhere_in_the_manifest_is_accepted(reference: Path, tmp_path: Path) -> None:
    """A bit flip that leaves valid JSON (a digit of the step, a letter of the strategy) would
    change what is resumed without a word: the manifest's own digest catches every one."""
    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    manifest = checkpoints / NEWEST / MANIFEST
    original = manifest.read_bytes()
    store = CheckpointStore(checkpoints, Topology())
    newest = store.checkpoints()[-1]
    accepted, harmless = [], 0
    for position in range(len(original)):
        manifest.write_bytes(original)
        flip_a_bit(manifest, position)
        choice = store.choose("latest")
        if (
            choice.checkpoint is not None
            and choice.checkpoint.id == GOOD
            and [s.id for s in choice.skipped] == [NEWEST]
        ):
            continue
        if store.checkpoints()[-1] == newest:
            harmless += 1  # the same values, spelled otherwise ("t" for "T" in a timestamp)
            continue
        accepted.append(position)
    assert accepted == [], [(p, original[p : p + 1]) for p in accepted]
    assert harmless <= 2


def test_the_manifests_own_digest_survives_reading_and_names_a_change(reference: Path, tmp_path: Path) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    store = CheckpointStore(checkpoints, Topology())
    assert all(m.sha256 is not None and m.problem() is None for m in store.checkpoints())
    # A value changed so that the JSON stays valid: the step, 4 -> 5 (one bit of '4').
    manifest = checkpoints / NEWEST / MANIFEST
    manifest.write_text(manifest.read_text().replace('"step": 4', '"step": 5'))
    assert [str(s) for s in store.choose("latest").skipped] == [
        f"{NEWEST} ({MANIFEST} has changed since it was written (its own sha256 differs))"
    ]


def test_every_checkpoint_damaged_is_refused_rather_than_started_over(reference: Path, tmp_path: Path) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    empty(checkpoints / GOOD / "optimizer.pt")
    delete(checkpoints / NEWEST / "rng" / "rank-0.pt")
    with pytest.raises(CheckpointDamaged, match=r"no checkpoint .* can be trusted: .*resumeFrom: none"):
        CheckpointStore(checkpoints, Topology()).choose("latest")


def test_a_checkpoint_named_that_does_not_exist_lists_those_that_verify(reference: Path, tmp_path: Path) -> None:
    from tensorone.errors import CheckpointNotFound

    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    flip_a_bit(checkpoints / NEWEST / "optimizer.pt")
    with pytest.raises(CheckpointNotFound, match=f"no checkpoint ckpt-step-9 .*; available: {GOOD}$"):
        CheckpointStore(checkpoints, Topology()).choose("ckpt-step-9")


def resume_latest(
    reference: Path, root: Path, damage: Callable[[Path], None], file: str, *, strategy: str = "lora"
) -> None:
    """Resume from the newest checkpoint after damaging it: the run falls back to the one before."""
    checkpoints = copy_checkpoints(reference, root, GOOD, NEWEST)
    damage(checkpoints / NEWEST / file)
    result = run(make_job(root, training=TRAINING, strategy=strategy), RunOptions(serve_reports=False))
    assert result.exit_code == 0, result.report
    assert result.report is not None and result.report.resumed_from == GOOD

    skipped = log_events(checkpoints, "checkpointSkipped")
    assert [(e["id"], e["problem"].split()[0]) for e in skipped] == [(NEWEST, file)]
    expected = step_losses(reference / "checkpoints")
    resumed = step_losses(checkpoints)
    assert sorted(resumed) == [3, 4, 5, 6]
    assert all(resumed[step] == expected[step] for step in resumed), "losses differ after the fallback"
    assert_same_weights(reference / "output", root / "output")


# One damage per file kind, every kind of damage used: each fallback resume is bit-identical.
FALLBACKS = [
    ("adapter", "bit-flipped"),
    ("adapter-config", "truncated"),
    ("optimizer", "truncated"),
    ("schedule", "empty"),
    ("scaler", "bit-flipped"),
    ("trainer-state", "empty"),
    ("rng", "deleted"),
]


@pytest.mark.parametrize(("kind", "damage"), FALLBACKS, ids=[f"{k}-{d}" for k, d in FALLBACKS])
def test_fallback_from_a_damaged_file_resumes_exactly(reference: Path, tmp_path: Path, kind: str, damage: str) -> None:
    resume_latest(reference, tmp_path, DAMAGE[damage], FILES[kind])


def test_fallback_from_a_bit_flipped_manifest_resumes_exactly(reference: Path, tmp_path: Path) -> None:
    resume_latest(reference, tmp_path, flip_a_bit, MANIFEST)


def test_fallback_from_damaged_full_model_weights_resumes_exactly(reference_full: Path, tmp_path: Path) -> None:
    resume_latest(reference_full, tmp_path, flip_a_bit, FULL_MODEL_FILES["weights"], strategy="full")


def test_the_skip_is_in_the_report_while_running(reference: Path, tmp_path: Path) -> None:
    from tensorone.reporting.client import Reporter
    from trainer import recipe

    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    truncate(checkpoints / NEWEST / "optimizer.pt")
    reporter = Reporter(serve=False)
    _, choice = recipe.setup_checkpoints(make_job(tmp_path, training=TRAINING), Topology(), reporter)
    reporter.running(resumed_from=GOOD)
    recipe.report_notices(reporter, choice, [])
    message = reporter.tracker.report().message or ""
    assert message.startswith(f"resumed from {GOOD}; skipped damaged checkpoints: {NEWEST} (optimizer.pt is ")


def test_resume_from_a_named_damaged_checkpoint_fails_permanently(reference: Path, tmp_path: Path) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    empty(checkpoints / NEWEST / FILES["trainer-state"])
    result = run(make_job(tmp_path, training=TRAINING, resume_from=NEWEST), RunOptions(serve_reports=False))
    assert result.exit_code == 5
    assert result.report is not None and result.report.reason == "CheckpointDamaged"
    assert NEWEST in (result.report.message or "") and f"checkpoints that verify: {GOOD}" in (
        result.report.message or ""
    )
    assert not (tmp_path / "output").exists(), "nothing was trained from another checkpoint"
    # The checkpoints on disk are still listed (t1 prints them; the status keeps them).
    assert [c.id for c in result.report.checkpoints] == [GOOD, NEWEST]


def strip_digests(folder: Path) -> None:
    """The manifest as a trainer wrote it before digests and data fingerprints."""
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"], manifest["data"], manifest["sha256"]
    manifest["formatVersion"] = 1
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_checkpoint_from_before_digests_is_resumed_with_a_warning(
    reference: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    strip_digests(checkpoints / NEWEST)
    result = run(make_job(tmp_path, training=TRAINING), RunOptions(serve_reports=False))
    assert result.exit_code == 0, result.report
    assert result.report is not None and result.report.resumed_from == NEWEST
    assert f"checkpoint {NEWEST} has no content digests" in caplog.text
    assert f"checkpoint {NEWEST} records no data fingerprint" in caplog.text
    assert_same_weights(reference / "output", tmp_path / "output")


def test_a_checkpoint_from_before_digests_with_a_missing_file_is_skipped(reference: Path, tmp_path: Path) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, GOOD, NEWEST)
    strip_digests(checkpoints / NEWEST)
    empty(checkpoints / NEWEST / "schedule.pt")
    choice = CheckpointStore(checkpoints, Topology()).choose("latest")
    assert choice.checkpoint is not None and choice.checkpoint.id == GOOD
    assert [str(s) for s in choice.skipped] == [f"{NEWEST} (schedule.pt is missing or empty)"]


def test_unreadable_state_in_a_checkpoint_from_before_digests_names_the_file_and_checkpoint(
    reference: Path, tmp_path: Path
) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, NEWEST)
    strip_digests(checkpoints / NEWEST)
    truncate(checkpoints / NEWEST / "optimizer.pt")
    result = run(make_job(tmp_path, training=TRAINING), RunOptions(serve_reports=False))
    assert result.exit_code == 5
    assert result.report is not None and result.report.reason == "CheckpointDamaged"
    assert (result.report.message or "").startswith(f"resumeFrom: checkpoint {NEWEST}: optimizer.pt cannot be read")
    assert [c.id for c in result.report.checkpoints] == [NEWEST]
    termination = json.loads((tmp_path / "termination-log").read_text())
    assert [c["id"] for c in termination["checkpoints"]] == [NEWEST]


def test_damaged_weights_in_a_checkpoint_from_before_digests_name_the_checkpoint(
    reference: Path, tmp_path: Path
) -> None:
    checkpoints = copy_checkpoints(reference, tmp_path, NEWEST)
    strip_digests(checkpoints / NEWEST)
    truncate(checkpoints / NEWEST / FILES["adapter"])
    result = run(make_job(tmp_path, training=TRAINING), RunOptions(serve_reports=False))
    assert result.exit_code == 5
    assert result.report is not None and result.report.reason == "CheckpointDamaged"
    message = result.report.message or ""
    assert f"checkpoint {NEWEST}: the weights in" in message and "cannot be loaded" in message
    assert [c.id for c in result.report.checkpoints] == [NEWEST]


# The data fingerprint ------------------------------------------------------------------------


def changed_dataset() -> dict[str, Any]:
    records = example_records()
    records[5] = records[5] | {"completion": records[5]["completion"] + " (edited)"}
    return {"format": "jsonl", "source": {"inline": {"records": records}}}


def test_resume_on_changed_data_is_refused_naming_what_changed(reference: Path, tmp_path: Path) -> None:
    copy_checkpoints(reference, tmp_path, NEWEST)
    result = run(make_job(tmp_path, training=TRAINING, dataset=changed_dataset()), RunOptions(serve_reports=False))
    assert result.exit_code == 3
    assert result.report is not None and result.report.reason == "DataError"
    message = result.report.message or ""
    assert message.startswith(f"resumeFrom: the training data changed since checkpoint {NEWEST} was written: then 24")
    assert "TENSORONE_ALLOW_DATA_CHANGE=1" in message
    assert [c.id for c in result.report.checkpoints] == [NEWEST]


def test_resume_on_fewer_examples_says_how_many(reference: Path, tmp_path: Path) -> None:
    copy_checkpoints(reference, tmp_path, NEWEST)
    dataset = {"format": "jsonl", "source": {"inline": {"records": example_records(20)}}}
    result = run(make_job(tmp_path, training=TRAINING, dataset=dataset), RunOptions(serve_reports=False))
    assert result.exit_code == 3
    assert result.report is not None
    assert "then 24 examples" in (result.report.message or "") and "now 20 examples" in (result.report.message or "")


def test_resume_on_changed_data_when_the_job_allows_it(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TENSORONE_ALLOW_DATA_CHANGE", "1")
    copy_checkpoints(reference, tmp_path, NEWEST)
    result = run(make_job(tmp_path, training=TRAINING, dataset=changed_dataset()), RunOptions(serve_reports=False))
    assert result.exit_code == 0, result.report
    assert result.report is not None and result.report.resumed_from == NEWEST
    assert "resuming anyway (TENSORONE_ALLOW_DATA_CHANGE=1)" in caplog.text
