"""TensorBoard: event files on the checkpoint claim, written with tensorboardX (no TensorFlow).

A run is the folder ``<logDir>/<runName>-<id>``: TensorBoard shows it as one run, with the
hyperparameters in its HParams dashboard. A resumed run writes a new event file in the same folder
that starts with TensorBoard's purge marker at the first step after the checkpoint: TensorBoard
drops the older events from that step on (those logged after the checkpoint before a crash, or of a
later checkpoint than the one resumed from), and the steps are written again. Checkpoints are not
artifacts here: TensorBoard has no notion of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tensorone.api.report import CheckpointReport, TrainerState
from tensorone.api.v1alpha1.trainingjob import TensorBoardTracking
from trainer.tracking import Logged, RunContext, new_run_id

if TYPE_CHECKING:
    from tensorboardX import SummaryWriter

# Events reach the file at least this often (and at every checkpoint), so a crash loses little.
FLUSH_SECONDS = 15


class TensorBoardTracker:
    """One TensorBoard run folder, open."""

    name = "tensorboard"

    def __init__(self, writer: SummaryWriter, folder: Path) -> None:
        self.writer = writer
        self.folder = folder
        # Nothing is skipped: the purge marker drops what the folder has from the resumed step on.
        self.logged = Logged()

    @classmethod
    def open(cls, settings: TensorBoardTracking, context: RunContext) -> TensorBoardTracker:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        saved = context.saved or {}
        folder_name = saved.get("folder")
        if not isinstance(folder_name, str):
            folder_name = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', context.run_name)}-{new_run_id()}"
        folder = Path(context.job.checkpoint_dir) / settings.log_dir / folder_name
        if not saved:
            context.save({"folder": folder_name})
            writer = SummaryWriter(str(folder), flush_secs=FLUSH_SECONDS)
            experiment, session_start, _ = hparams(context.hyperparameters, {"train/loss": None, "eval/loss": None})
            for summary in (experiment, session_start):
                writer.file_writer.add_summary(summary)
        else:
            writer = SummaryWriter(str(folder), flush_secs=FLUSH_SECONDS, purge_step=context.resumed_step + 1)
        return cls(writer, folder)

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self.log_step(step, metrics)

    def log_checkpoint(self, checkpoint: CheckpointReport, folder: Path) -> None:
        self.writer.flush()

    def finish(self, state: TrainerState) -> None:
        self.writer.close()
