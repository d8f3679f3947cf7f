"""The multimodal task on the tiny LLaVA: its loss is the model's own, LoRA lowers it and leaves an
adapter (and merged weights) that from_pretrained loads, resume is exact from a copy of any
checkpoint, full training works, and a text model is refused by field. A kill -9, a SIGTERM and a
divergence mid-run are tested for every task in test_task_guarantees.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tensorone.api.exit_codes import ExitCode
from tensorone.api.report import ProgressReport
from tensorone.api.resolved import ResolvedJob
from tests.trainer.conftest import REPO, TINY_MODEL, TINY_VLM, assert_same_weights, make_job, step_losses, weights
from trainer.data.chat_images import ChatImageExample
from trainer.run import RunOptions, RunResult, run
from trainer.tasks import TaskData, task_for
from trainer.tasks.multimodal import MultimodalTask

EXAMPLE_DATA = REPO / "examples" / "data"
# 24 conversations, 2 held out: 22 for training, 6 micro-batches of 4 (the last of 2), 3 optimizer
# steps per epoch of 2 micro-batches; 2 epochs = 6 steps. LoRA dropout makes the RNG state matter.
TRAINING: dict[str, Any] = {
    "epochs": 2,
    "batchSize": 4,
    "gradientAccumulationSteps": 2,
    "evalSplit": 0.1,
    "checkpointSteps": 2,
    "keepCheckpoints": 100,
    "warmupSteps": 1,
    "maxSeqLength": 96,
}


def multimodal_job(root: Path, **overrides: Any) -> ResolvedJob:
    """A job on the tiny LLaVA over the example's picture chats, copied onto a claim under ``root``."""
    if not (root / "data").exists():
        (root / "data").mkdir(parents=True)
        shutil.copy(EXAMPLE_DATA / "tiny-pictures.jsonl", root / "data")
        shutil.copytree(EXAMPLE_DATA / "pictures", root / "data" / "pictures")
    dataset = {
        "format": "jsonl",
        "source": {"pvc": {"claimName": "pictures", "path": "/data/tiny-pictures.jsonl"}},
        "columns": {"messages": "messages"},
    }
    options: dict[str, Any] = {"training": TRAINING, "parameters": {"targetModules": ["all-linear"]}} | overrides
    config = {"baseModel": str(TINY_VLM)} | options.pop("config_extra", {})
    return make_job(root, model_type="multimodal", dataset=dataset, config_extra=config, **options)


def train(job: ResolvedJob, *, merge: bool = False) -> RunResult:
    return run(job, RunOptions(serve_reports=False, merge_adapter=merge))


def final_report(result: RunResult) -> ProgressReport:
    assert result.report is not None, "the run made no report"
    return result.report


def conversations(data: TaskData, count: int) -> list[ChatImageExample]:
    examples = [example for example in data.train[:count] if isinstance(example, ChatImageExample)]
    assert len(examples) == count
    return examples


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    result = train(multimodal_job(root), merge=True)
    assert result.exit_code == 0, result.report
    return root


def test_the_loss_is_the_models_own_cross_entropy_on_the_assistant_turns(tmp_path: Path) -> None:
    task = MultimodalTask(multimodal_job(tmp_path))
    data = task.load_data()
    model = task.load_model(torch.device("cpu"))
    model.eval()  # no dropout: the two computations must see the same network
    examples = conversations(data, 4)
    batch = task.collate(examples)
    with torch.no_grad():
        ours = task.objective(model)(batch) / sum(e.num_targets for e in examples)
        labels = torch.full_like(batch.input_ids, -100)
        for row, example in enumerate(examples):
            labels[row, : example.num_tokens] = torch.tensor(example.labels)
        own = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels, **batch.image_inputs
        ).loss
    assert torch.allclose(ours, own, rtol=1e-5), (ours.item(), own.item())


def test_lora_lowers_the_loss_and_the_adapter_and_merged_model_load_with_from_pretrained(reference: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    losses = step_losses(reference / "checkpoints")
    assert sorted(losses) == list(range(1, 7))
    assert losses[6] < 0.8 * losses[1], losses  # six steps from a random model: a clear fall
    output = reference / "output"
    assert (output / "adapter_model.safetensors").exists() and (output / "merged" / "model.safetensors").exists()

    processor = AutoProcessor.from_pretrained(output, backend="pil")
    task = MultimodalTask(multimodal_job(reference))
    task.processor = processor
    batch = task.collate(conversations(task.load_data(), 3))
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, **batch.image_inputs}
    adapted = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(TINY_VLM), output).eval()
    merged = AutoModelForImageTextToText.from_pretrained(output / "merged").eval()
    base = AutoModelForImageTextToText.from_pretrained(TINY_VLM).eval()
    with torch.no_grad():
        adapted_logits, merged_logits, base_logits = (m(**inputs).logits for m in (adapted, merged, base))
    assert torch.allclose(adapted_logits, merged_logits, atol=1e-4)
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-2), "the adapter changed nothing"


