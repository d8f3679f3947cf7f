"""Trainer speed: our packed, supervised-only LoRA step against transformers' Trainer + peft.

One command, both sides in the same run, interleaved::

    .venv/bin/python bench/trainer_speed.py            # full run (about 5 minutes on 2 cores)
    .venv/bin/python bench/trainer_speed.py --quick    # smoke run (about 1 minute)

Each side runs in its own worker process (so each has its own peak RSS) holding the same tiny
Llama-style model (built from a config: 4 layers, hidden 256, vocabulary 32000), the same LoRA
adapters (same seed), fp32, the same optimizer (fused AdamW, constant learning rate, gradient
clipping at 1.0, as Trainer's defaults) and the same examples in every optimizer step. The parent
tells the workers to run blocks of steps in turn (A B B A A B ...), so machine noise hits both.

- baseline ("hf"): ``transformers.Trainer`` with ``DataCollatorForSeq2Seq`` dynamic padding
  (labels -100 on prompt and padding), the model's own forward and loss;
- ours: the shipped trainer, set up by its own recipe (``trainer.recipe``) from a resolved job:
  the llm task loads the model from a folder (the same base weights, saved once by the parent)
  with the job's LoRA settings, the data plan orders the examples, the optimizer is the job's; every
  step is :func:`trainer.loop.optimizer_step` (the function the training loop runs: the task's
  packed collate, its supervised-only objective, the loss normalisation, clipping, the optimizer
  and the schedule), followed by the loop's progress report (``report_step``). Levers are the
  job's own options (``config.optimization``: compile, mixedPrecision bf16, gradientCheckpointing).

Printed per data set: supervised tokens/s of each side and the ratio, the largest relative
per-step loss difference, each side's peak RSS, and MFU against a fp32 matmul peak measured in the
same run. Model FLOPs (the same useful work credited to both sides, so MFU follows throughput):

    per real token:          4 * N_base_linear + 6 * N_lora    (forward 2N; backward: activation
                                                                 grads 2N, weight grads only for LoRA)
    per sample of length L:  6 * layers * hidden * L^2 / 2      (causal QK^T and AV, forward + backward)
    per supervised target:   4 * vocab * hidden                 (LM head forward + activation grad;
                                                                 the head is frozen)

Padding, and projecting masked prompt tokens onto the vocabulary, are not useful work.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.data.examples import IGNORE_INDEX, Example
from trainer.data.plan import DataPlan

if TYPE_CHECKING:  # imported where used, so each side's spawned worker loads only its own libraries
    from peft import PeftModel
    from transformers import LlamaConfig

    from tensorone.api.resolved import ResolvedJob


@dataclass(frozen=True)
class BenchConfig:
    """Everything that defines the work; both sides receive the same instance."""

    data: str = "varied"  # "varied": lognormal lengths 16..512; "fixed": every sample fixed_length
    steps: int = 16  # measured optimizer steps per side
    warmup_steps: int = 2  # run first, not timed (allocator, first-call costs)
    block: int = 2  # steps per interleaved block
    micro_batch: int = 4
    grad_accum: int = 2
    fixed_length: int = 256
    seed: int = 0
    learning_rate: float = 1e-3
    lora_rank: int = 16
    threads: int = 2
    # levers, applied to our side only
    compile: bool = False
    bf16: bool = False
    gradient_checkpointing: bool = False

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.steps


@dataclass
class SideResult:
    step_seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0


def model_config() -> LlamaConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=32000,
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=1024,
    )


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def save_base_model(config: BenchConfig, folder: Path) -> None:
    """The base weights both sides load (seeded), written once by the parent."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(config.seed)
    LlamaForCausalLM(model_config()).save_pretrained(folder)


