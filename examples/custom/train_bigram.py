"""A user's own training script, as a ``modelType: custom`` image runs it, reporting to TensorOne.

    python train_bigram.py [--context 8] [--hidden 256]

It trains a tiny byte-level language model (the next byte from the ``--context`` bytes before it)
on the job's Dataset, with the TrainingJob's ``config.training`` (epochs, batchSize, learningRate,
weightDecay, seed, keepCheckpoints), and reports through ``tensorone.reporting.client.Reporter`` the
way the TensorOne trainer does, so ``kubectl get tj`` shows its progress, loss and checkpoints:

- ``plan``, the checkpoints found, and ``running`` (with the checkpoint it resumed from) at start;
- ``step`` after every optimizer step, with the loss, learning rate, bytes and examples;
- ``checkpoints`` after every save, with the list that is kept (the oldest are deleted);
- on SIGTERM (``spec.suspend: true``, or a node draining) it finishes the step in flight, saves a
  ``stop`` checkpoint and ends ``stopped`` with exit code 0; leaving the ``with`` block otherwise
  ends ``completed`` (``failed`` on an exception). The termination message carries the last state.

What the pod gives it (the operator sets all of it): the resolved job at ``$TENSORONE_JOB_CONFIG``
(the Dataset's spec, ``config.training`` with defaults applied, the checkpoint folder on the job's
claim, ``resumeFrom``) and the report port in ``$TENSORONE_REPORT_PORT`` (the job's
``config.custom.progressPort``), which ``Reporter`` serves by itself. The image needs torch and
``pip install 'tensorone-training[report]'`` (the client: pydantic and prometheus-client, no torch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import torch

from tensorone.api.resolved import DEFAULT_JOB_CONFIG_PATH, JOB_CONFIG_ENV, ResolvedJob
from tensorone.reporting.client import CheckpointReport, Reporter, TrainerState

WEIGHTS = "model.pt"
MANIFEST = "checkpoint.json"


class StopRequested:
    """SIGTERM sets a flag; the loop finishes its step and saves before the grace period ends."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def read_text(job: ResolvedJob) -> bytes:
    """The Dataset's rows as one byte string: inline records, or a JSONL file on the data claim."""
    source = job.dataset.source
    if source.inline is not None:
        rows = source.inline.records
    elif source.pvc is not None:
        path = Path(job.dataset_mount_path) / source.pvc.path.lstrip("/")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        raise SystemExit(f"train_bigram.py reads inline or pvc Datasets; {job.dataset_name!r} has another source")
    text = "\n".join(" ".join(str(value) for value in row.values()) for row in rows)
    return text.encode()


def model(context: int, hidden: int) -> torch.nn.Module:
    """Embed each byte of the context, then one hidden layer to the next byte's logits."""
    return torch.nn.Sequential(
        torch.nn.Embedding(256, 32),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * context, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 256),
    )