@pytest.mark.parametrize(("checkpoint", "resumed_step"), [("ckpt-step-2", 2), ("ckpt-epoch-1", 3)])
def test_resume_from_what_a_kill_leaves_is_bit_identical(
    reference: Path, tmp_path: Path, checkpoint: str, resumed_step: int
) -> None:
    shutil.copytree(reference / "checkpoints" / checkpoint, tmp_path / "checkpoints" / checkpoint)
    result = train(multimodal_job(tmp_path, resume_from=checkpoint), merge=True)
    assert result.exit_code == 0, result.report
    expected, resumed = step_losses(reference / "checkpoints"), step_losses(tmp_path / "checkpoints")
    assert sorted(resumed) == list(range(resumed_step + 1, 7))
    assert all(loss == expected[step] for step, loss in resumed.items()), (resumed, expected)
    assert_same_weights(reference / "output", tmp_path / "output")


def test_full_training_trains_every_part_resumes_exactly_and_saves_what_from_pretrained_loads(tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    training = TRAINING | {"maxSteps": 3, "checkpointSteps": 1}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert train(multimodal_job(whole, strategy="full", training=training)).exit_code == 0
    shutil.copytree(whole / "checkpoints" / "ckpt-step-1", resumed / "checkpoints" / "ckpt-step-1")
    result = train(multimodal_job(resumed, strategy="full", training=training, resume_from="ckpt-step-1"))
    assert result.exit_code == 0, result.report
    assert step_losses(resumed / "checkpoints") == {
        s: v for s, v in step_losses(whole / "checkpoints").items() if s > 1
    }
    assert_same_weights(whole / "output", resumed / "output")

    trained = AutoModelForImageTextToText.from_pretrained(whole / "output").state_dict()
    base = AutoModelForImageTextToText.from_pretrained(TINY_VLM).state_dict()
    changed = [key for key, value in base.items() if not torch.equal(value, trained[key])]
    for part in ("vision_tower", "multi_modal_projector", "language_model"):
        assert any(part in key for key in changed), (part, changed)


def test_a_text_model_is_refused_as_the_base_of_a_multimodal_job(tmp_path: Path) -> None:
    result = train(multimodal_job(tmp_path, config_extra={"baseModel": str(TINY_MODEL)}))
    assert result.exit_code == ExitCode.CONFIGURATION, result.report
    assert "no processor with an image processor and a tokenizer" in (final_report(result).message or "")
    assert "use modelType llm for a text model" in (final_report(result).message or "")
    assert isinstance(task_for(multimodal_job(tmp_path)), MultimodalTask)


@pytest.mark.slow
def test_two_processes_train_as_one_even_on_batches_without_images(tmp_path: Path) -> None:
    """DistributedDataParallel with a vision tower that a text-only micro-batch leaves out: the two
    processes' steps are the one process's (batches of 2 there, of 1 per process here)."""
    lora = {"targetModules": ["all-linear"], "dropout": 0.0}  # no dropout: the processes draw their own
    runs: dict[int, Path] = {}
    for processes in (1, 2):
        root = runs.setdefault(processes, tmp_path / f"{processes}-processes")
        training = TRAINING | {"batchSize": 2 // processes, "gradientAccumulationSteps": 1, "maxSteps": 3}
        job = multimodal_job(root, training=training | {"evalSplit": 0.0}, parameters=lora)
        chats = (root / "data" / "tiny-pictures.jsonl").read_text().splitlines()[:3]
        text_only = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
        (root / "data" / "tiny-pictures.jsonl").write_text("\n".join(chats + [json.dumps(text_only)] * 3) + "\n")
        if processes == 1:
            assert train(job).exit_code == 0
            continue
        job.write(root / "job.yaml")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        command += ["-m", "trainer", "--config", str(root / "job.yaml"), "--no-report"]
        env = os.environ | {"TENSORONE_TERMINATION_LOG": str(root / "termination-log")}
        done = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (step_losses(runs[n] / "checkpoints") for n in (1, 2))
    assert one.keys() == two.keys() == {1, 2, 3}
    assert all(abs(one[step] - two[step]) < 1e-5 for step in one), (one, two)
    alone, together = weights(runs[1] / "output"), weights(runs[2] / "output")
    assert all(torch.allclose(alone[key], together[key], atol=1e-5) for key in alone)