def load_hf_model(config: BenchConfig, folder: Path) -> PeftModel:
    """The baseline's model as a Trainer user builds it: from_pretrained, then peft's get_peft_model.

    The same calls in the same order as the trainer's loader after the same seed (the job's, which
    ``trainer.recipe.setup_model`` sets), so the LoRA adapters start from the same random draw
    (lora_dropout 0: no dropout op on either side).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(config.seed)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    base.config.use_cache = False
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=2 * config.lora_rank,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora)


def make_examples(config: BenchConfig) -> list[Example]:
    """Synthetic prompt/completion samples, at least half of every sample's tokens prompt (masked)."""
    generator = torch.Generator().manual_seed(1000 + config.seed)
    count = config.total_steps * config.grad_accum * config.micro_batch
    if config.data == "fixed":
        lengths = [config.fixed_length] * count
        prompt_fractions = [0.5] * count
    else:
        # lognormal around 100 tokens, clipped to 16..512: most samples short, a long tail.
        normal = torch.randn(count, generator=generator)
        lengths = [int(min(512, max(16, round(math.exp(math.log(100) + 0.9 * float(z)))))) for z in normal]
        prompt_fractions = (0.5 + 0.3 * torch.rand(count, generator=generator)).tolist()
    examples = []
    for length, fraction in zip(lengths, prompt_fractions, strict=True):
        ids = torch.randint(3, 32000, (length,), generator=generator).tolist()
        prompt = math.ceil(length * fraction)
        examples.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def data_plan(config: BenchConfig, examples: list[Example]) -> DataPlan:
    """The trainer's plan of the examples: one epoch of exactly ``total_steps`` optimizer steps."""
    return DataPlan(examples=examples, seed=config.seed, batch_size=config.micro_batch, accumulation=config.grad_accum)


def in_plan_order(config: BenchConfig, examples: list[Example]) -> list[Example]:
    """The examples in the order the trainer's plan visits them: the baseline reads them sequentially
    in this order, so both sides see the same examples in every micro-batch of every step."""
    return [examples[i] for i in data_plan(config, examples).order(0)]


def micro_batches_of_step(ordered: list[Example], config: BenchConfig, step: int) -> list[list[Example]]:
    per_step = config.grad_accum * config.micro_batch
    chunk = ordered[step * per_step : (step + 1) * per_step]
    return [chunk[i : i + config.micro_batch] for i in range(0, per_step, config.micro_batch)]


# --------------------------------------------------------------------------- workers


def worker(side: str, config: BenchConfig, model_folder: Path, conn: Connection) -> None:
    """Build one side, then run blocks of steps on command; finally report peak RSS."""
    torch.set_num_threads(config.threads)
    examples = make_examples(config)
    result = SideResult()
    if side == "hf":
        run_hf(load_hf_model(config, model_folder), in_plan_order(config, examples), config, conn, result)
    else:
        run_ours(examples, config, model_folder, conn, result)
    conn.recv()  # the final "report"
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(asdict(result))
    conn.close()


def run_hf(model: PeftModel, ordered: list[Example], config: BenchConfig, conn: Connection, result: SideResult) -> None:
    from datasets import Dataset
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import (
        DataCollatorForSeq2Seq,
        PreTrainedTokenizerFast,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    # A word-level tokenizer built in memory: the collator only needs its pad id and padding side.
    vocab = {str(i): i for i in range(32000)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="1")), pad_token="0")
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
    dataset = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in ordered])

    class LossRecordingTrainer(Trainer):
        """Trainer that keeps the exact (unrounded) loss of every micro-batch."""

        micro_losses: list[float] = []  # noqa: RUF012 - one trainer per process

        def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            loss = super().training_step(*args, **kwargs)
            self.micro_losses.append(float(loss))
            return loss

    class BlockControl(TrainerCallback):
        """Times each optimizer step and hands control back to the parent after every block."""

        def __init__(self) -> None:
            self.started = 0.0
            self.remaining = 0

        def wait_for_command(self) -> None:
            self.remaining = conn.recv()
            self.started = time.perf_counter()

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            self.wait_for_command()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            result.step_seconds.append(time.perf_counter() - self.started)
            # Trainer divides every micro-batch by the step's token count: their sum is the step mean.
            result.losses.append(sum(trainer.micro_losses))
            trainer.micro_losses.clear()
            self.remaining -= 1
            if self.remaining == 0:
                conn.send(len(result.step_seconds))
                if len(result.step_seconds) < config.total_steps:
                    self.wait_for_command()
            self.started = time.perf_counter()

    args = TrainingArguments(
        output_dir="/tmp/trainer-speed-bench",
        per_device_train_batch_size=config.micro_batch,
        gradient_accumulation_steps=config.grad_accum,
        max_steps=config.total_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        train_sampling_strategy="sequential",  # the same examples in the same steps as our side
        logging_strategy="no",
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=config.seed,
        data_seed=config.seed,
    )
    trainer = LossRecordingTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.add_callback(BlockControl())
    trainer.train()


