"""Detection training speed: our trainer's RT-DETR step against transformers' Trainer.

One command, both sides in the same run::

    .venv/bin/python bench/vision_detection.py            # about 3 minutes on 2 shared cores
    .venv/bin/python bench/vision_detection.py --quick    # a smoke run (about a minute)

Both sides train the same RT-DETR (built from a config, its random weights saved once by the
parent and loaded with ``from_pretrained`` by each side) on the same drawn shapes with known boxes
(``examples/data/build_shapes.py``: the images and COCO annotations the detection example ships),
in the same order, with the same batch size, optimizer (fused AdamW, no weight decay, constant
learning rate, gradient clipping at 1.0: Trainer's defaults) and augmentations (the same functions,
``trainer.data.box_augmentation``). Each side is its own worker process (its own peak RSS); the
parent has them run blocks of steps in turn (A B, then B A), so the machine's load hits both.

- baseline ("hf"): ``transformers.Trainer`` as its object-detection guide has it: a torch Dataset
  whose ``__getitem__`` reads the image, augments it and runs the model's image processor
  (``RTDetrImageProcessorPil``: resize, rescale, boxes to normalised centre format) on it, a
  collate function that stacks the pixels and lists the targets, the model's own loss;
- ours: the shipped trainer, set up by its own recipe (``trainer.recipe``) from a resolved job on
  the same COCO folder: the detection task reads the data and loads the model, the data plan
  orders it; every step is :func:`trainer.loop.optimizer_step` (the task's collate, its objective,
  the loss normalisation, clipping, the optimizer and the schedule) followed by the loop's progress
  report (``report_step``).

First a correctness check, augmentations off: the same number of steps on both sides, and the
largest difference of their per-step losses (the target: below 1e-4). RT-DETR's training forward
draws its denoising queries' noise from torch's global generator, and the two loops consume that
generator differently before their first step (Trainer's DataLoader draws a base seed from it
when each epoch's iterator is made; ours draws nothing there), so each side sets it to
``seed + step`` before every optimizer step: both then see the same noise. And our batches are
channels-last in memory while the processor's are contiguous: the same values, but the
convolutions run other kernels that sum in another order (1e-4 apart at the first step), so the
check feeds the baseline our layout (``--check-baseline-layout contiguous`` shows the difference).
Any difference left is the computation's. Then speed, augmentations on, the baseline as Trainer
runs it: images per second of each side, the ratio, the peak RSS of each process, and its peak
over the measured steps alone (``VmHWM`` reset through ``/proc/self/clear_refs`` before them).
"""

from __future__ import annotations

import argparse
import importlib.util
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
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from tensorone.api.resolved import ResolvedJob
    from trainer.data.coco import DetectionExample

# The detection example's augmentations (examples/vision-detection.yaml).
AUGMENTATION: dict[str, float] = {
    "fliplr": 0.5,
    "scale": 0.2,
    "translate": 0.1,
    "hsvH": 0.015,
    "hsvS": 0.5,
    "hsvV": 0.3,
    "mixup": 0.1,
    "copyPaste": 0.2,
}


@dataclass(frozen=True)
class BenchConfig:
    """Everything that defines the work; both sides receive the same instance."""

    images: int = 256  # drawn shapes images; the run never needs more than one epoch of them
    image_size: int = 128  # the images' side, also the model's input size
    batch: int = 8
    grad_accum: int = 2
    steps: int = 12  # measured optimizer steps per side
    warmup_steps: int = 2  # run first, not timed
    block: int = 2  # steps per interleaved block
    seed: int = 7
    learning_rate: float = 2e-3
    threads: int = 2
    augment: bool = True
    hf_workers: int = 0  # Trainer's dataloader_num_workers (its default: 0, loading in the training process)
    hf_channels_last: bool = False  # the baseline's pixels in our memory layout (the correctness check)

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.steps

    @property
    def images_per_step(self) -> int:
        return self.batch * self.grad_accum


@dataclass
class SideResult:
    step_seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0  # of the whole process, set-up included
    measured_peak_rss_mib: float = 0.0  # over the measured steps only
    rss_before_mib: float = 0.0  # when the measured steps began


def script(path: Path) -> ModuleType:
    """One of the repository's example scripts (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_config() -> Any:
    """A small RT-DETR: a ResNet backbone of 16-32 channels, the hybrid encoder and a 2-layer
    decoder at width 64, 50 queries and 50 denoising queries, two classes; no dropout (RT-DETR's
    default). The example's tiny detector (examples/models/build_tiny_rt_detr.py) at twice the width."""
    builder = script(REPO / "examples" / "models" / "build_tiny_rt_detr.py")
    labels = {0: "square", 1: "disc"}
    return builder.tiny_config(2, width=64, queries=50, id2label=labels, label2id={v: k for k, v in labels.items()})