class Checkpoints:
    """The checkpoint folder: ``ckpt-*/`` with the weights and a ``checkpoint.json`` manifest each
    (the report of it), the newest ``keep`` kept."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = folder
        self.keep = keep
        folder.mkdir(parents=True, exist_ok=True)
        manifests = (p / MANIFEST for p in folder.glob("ckpt-*"))
        found = [CheckpointReport.model_validate_json(m.read_text()) for m in manifests if m.exists()]
        self.kept = sorted(found, key=lambda r: (r.step, r.created_at))

    def find(self, wanted: str | None) -> CheckpointReport | None:
        """``resumeFrom``: an id, ``latest`` (also when absent), or ``none``."""
        if wanted == "none" or not self.kept:
            return None
        if wanted in (None, "latest"):
            return self.kept[-1]
        for report in self.kept:
            if report.id == wanted:
                return report
        raise SystemExit(f"resumeFrom {wanted!r}: no such checkpoint; kept are {[r.id for r in self.kept]}")

    def save(
        self, state: dict[str, object], *, checkpoint_id: str, epoch: int, step: int, loss: float, reason: str
    ) -> CheckpointReport:
        """Write a checkpoint atomically (a folder renamed into place), then drop the oldest."""
        partial = self.folder / f".{checkpoint_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        torch.save(state, partial / WEIGHTS)
        saved = CheckpointReport(
            id=checkpoint_id,
            epoch=epoch,
            step=step,
            loss=loss,
            created_at=datetime.now(UTC),
            size_bytes=(partial / WEIGHTS).stat().st_size,
            reason=reason,
        )
        (partial / MANIFEST).write_text(saved.model_dump_json())
        shutil.rmtree(self.folder / checkpoint_id, ignore_errors=True)
        partial.rename(self.folder / checkpoint_id)
        self.kept = [r for r in self.kept if r.id != checkpoint_id] + [saved]
        for old in self.kept[: -self.keep]:
            shutil.rmtree(self.folder / old.id, ignore_errors=True)
        self.kept = self.kept[-self.keep :]
        return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--context", type=int, default=8, help="bytes the model sees before the one it predicts")
    parser.add_argument("--hidden", type=int, default=256, help="width of the hidden layer")
    args = parser.parse_args()
    stop = StopRequested()
    torch.set_num_threads(1)  # a small model: one thread is fastest and leaves the node's others free

    job = ResolvedJob.read(Path(os.environ.get(JOB_CONFIG_ENV, DEFAULT_JOB_CONFIG_PATH)))
    training = job.config.training
    data = torch.tensor(list(read_text(job)), dtype=torch.long)
    windows = data.unfold(0, args.context + 1, 1)  # every context and the byte after it
    steps_per_epoch = max(len(windows) // training.batch_size, 1)
    total_steps = steps_per_epoch * training.epochs
    checkpoints = Checkpoints(Path(job.checkpoint_dir), training.keep_checkpoints)

    torch.manual_seed(training.seed)
    net = model(args.context, args.hidden)
    optimizer = torch.optim.AdamW(net.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    step = 0
    resume = checkpoints.find(job.resume_from)
    if resume is not None:
        state = torch.load(checkpoints.folder / resume.id / WEIGHTS)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = resume.step

    with Reporter(metrics_log=checkpoints.folder / "metrics.jsonl") as reporter:
        reporter.plan(total_epochs=training.epochs, total_steps=total_steps, step=step)
        reporter.checkpoints(list(checkpoints.kept))
        reporter.running(resumed_from=resume.id if resume is not None else None)

        def save(checkpoint_id: str, reason: str, loss: float) -> None:
            state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            saved = checkpoints.save(
                state, checkpoint_id=checkpoint_id, epoch=step // steps_per_epoch, step=step, loss=loss, reason=reason
            )
            reporter.checkpoints(list(checkpoints.kept), saved=saved)

        while step < total_steps:
            epoch = step // steps_per_epoch  # 0-based here, 1-based in the report
            # Each epoch's order comes from its number, so a resumed run sees the batches it missed.
            order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(training.seed + epoch))
            start = (step % steps_per_epoch) * training.batch_size
            batch = windows[order[start : start + training.batch_size]]
            started = time.perf_counter()
            batch_loss = torch.nn.functional.cross_entropy(net(batch[:, :-1]), batch[:, -1])
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            step += 1
            loss = batch_loss.item()
            reporter.step(
                step,
                loss,
                epoch=epoch + 1,
                learning_rate=training.learning_rate,
                tokens=batch.numel(),
                samples=len(batch),
                seconds=time.perf_counter() - started,
            )
            if stop.requested:
                save(f"ckpt-step-{step}", "stop", loss)
                reporter.finish(TrainerState.stopped, message=f"stopped on SIGTERM at step {step}")
                return 0
            if step % steps_per_epoch == 0:
                save(f"ckpt-epoch-{step // steps_per_epoch}", "final" if step == total_steps else "epoch", loss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