def bench_job(config: BenchConfig, model_folder: Path, root: Path) -> ResolvedJob:
    """The job the shipped trainer runs, resolved as the operator resolves one: the benchmark's work,
    the levers as job options."""
    from tensorone.api.resolved import resolve_job
    from tensorone.api.v1alpha1 import DatasetSpec, TrainingJobSpec

    spec = TrainingJobSpec.model_validate(
        {
            "modelType": "llm",
            "datasetId": "synthetic",
            "config": {
                "baseModel": str(model_folder),
                "strategy": "lora",
                "parameters": {
                    "rank": config.lora_rank,
                    "alpha": 2 * config.lora_rank,
                    "dropout": 0.0,
                    "targetModules": LORA_TARGETS,
                },
                "training": {
                    "batchSize": config.micro_batch,
                    "gradientAccumulationSteps": config.grad_accum,
                    "learningRate": config.learning_rate,
                    "lrScheduler": "constant",
                    "weightDecay": 0.0,
                    "maxSeqLength": 512,
                    "maxSteps": config.total_steps,
                    "seed": config.seed,
                },
                "optimization": {
                    "maxGradNorm": 1.0,
                    "compile": config.compile,
                    "mixedPrecision": "bf16" if config.bf16 else "no",
                    "gradientCheckpointing": config.gradient_checkpointing,
                },
            },
        }
    )
    # Not read: the examples are handed to the plan directly (synthetic token ids).
    dataset = DatasetSpec.model_validate({"format": "jsonl", "source": {"inline": {"records": [{"text": "unused"}]}}})
    return resolve_job(
        spec,
        dataset,
        name="trainer-speed",
        namespace="default",
        report_port=0,
        use_gpu=False,
        checkpoint_dir=str(root / "checkpoints"),
        output_dir=str(root / "output"),
    )


def run_ours(
    examples: list[Example], config: BenchConfig, model_folder: Path, conn: Connection, result: SideResult
) -> None:
    """The shipped trainer's side, built by the trainer's own recipe (``trainer.recipe``) from the
    benchmark's job; every step is the loop's ``optimizer_step`` and ``report_step``."""
    import tempfile

    from tensorone.reporting.client import Reporter
    from trainer import recipe
    from trainer.capabilities import refuse_unsupported
    from trainer.distributed import Topology
    from trainer.loop import optimizer_step, report_step
    from trainer.signals import StopSignal
    from trainer.tasks import task_for

    root = Path(tempfile.mkdtemp(prefix="trainer-speed-"))
    job = bench_job(config, model_folder, root)
    refuse_unsupported(job, cuda_available=False)
    topology = Topology()
    placement = recipe.join_processes(job, topology)
    reporter = Reporter(serve=False, termination_log=None)
    store, _ = recipe.setup_checkpoints(job, topology, reporter)
    task = task_for(job)
    model = recipe.setup_model(job, task, placement)
    plan = recipe.plan_data(job, examples, topology)
    assert plan.order(0) == data_plan(config, examples).order(0)  # the baseline's order
    length = recipe.run_length(job, plan)
    assert (length.total_steps, length.total_epochs) == (config.total_steps, 1)
    run = recipe.training_run(
        job,
        placement=placement,
        task=task,
        model=model,
        updates=recipe.setup_optimizer(job, model, placement.device, length.total_steps),
        plan=plan,
        eval_examples=[],
        store=store,
        reporter=reporter,
        stop=StopSignal(),
        length=length,
    )
    run.objective.train()
    planned_steps = plan.steps(0)
    while run.step < config.total_steps:
        block = conn.recv()
        for _ in range(block):
            planned = planned_steps[run.step]
            started = time.perf_counter()
            step = optimizer_step(run, planned)
            report_step(run, step, planned, epoch=1, seconds=time.perf_counter() - started)
            result.step_seconds.append(time.perf_counter() - started)
            result.losses.append(step.loss)
        conn.send(run.step)


# --------------------------------------------------------------------------- parent