def prepare(config: BenchConfig, folder: Path) -> tuple[Path, Path]:
    """The shapes Dataset (a COCO folder) and the base model, written once for both sides."""
    from transformers import RTDetrForObjectDetection

    data = folder / "claim" / "shapes"
    script(REPO / "examples" / "data" / "build_shapes.py").build(
        data, images=config.images, size=config.image_size, seed=config.seed
    )
    model_folder = folder / "model"
    torch.manual_seed(config.seed)
    RTDetrForObjectDetection(model_config()).save_pretrained(model_folder)
    return data, model_folder


def bench_job(config: BenchConfig, data: Path, model_folder: Path, root: Path) -> ResolvedJob:
    """The job the shipped trainer runs, resolved as the operator resolves one."""
    from tensorone.api.resolved import resolve_job
    from tensorone.api.v1alpha1 import DatasetSpec, TrainingJobSpec

    spec = TrainingJobSpec.model_validate(
        {
            "modelType": "vision",
            "datasetId": "shapes",
            "config": {
                "baseModel": str(model_folder),
                "inputSize": [config.image_size, config.image_size],
                "numClasses": 2,
                "training": {
                    "batchSize": config.batch,
                    "gradientAccumulationSteps": config.grad_accum,
                    "learningRate": config.learning_rate,
                    "lrScheduler": "constant",
                    "weightDecay": 0.0,
                    "maxSteps": config.total_steps,
                    "seed": config.seed,
                    "checkpointEveryEpoch": False,
                },
                "optimization": {"maxGradNorm": 1.0},
            }
            | ({"augmentation": AUGMENTATION} if config.augment else {}),
        }
    )
    dataset = DatasetSpec.model_validate(
        {"format": "coco", "source": {"pvc": {"claimName": "data", "path": f"/{data.name}"}}}
    )
    return resolve_job(
        spec,
        dataset,
        name="vision-detection-bench",
        namespace="default",
        report_port=0,
        use_gpu=False,
        dataset_mount_path=str(data.parent),
        checkpoint_dir=str(root / "checkpoints"),
        output_dir=str(root / "output"),
    )


# --------------------------------------------------------------------------- workers


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    """VmHWM: the peak RSS since the process started or since ``reset_peak_rss``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


class Steps:
    """The worker's side of the protocol: wait for a number of steps, run them, say how far it got."""

    def __init__(self, config: BenchConfig, conn: Connection, result: SideResult) -> None:
        self.config, self.conn, self.result = config, conn, result
        self.remaining = 0
        self.started = 0.0

    def wait_for_command(self) -> None:
        self.remaining = self.conn.recv()
        if len(self.result.step_seconds) == self.config.warmup_steps:  # the measured steps begin
            self.result.peak_rss_mib = peak_rss_mib()
            self.result.rss_before_mib = rss_mib()
            reset_peak_rss()
        self.started = time.perf_counter()

    def step_done(self, loss: float) -> None:
        self.result.step_seconds.append(time.perf_counter() - self.started)
        self.result.losses.append(loss)
        self.remaining -= 1
        if self.remaining == 0:
            self.conn.send(len(self.result.step_seconds))
            if len(self.result.step_seconds) < self.config.total_steps:
                self.wait_for_command()
        self.started = time.perf_counter()


