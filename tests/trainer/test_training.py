"""Whole training runs in this process: how they end (completed, diverged, refused, bad data), what
they leave behind (checkpoints, metrics log, termination message, loadable artifacts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tensorone.api.report import TERMINATION_MESSAGE_LIMIT
from tests.trainer.conftest import TINY_MODEL, example_records, log_events, make_job, step_losses, weights
from trainer.loop import FAULT_NAN_AT_STEP_ENV
from trainer.run import RunOptions, RunResult, run


def train(root: Path, **overrides: Any) -> RunResult:
    return run(make_job(root, **overrides), RunOptions(serve_reports=False))


def test_a_completed_run_leaves_checkpoints_log_report_and_termination_message(tmp_path: Path) -> None:
    result = train(tmp_path, training={"epochs": 2, "evalSplit": 0.25, "checkpointSteps": 4, "keepCheckpoints": 2})

    assert result.exit_code == 0
    report = result.report
    assert report is not None
    assert report.state == "completed"
    # 24 records, 6 held out: 18 for training in batches of 4 = 5 steps an epoch.
    assert (report.step, report.total_steps, report.epoch, report.total_epochs) == (10, 10, 2, 2)
    assert report.loss is not None and report.best_loss is not None and report.best_loss <= report.loss
    assert report.eval_loss is not None and [p.step for p in report.eval_history] == [5, 10]
    assert report.tokens_per_second and report.samples_per_second and report.memory_bytes
    # Saved: step-4, epoch-1 (step 5), step-8, epoch-2 (step 10); kept: the last 2 plus the best.
    kept = [c.id for c in report.checkpoints]
    assert kept[-2:] == ["ckpt-step-8", "ckpt-epoch-2"]
    assert set(kept) <= {"ckpt-step-4", "ckpt-epoch-1", "ckpt-step-8", "ckpt-epoch-2"}
    on_disk = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("ckpt-"))
    assert on_disk == sorted(kept)
    manifest = json.loads((tmp_path / "checkpoints" / "ckpt-epoch-2" / "manifest.json").read_text())
    assert {"id", "epoch", "step", "loss", "createdAt", "sizeBytes", "reason"} <= manifest.keys()
    assert (manifest["epoch"], manifest["step"], manifest["reason"]) == (2, 10, "epoch")
    assert manifest["sizeBytes"] > 0

    assert sorted(step_losses(tmp_path / "checkpoints")) == list(range(1, 11))
    assert [e["id"] for e in log_events(tmp_path / "checkpoints", "checkpoint")] == [
        "ckpt-step-4",
        "ckpt-epoch-1",
        "ckpt-step-8",
        "ckpt-epoch-2",
    ]
    final = json.loads((tmp_path / "termination-log").read_text())
    assert final["state"] == "completed" and final["step"] == 10
    assert final["checkpoints"][-1]["id"] == "ckpt-epoch-2"


def test_lora_output_loads_with_peft_and_merged_with_transformers(tmp_path: Path) -> None:
    result = run(make_job(tmp_path, training={"maxSteps": 3}), RunOptions(serve_reports=False, merge_adapter=True))
    assert result.exit_code == 0
    output = tmp_path / "output"

    base = AutoModelForCausalLM.from_pretrained(TINY_MODEL)
    adapted = PeftModel.from_pretrained(base, output).eval()
    tokenizer = AutoTokenizer.from_pretrained(output)
    inputs = tokenizer("What is the capital of Peru?", return_tensors="pt")
    merged = AutoModelForCausalLM.from_pretrained(output / "merged").eval()
    with torch.no_grad():
        adapted_logits = adapted(**inputs).logits
        merged_logits = merged(**inputs).logits
        base_logits = AutoModelForCausalLM.from_pretrained(TINY_MODEL)(**inputs).logits
    assert torch.allclose(adapted_logits, merged_logits, atol=1e-4)
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-4), "the adapter changed nothing"


def test_full_output_loads_with_transformers(tmp_path: Path) -> None:
    result = train(tmp_path, strategy="full", training={"maxSteps": 2})
    assert result.exit_code == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "output")
    trained = weights(tmp_path / "output")
    assert torch.equal(model.state_dict()["model.norm.weight"], trained["model.norm.weight"])
    base = weights(TINY_MODEL)
    assert not torch.equal(trained["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])


def test_a_nan_loss_ends_diverged_keeping_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_NAN_AT_STEP_ENV, "5")
    result = train(tmp_path, training={"epochs": 3, "checkpointSteps": 2, "keepCheckpoints": 5})

    assert result.exit_code == 4
    assert result.report is not None
    assert (result.report.state, result.report.reason) == ("diverged", "Diverged")
    assert "step 5" in (result.report.message or "") and "ckpt-step-4" in (result.report.message or "")
    assert [c.id for c in result.report.checkpoints] == ["ckpt-step-2", "ckpt-step-4"]
    assert sorted(step_losses(tmp_path / "checkpoints")) == [1, 2, 3, 4], "the NaN step is not recorded as done"
    assert not (tmp_path / "output").exists()
    final = json.loads((tmp_path / "termination-log").read_text())
    assert (final["state"], final["reason"]) == ("diverged", "Diverged")


@pytest.mark.parametrize(
    ("optimization", "strategy", "field"),
    [
        ({"mixedPrecision": "fp16"}, "lora", "config.optimization.mixedPrecision"),
        (None, "qlora", "config.strategy"),
    ],
    ids=["fp16", "qlora"],
)
def test_gpu_only_settings_are_refused_on_cpu(
    tmp_path: Path, optimization: dict[str, Any] | None, strategy: str, field: str
) -> None:
    result = train(tmp_path, optimization=optimization, strategy=strategy)
    assert result.exit_code == 2
    assert result.report is not None
    assert (result.report.state, result.report.reason) == ("failed", "ConfigurationError")
    assert (result.report.message or "").startswith(field)
    assert json.loads((tmp_path / "termination-log").read_text())["reason"] == "ConfigurationError"


def test_bad_rows_under_the_threshold_are_counted_and_skipped(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [*example_records(19), {"prompt": "no completion here"}]
    dataset = {"format": "jsonl", "source": {"inline": {"records": records}}}
    result = train(tmp_path, dataset=dataset, training={"maxBadRows": 0.1, "maxSteps": 1})
    assert result.exit_code == 0


def test_bad_rows_over_the_threshold_fail_with_the_row_number(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [*example_records(19), {"prompt": "no completion here"}]
    dataset = {"format": "jsonl", "source": {"inline": {"records": records}}}
    result = train(tmp_path, dataset=dataset, training={"maxBadRows": 0.01})
    assert result.exit_code == 3
    assert result.report is not None and result.report.reason == "DataError"
    message = result.report.message or ""
    assert "1 of 20 rows" in message and "row 20 of inline" in message and "'completion'" in message


def test_bf16_autocast_gradient_checkpointing_and_all_linear_train_on_cpu(tmp_path: Path) -> None:
    result = train(
        tmp_path,
        optimization={"mixedPrecision": "bf16", "gradientCheckpointing": True},
        parameters={"targetModules": ["all-linear"]},
        training={"maxSteps": 3, "lrScheduler": "linear", "warmupSteps": 1},
    )
    assert result.exit_code == 0, result.report
    losses = step_losses(tmp_path / "checkpoints")
    assert len(losses) == 3 and all(loss > 0 for loss in losses.values())
    adapter = weights(tmp_path / "output")
    assert any("mlp.down_proj" in key for key in adapter), "all-linear also adapts the MLP"


def test_unknown_target_modules_are_refused_by_name(tmp_path: Path) -> None:
    result = train(tmp_path, parameters={"targetModules": ["no_such_proj"]})
    assert result.exit_code == 2
    assert result.report is not None and result.report.message is not None
    assert result.report.message.startswith("config.parameters.targetModules")


def test_a_missing_checkpoint_id_names_the_ones_there_are(tmp_path: Path) -> None:
    assert train(tmp_path / "first", training={"maxSteps": 2}).exit_code == 0
    result = run(
        make_job(tmp_path / "first", training={"maxSteps": 2}, resume_from="ckpt-step-99"),
        RunOptions(serve_reports=False),
    )
    assert result.exit_code == 5
    assert result.report is not None and result.report.reason == "CheckpointNotFound"
    assert "available: ckpt-step-2" in (result.report.message or "")


def test_the_termination_message_stays_under_the_limit_with_many_checkpoints(tmp_path: Path) -> None:
    result = train(tmp_path, training={"epochs": 2, "batchSize": 1, "checkpointSteps": 1, "keepCheckpoints": 100})
    assert result.exit_code == 0
    assert result.report is not None and len(result.report.checkpoints) == 48
    message = (tmp_path / "termination-log").read_text()
    assert len(message.encode()) < TERMINATION_MESSAGE_LIMIT
    kept = json.loads(message)["checkpoints"]
    assert 0 < len(kept) < 48 and kept[-1]["id"] == "ckpt-epoch-2"


CONVERSATIONS = [
    {
        "messages": [
            {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"{a + b}."},
        ]
    }
    for a in range(4)
    for b in range(3)
]


@pytest.mark.parametrize("layout", ["text-file", "csv-file", "chat-inline"])
def test_each_layout_trains_end_to_end(tmp_path: Path, layout: str) -> None:
    if layout == "text-file":
        (tmp_path / "corpus.txt").write_text("\n".join(r["prompt"] + r["completion"] for r in example_records()))
        dataset: dict[str, Any] = {"format": "text", "source": {"pvc": {"claimName": "d", "path": "/corpus.txt"}}}
    elif layout == "csv-file":
        lines = ["question,answer"] + [f'"{r["prompt"]}","{r["completion"]}"' for r in example_records()]
        (tmp_path / "qa.csv").write_text("\n".join(lines) + "\n")
        dataset = {
            "format": "csv",
            "source": {"pvc": {"claimName": "d", "path": "/qa.csv"}},
            "columns": {"prompt": "question", "completion": "answer"},
        }
    else:
        dataset = {"format": "json", "source": {"inline": {"records": CONVERSATIONS}}}
    result = train(tmp_path, dataset=dataset, training={"epochs": 2, "learningRate": 0.05})
    assert result.exit_code == 0, result.report
    losses = step_losses(tmp_path / "checkpoints")
    assert losses[max(losses)] < losses[1]


def test_a_report_port_in_use_is_a_configuration_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        job = make_job(tmp_path).model_copy(update={"report_port": taken.getsockname()[1]})
        result = run(job, RunOptions())
    assert result.exit_code == 2
    assert result.report is not None and result.report.message is not None
    assert result.report.message.startswith("reportPort: cannot serve")


def test_an_unreadable_job_file_fails_with_a_termination_message(tmp_path: Path) -> None:
    from trainer.__main__ import main

    (tmp_path / "job.yaml").write_text("name: x\nconfig: {}\n")
    assert main(["--config", str(tmp_path / "job.yaml")]) == 2
    final = json.loads((tmp_path / "termination-log").read_text())
    assert (final["state"], final["reason"]) == ("failed", "ConfigurationError")
    assert "job.yaml" in final["message"]


def test_config_output_merge_writes_merged_weights_and_the_report_describes_both_folders(tmp_path: Path) -> None:
    result = train(tmp_path, training={"maxSteps": 2, "learningRate": 0.05}, config_extra={"output": {"merge": True}})
    assert result.exit_code == 0 and result.report is not None
    output = tmp_path / "output"

    inputs = AutoTokenizer.from_pretrained(output)("What is the capital of Peru?", return_tensors="pt")
    with torch.no_grad():
        base_logits = AutoModelForCausalLM.from_pretrained(TINY_MODEL)(**inputs).logits
        adapted_logits = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(TINY_MODEL), output)(
            **inputs
        ).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(output / "merged")(**inputs).logits
    assert (merged_logits - adapted_logits).abs().max() < 1e-4
    assert (adapted_logits - base_logits).abs().max() > 1e-3, "the adapter changed nothing"

    described = result.report.output
    assert described is not None
    assert (described.kind, described.base_model, described.checkpoint) == ("adapter", str(TINY_MODEL), "ckpt-step-2")
    assert described.path == str(output.resolve())  # outside the checkpoint directory in this test
    assert described.sha256 == sha256_listing(output, skip="merged")
    assert described.size_bytes == sum(p.stat().st_size for p in output.iterdir() if p.is_file())
    assert described.merged is not None and described.merged.kind == "merged"
    assert described.merged.sha256 == sha256_listing(output / "merged")
    final = json.loads((tmp_path / "termination-log").read_text())
    assert final["output"]["sha256"] == described.sha256


def sha256_listing(folder: Path, *, skip: str | None = None) -> str:
    """What `sha256sum` over every file, piped to `sha256sum`, prints (the documented digest)."""
    import hashlib

    lines = "".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(folder).as_posix()}\n"
        for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix())
        if path.is_file() and (skip is None or path.relative_to(folder).parts[0] != skip)
    )
    return hashlib.sha256(lines.encode()).hexdigest()