def matmul_peak_flops(threads: int, size: int = 2048, repeats: int = 6) -> float:
    """Best fp32 FLOP/s of a square matmul on this machine now (2 * n^3 per product)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def useful_flops(config: BenchConfig, examples: list[Example], steps: range) -> float:
    """Model FLOPs of ``steps`` (the formula in the module docstring)."""
    model_cfg = model_config()
    hidden, layers, vocab = model_cfg.hidden_size, model_cfg.num_hidden_layers, model_cfg.vocab_size
    head_dim = hidden // model_cfg.num_attention_heads
    # Typed optional; None means one key/value head per query head (LlamaConfig's own rule).
    kv_heads = model_cfg.num_key_value_heads or model_cfg.num_attention_heads
    q_and_o = 2 * hidden * hidden
    k_and_v = 2 * hidden * head_dim * kv_heads
    mlp = 3 * hidden * model_cfg.intermediate_size
    base_linear = layers * (q_and_o + k_and_v + mlp)
    rank = config.lora_rank
    lora = layers * rank * ((hidden + hidden) * 2 + (hidden + head_dim * kv_heads) * 2)
    total = 0.0
    for step in steps:
        for micro in micro_batches_of_step(examples, config, step):
            for example in micro:
                length = len(example.input_ids)
                targets = sum(label != IGNORE_INDEX for label in example.labels[1:])
                total += length * (4 * base_linear + 6 * lora)
                total += 6 * layers * hidden * length * length / 2
                total += targets * 4 * vocab * hidden
    return total


def supervised_targets(config: BenchConfig, examples: list[Example], steps: range) -> int:
    return sum(
        sum(label != IGNORE_INDEX for label in example.labels[1:])
        for step in steps
        for micro in micro_batches_of_step(examples, config, step)
        for example in micro
    )


def run_set(entries: list[tuple[str, str, BenchConfig]]) -> dict[str, Any]:
    """Run the sides (label, "hf" or "ours", config) on one data set, interleaved; return the figures.

    Every entry's config must describe the same work (data, steps, batch): only levers may differ.
    """
    config = entries[0][2]
    model_folder = Path(tempfile.mkdtemp(prefix="trainer-speed-model-"))
    save_base_model(config, model_folder)
    context = mp.get_context("spawn")
    workers = {}
    for label, side, side_config in entries:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=worker, args=(side, side_config, model_folder, child_end), daemon=True)
        process.start()
        child_end.close()  # the worker holds the only other end: its death is an EOFError here
        workers[label] = (process, parent_end)
    labels = [label for label, _, _ in entries]

    def run_block(label: str, steps: int) -> None:
        process, conn = workers[label]
        try:
            conn.send(steps)
            conn.recv()
        except (EOFError, BrokenPipeError):
            process.join(timeout=10)
            raise SystemExit(
                f"the {label} worker died (exit code {process.exitcode}); its traceback is above"
            ) from None

    for label in labels:
        run_block(label, config.warmup_steps)
    blocks = [config.block] * (config.steps // config.block)
    if config.steps % config.block:
        blocks.append(config.steps % config.block)
    for index, steps in enumerate(blocks):
        # A B, then B A: a slow drift of the machine's load is shared evenly.
        for label in labels if index % 2 == 0 else labels[::-1]:
            run_block(label, steps)
    results = {}
    for label, (process, conn) in workers.items():
        conn.send("report")
        results[label] = SideResult(**conn.recv())
        process.join(timeout=60)

    shutil.rmtree(model_folder, ignore_errors=True)
    examples = in_plan_order(config, make_examples(config))
    measured = range(config.warmup_steps, config.total_steps)
    targets = supervised_targets(config, examples, measured)
    flops = useful_flops(config, examples, measured)
    figures: dict[str, Any] = {"targets": targets, "flops": flops, "sides": {}}
    for label, result in results.items():
        seconds = sum(result.step_seconds[config.warmup_steps :])
        per_block = []
        position = config.warmup_steps
        for steps in blocks:
            block_seconds = sum(result.step_seconds[position : position + steps])
            block_targets = supervised_targets(config, examples, range(position, position + steps))
            per_block.append(block_targets / block_seconds)
            position += steps
        figures["sides"][label] = {
            "tokens_per_second": targets / seconds,
            "block_tokens_per_second": per_block,
            "flops_per_second": flops / seconds,
            "peak_rss_mib": result.peak_rss_mib,
            "losses": result.losses,
        }
    return figures


def print_comparison(figures: dict[str, Any], reference: str, other: str) -> None:
    first, second = figures["sides"][reference], figures["sides"][other]
    for name, side in ((reference, first), (other, second)):
        blocks = side["block_tokens_per_second"]
        print(
            f"  {name:18} {side['tokens_per_second']:8.0f} supervised tok/s "
            f"(blocks {min(blocks):.0f}..{max(blocks):.0f})  peak RSS {side['peak_rss_mib']:6.0f} MiB  "
            f"model {side['flops_per_second'] / 1e9:6.1f} GFLOP/s"
        )
    # Blocks i of the two sides ran next to each other: their ratio sees the same background load.
    paired = sorted(
        b / a for a, b in zip(first["block_tokens_per_second"], second["block_tokens_per_second"], strict=True)
    )
    print(
        f"  ratio              {second['tokens_per_second'] / first['tokens_per_second']:8.2f}x overall; "
        f"adjacent blocks: median {statistics.median(paired):.2f}x (range {paired[0]:.2f}..{paired[-1]:.2f})"
    )
    print(
        f"  per-step loss      max relative difference "
        f"{relative_loss_difference(first['losses'], second['losses']):.2e} over {len(first['losses'])} steps "
        f"(first step {first['losses'][0]:.6f} vs {second['losses'][0]:.6f})"
    )


def relative_loss_difference(reference: list[float], other: list[float]) -> float:
    return max(abs(a - b) / abs(a) for a, b in zip(reference, other, strict=True))


def describe_data(config: BenchConfig) -> str:
    examples = in_plan_order(config, make_examples(config))
    lengths = [len(e.input_ids) for e in examples]
    masked = sum(e.labels.count(IGNORE_INDEX) for e in examples) / sum(lengths)
    padded = 0
    for step in range(config.total_steps):
        for micro in micro_batches_of_step(examples, config, step):
            padded += len(micro) * max(len(e.input_ids) for e in micro)
    return (
        f"{len(examples)} samples, lengths {min(lengths)}..{max(lengths)} (median {int(statistics.median(lengths))}), "
        f"{masked:.0%} of tokens prompt (masked), padding = {1 - sum(lengths) / padded:.0%} of HF's padded tokens"
    )


LEVERS = ("compile", "bf16", "gradient_checkpointing")


def with_levers(config: BenchConfig, levers: list[str]) -> BenchConfig:
    flags: dict[str, Any] = dict.fromkeys(levers, True)
    return replace(config, **flags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["varied", "fixed", "both"], default="both")
    parser.add_argument("--steps", type=int, default=BenchConfig.steps, help="measured optimizer steps per side")
    parser.add_argument("--block", type=int, default=BenchConfig.block, help="steps per interleaved block")
    parser.add_argument("--warmup-steps", type=int, default=BenchConfig.warmup_steps)
    parser.add_argument("--quick", action="store_true", help="4 measured steps in blocks of 2: a smoke run")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--compile", action="store_true", help="lever: torch.compile our side's decoder")
    parser.add_argument("--bf16", action="store_true", help="lever: bf16 autocast on our side (loss then differs)")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="lever: recompute activations on our side"
    )
    parser.add_argument(
        "--levers",
        action="store_true",
        help="instead of the baseline, compare our side without and with each lever flag given (or all three)",
    )
    args = parser.parse_args(argv)
    if min(args.steps, args.block, args.threads) < 1 or args.warmup_steps < 0:
        parser.error("--steps, --block and --threads must be at least 1, --warmup-steps at least 0")
    chosen = [name for name in LEVERS if getattr(args, name)]
    base = BenchConfig(
        steps=4 if args.quick else args.steps,
        block=2 if args.quick else args.block,
        warmup_steps=1 if args.quick else args.warmup_steps,
        threads=args.threads,
    )
    data_sets = ["varied", "fixed"] if args.data == "both" else [args.data]
    print(
        f"trainer speed: Llama 4x256, vocab 32000, LoRA r={base.lora_rank} on q,k,v,o, fp32, "
        f"micro-batch {base.micro_batch} x accumulation {base.grad_accum}, {base.threads} threads, "
        f"{base.steps} measured steps per side in blocks of {base.block} (+{base.warmup_steps} warm-up)"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    peaks = [matmul_peak_flops(base.threads)]
    all_figures = {}
    for data in data_sets:
        config = replace(base, data=data)
        print(f"\n[{data}] {describe_data(config)}")
        if args.levers:
            for lever in chosen or LEVERS:
                print(f" lever {lever}:")
                if lever == "compile":  # compilation happens in the first steps: keep it out of the timing
                    config = replace(config, warmup_steps=max(3, config.warmup_steps))
                figures = run_set([("ours", "ours", config), (f"ours+{lever}", "ours", with_levers(config, [lever]))])
                print_comparison(figures, "ours", f"ours+{lever}")
            continue
        ours = with_levers(config, chosen)
        label = "+".join(["ours (trainer)", *chosen])
        all_figures[data] = figures = run_set([("hf Trainer+peft", "hf", config), (label, "ours", ours)])
        peaks.append(matmul_peak_flops(base.threads))
        print_comparison(figures, "hf Trainer+peft", label)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes share the cores)")
    if all_figures:
        peak = max(peaks)
        print(
            f"\nmatmul peak (fp32 2048^3, best of 6, measured {len(peaks)} times): {peak / 1e9:.1f} GFLOP/s "
            f"(spread {min(peaks) / 1e9:.1f}..{peak / 1e9:.1f})"
        )
        for data, figures in all_figures.items():
            mfu = ", ".join(f"{name} {side['flops_per_second'] / peak:.1%}" for name, side in figures["sides"].items())
            print(f"MFU [{data}]: {mfu}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