def worker(side: str, config: BenchConfig, data: Path, model_folder: Path, conn: Connection) -> None:
    """Build one side, run blocks of steps on command, then report."""
    torch.set_num_threads(config.threads)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    result = SideResult()
    steps = Steps(config, conn, result)
    root = Path(tempfile.mkdtemp(prefix=f"vision-bench-{side}-"))
    try:
        job = bench_job(config, data, model_folder, root)
        if side == "hf":
            run_hf(job, config, steps, root)
        else:
            run_ours(job, config, steps)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    conn.recv()  # the final "report"
    result.measured_peak_rss_mib = peak_rss_mib()
    result.peak_rss_mib = max(result.peak_rss_mib, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    conn.send(asdict(result))
    conn.close()


def ordered_examples(job: ResolvedJob) -> list[DetectionExample]:
    """The training images in the order the trainer's plan visits them in its first epoch: the
    baseline reads them sequentially in this order, so both sides train on the same micro-batches."""
    from trainer.data.coco import read_coco
    from trainer.data.plan import DataPlan

    training = job.config.training
    coco = read_coco(
        job.dataset,
        mount_path=Path(job.dataset_mount_path),
        num_classes=2,
        max_bad_rows=training.max_bad_rows,
        eval_split=training.eval_split,
        seed=training.seed,
    )
    plan = DataPlan(
        examples=list(coco.train),
        seed=training.seed,
        batch_size=training.batch_size,
        accumulation=training.gradient_accumulation_steps,
    )
    return [coco.train[i] for i in plan.order(0)]


def run_hf(job: ResolvedJob, config: BenchConfig, steps: Steps, root: Path) -> None:
    import numpy as np
    from PIL import Image
    from transformers import (
        RTDetrForObjectDetection,
        RTDetrImageProcessorPil,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from trainer.data.box_augmentation import Sample, augment

    examples = ordered_examples(job)
    augmentation = job.config.augmentation
    processor = RTDetrImageProcessorPil(size={"height": config.image_size, "width": config.image_size})

    def sample(example: DetectionExample) -> Sample:
        with Image.open(example.path) as image:
            pixels = np.asarray(image.convert("RGB"))
        return Sample(pixels, np.asarray(example.boxes, dtype=np.float64).reshape(-1, 4), np.asarray(example.labels))

    class ShapesDataset(torch.utils.data.Dataset[dict[str, Any]]):
        """Read, augment (a generator per item), and process one image with its COCO annotations."""

        def __len__(self) -> int:
            return len(examples)

        def __getitem__(self, index: int) -> dict[str, Any]:
            item = sample(examples[index])
            if augmentation is not None:
                rng = np.random.default_rng((config.seed, index))
                item = augment(item, augmentation, rng, lambda: sample(examples[int(rng.integers(len(examples)))]))
            annotations = {
                "image_id": index,
                "annotations": [
                    {"bbox": list(box), "category_id": int(label), "area": float(box[2] * box[3]), "iscrowd": 0}
                    for box, label in zip(item.boxes, item.labels, strict=True)
                ],
            }
            encoded = cast(Any, processor)(images=item.image, annotations=annotations, return_tensors="pt")
            return {"pixel_values": encoded["pixel_values"][0], "labels": encoded["labels"][0]}

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        pixels = torch.stack([item["pixel_values"] for item in batch])
        if config.hf_channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return {"pixel_values": pixels, "labels": [item["labels"] for item in batch]}

    class LossRecordingTrainer(Trainer):
        """Trainer that keeps the exact loss of every micro-batch (already divided by the accumulation)."""

        micro_losses: list[float] = []  # noqa: RUF012 - one trainer per process

        def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            loss = super().training_step(*args, **kwargs)
            self.micro_losses.append(float(loss))
            return loss

    class BlockControl(TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            steps.wait_for_command()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.manual_seed(config.seed + state.global_step)  # the denoising noise: see the module docstring

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            loss = sum(trainer.micro_losses)
            trainer.micro_losses.clear()
            steps.step_done(loss)

    model = RTDetrForObjectDetection.from_pretrained(job.config.base_model, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(root / "hf"),
        per_device_train_batch_size=config.batch,
        gradient_accumulation_steps=config.grad_accum,
        max_steps=config.total_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=1.0,
        train_sampling_strategy="sequential",  # the same images in the same steps as our side
        dataloader_num_workers=config.hf_workers,
        remove_unused_columns=False,
        logging_strategy="no",
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=config.seed,
        data_seed=config.seed,
    )
    trainer = LossRecordingTrainer(model=model, args=args, train_dataset=ShapesDataset(), data_collator=collate)
    trainer.add_callback(BlockControl())
    trainer.train()


def run_ours(job: ResolvedJob, config: BenchConfig, steps: Steps) -> None:
    """The shipped trainer's side, built by its own recipe; every step is the loop's."""
    from tensorone.reporting.client import Reporter
    from trainer import recipe
    from trainer.capabilities import refuse_unsupported
    from trainer.distributed import Topology
    from trainer.loop import optimizer_step, report_step
    from trainer.signals import StopSignal
    from trainer.tasks import task_for

    refuse_unsupported(job, cuda_available=False)
    topology = Topology()
    placement = recipe.join_processes(job, topology)
    reporter = Reporter(serve=False, termination_log=None)
    store, _ = recipe.setup_checkpoints(job, topology, reporter)
    task = task_for(job)
    data = recipe.load_data(task, reporter)
    model = recipe.setup_model(job, task, placement)
    plan = recipe.plan_data(job, data.train, topology)
    assert [data.train[i] for i in plan.order(0)] == ordered_examples(job)  # the baseline's order
    length = recipe.run_length(job, plan)
    assert length.total_steps == config.total_steps and length.total_epochs == 1, length
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
    steps.wait_for_command()
    while run.step < config.total_steps:
        planned = planned_steps[run.step]
        torch.manual_seed(config.seed + run.step)  # the denoising noise: see the module docstring
        started = time.perf_counter()
        result = optimizer_step(run, planned)
        report_step(run, result, planned, epoch=1, seconds=time.perf_counter() - started)
        steps.step_done(result.loss)


# --------------------------------------------------------------------------- parent


def measured_blocks(config: BenchConfig) -> list[int]:
    blocks = [config.block] * (config.steps // config.block)
    return blocks + ([config.steps % config.block] if config.steps % config.block else [])


def run_sides(config: BenchConfig, data: Path, model_folder: Path, *, interleave: bool) -> dict[str, SideResult]:
    """Both sides on ``config``: warm-up steps, then blocks of measured steps in turn."""
    context = mp.get_context("spawn")
    workers: dict[str, tuple[Any, Connection]] = {}
    for side in ("hf", "ours"):
        parent_end, child_end = context.Pipe()
        process = context.Process(target=worker, args=(side, config, data, model_folder, child_end), daemon=True)
        process.start()
        child_end.close()  # the worker holds the only other end: its death is an EOFError here
        workers[side] = (process, parent_end)

    def run_block(side: str, count: int) -> None:
        process, conn = workers[side]
        try:
            conn.send(count)
            conn.recv()
        except (EOFError, BrokenPipeError):
            process.join(timeout=10)
            raise SystemExit(f"the {side} worker died (exit code {process.exitcode}); its traceback is above") from None

    if config.warmup_steps:
        for side in workers:
            run_block(side, config.warmup_steps)
    blocks = measured_blocks(config) if interleave else [config.steps]
    for index, count in enumerate(blocks):
        for side in ("hf", "ours") if index % 2 == 0 else ("ours", "hf"):
            run_block(side, count)
    results = {}
    for side, (process, conn) in workers.items():
        conn.send("report")
        results[side] = SideResult(**conn.recv())
        process.join(timeout=60)
    return results


def check(config: BenchConfig, data: Path, model_folder: Path, tolerance: float) -> None:
    """Augmentations off, the same steps on both sides: the per-step losses and their largest difference."""
    results = run_sides(replace(config, augment=False), data, model_folder, interleave=False)
    hf, ours = results["hf"].losses, results["ours"].losses
    differences = [abs(a - b) for a, b in zip(hf, ours, strict=True)]
    layout = "channels-last, as ours" if config.hf_channels_last else "contiguous, as its processor gives them"
    print(
        f"\ncorrectness: augmentations off, {len(hf)} steps, the same images in the same micro-batches "
        f"(the baseline's pixels {layout})"
    )
    print("  step  hf Trainer        ours              |difference|")
    for step, (a, b, d) in enumerate(zip(hf, ours, differences, strict=True), start=1):
        print(f"  {step:4}  {a:.10f}  {b:.10f}  {d:.2e}")
    worst = max(differences)
    verdict = "matches" if worst <= tolerance else "DOES NOT MATCH"
    print(f"  max |difference| {worst:.2e} over {len(hf)} steps: {verdict} (tolerance {tolerance:g})")


def speed(config: BenchConfig, data: Path, model_folder: Path) -> None:
    results = run_sides(config, data, model_folder, interleave=True)
    blocks = measured_blocks(config)
    figures: dict[str, dict[str, Any]] = {}
    for side, result in results.items():
        measured = result.step_seconds[config.warmup_steps :]
        per_block, position = [], 0
        for count in blocks:
            per_block.append(count * config.images_per_step / sum(measured[position : position + count]))
            position += count
        figures[side] = {
            "images_per_second": len(measured) * config.images_per_step / sum(measured),
            "blocks": per_block,
            "step_ms": 1000 * statistics.median(measured),
            "result": result,
        }
    augmented = "on (the detection example's)" if config.augment else "off"
    layout = "channels-last, as ours" if config.hf_channels_last else "contiguous, as its processor gives them"
    print(
        f"\nspeed: augmentations {augmented}, {config.steps} measured steps per side in blocks of {config.block} "
        f"(+{config.warmup_steps} warm-up), {config.images_per_step} images a step, the baseline's pixels {layout}, "
        f"its dataloader_num_workers {config.hf_workers}"
    )
    print("  side          images/s  (blocks)          median step  peak RSS  measured steps: RSS before -> peak")
    names = {"hf": "hf Trainer", "ours": "ours"}
    for side, figure in figures.items():
        result = figure["result"]
        print(
            f"  {names[side]:12} {figure['images_per_second']:9.1f}  ({min(figure['blocks']):.1f}..{max(figure['blocks']):.1f})"
            f"  {figure['step_ms']:9.0f} ms  {result.peak_rss_mib:6.0f} MiB  "
            f"{result.rss_before_mib:6.0f} -> {result.measured_peak_rss_mib:6.0f} MiB "
            f"(+{result.measured_peak_rss_mib - result.rss_before_mib:.0f})"
        )
    paired = sorted(b / a for a, b in zip(figures["hf"]["blocks"], figures["ours"]["blocks"], strict=True))
    print(
        f"  ratio ours/hf {figures['ours']['images_per_second'] / figures['hf']['images_per_second']:.2f}x overall; "
        f"adjacent blocks: median {statistics.median(paired):.2f}x (range {paired[0]:.2f}..{paired[-1]:.2f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=BenchConfig.steps, help="measured optimizer steps per side")
    parser.add_argument("--block", type=int, default=BenchConfig.block, help="steps per interleaved block")
    parser.add_argument("--warmup-steps", type=int, default=BenchConfig.warmup_steps)
    parser.add_argument(
        "--check-steps", type=int, help="steps of the correctness check (0: skip it); default 8, 4 with --quick"
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest per-step loss difference allowed")
    parser.add_argument("--image-size", type=int, default=BenchConfig.image_size, help="a multiple of 32")
    parser.add_argument("--batch", type=int, default=BenchConfig.batch)
    parser.add_argument("--grad-accum", type=int, default=BenchConfig.grad_accum)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--hf-workers", type=int, default=0, help="Trainer's dataloader_num_workers")
    parser.add_argument(
        "--baseline-layout",
        choices=["contiguous", "channels-last"],
        default="contiguous",
        help="the memory layout of the baseline's pixels in the speed run (channels-last: ours, to isolate its effect)",
    )
    parser.add_argument("--no-augmentation", action="store_true", help="measure speed without augmentations")
    parser.add_argument(
        "--check-baseline-layout",
        choices=["channels-last", "contiguous"],
        default="channels-last",
        help="the memory layout of the baseline's pixels in the check (contiguous: as Trainer feeds them)",
    )
    parser.add_argument("--check-only", action="store_true", help="the correctness check alone")
    parser.add_argument("--quick", action="store_true", help="4 measured steps, 4 checked: a smoke run")
    args = parser.parse_args(argv)
    if min(args.steps, args.block, args.threads, args.batch, args.grad_accum) < 1 or args.image_size % 32:
        parser.error("--steps, --block, --threads, --batch, --grad-accum at least 1; --image-size a multiple of 32")
    config = BenchConfig(
        steps=4 if args.quick else args.steps,
        block=2 if args.quick else args.block,
        warmup_steps=1 if args.quick else args.warmup_steps,
        image_size=args.image_size,
        batch=args.batch,
        grad_accum=args.grad_accum,
        threads=args.threads,
        augment=not args.no_augmentation,
        hf_workers=args.hf_workers,
        hf_channels_last=args.baseline_layout == "channels-last",
    )
    check_steps = args.check_steps if args.check_steps is not None else 4 if args.quick else 8
    needed = max(config.total_steps, check_steps) * config.images_per_step
    config = replace(config, images=max(config.images, needed))
    print(
        f"vision detection: RT-DETR (ResNet 16-32, d_model 64, 2 decoder layers, 50 queries), fp32, input "
        f"{config.image_size}x{config.image_size}, micro-batch {config.batch} x accumulation {config.grad_accum}, "
        f"{config.threads} threads, {config.images} drawn shapes images"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    folder = Path(tempfile.mkdtemp(prefix="vision-bench-"))
    try:
        data, model_folder = prepare(config, folder)
        if check_steps:
            checked = replace(
                config,
                warmup_steps=0,
                steps=check_steps,
                block=check_steps,
                hf_channels_last=args.check_baseline_layout == "channels-last",
            )
            check(checked, data, model_folder, args.tolerance)
        if not args.check_only:
            speed(config, data, model_folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes share the cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
