"""Weights & Biases: one W&B run per job, online or offline.

The run id is chosen here and written to tracking.json before ``wandb.init``, so every process of
the job, restarted or resumed, continues the same run (``resume="allow"``). W&B's files go to
``wandb/`` on the checkpoint claim. Online, the API key comes from ``WANDB_API_KEY`` (the
operator fills it from the job's Secret) and a resumed run starts at the step after the last one
the server holds (``run.starting_step``). Offline, nothing leaves the pod: each process writes an
``offline-run-<time>-<id>`` folder, and ``wandb sync`` uploads them later, in order, as the one run;
a resumed process reads the earlier folders with W&B's own reader (``wandb leet inspect``) to
skip the steps they hold. Checkpoints (with ``logCheckpoints``) are model artifacts
``checkpoints-<id>`` whose versions carry the checkpoint id as an alias; offline, their files are
staged on the claim too (``WANDB_DATA_DIR``), where ``wandb sync`` finds them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tensorone.api.report import CheckpointReport, TrainerState
from tensorone.api.v1alpha1.trainingjob import WandbMode, WandbTracking
from trainer.tracking import Logged, RunContext, new_run_id

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run

log = logging.getLogger("trainer")

# W&B's folder on the checkpoint claim (wandb.init(dir=...) adds the last part itself).
WANDB_FOLDER = "wandb"
READ_TIMEOUT_SECONDS = 60
STAGING_ENV = "WANDB_DATA_DIR"


class WandbTracker:
    """One W&B run, open."""

    name = "wandb"

    def __init__(
        self, run: Run, run_id: str, logged: Logged, *, log_checkpoints: bool, staging: str | None = None
    ) -> None:
        self.run = run
        self.run_id = run_id
        self.logged = logged
        self.log_checkpoints = log_checkpoints
        # WANDB_DATA_DIR as it was before this run set it (offline), put back at the end.
        self._staging_before = staging

    @classmethod
    def open(cls, settings: WandbTracking, context: RunContext) -> WandbTracker:
        import wandb

        checkpoint_dir = Path(context.job.checkpoint_dir)
        saved = context.saved or {}
        run_id = saved.get("runId")
        if not isinstance(run_id, str):
            run_id = new_run_id()
            context.save({"runId": run_id})
        offline = settings.mode == WandbMode.offline
        logged = Logged()
        staging = os.environ.get(STAGING_ENV)
        if offline:
            # Artifacts are staged before they are uploaded: on the claim, for a later `wandb sync`.
            os.environ[STAGING_ENV] = staging or str(checkpoint_dir / WANDB_FOLDER / "data")
            if saved:
                last = offline_last_step(checkpoint_dir / WANDB_FOLDER, run_id)
                logged = Logged(step=last, eval=last)
        run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            id=run_id,
            name=context.run_name,
            resume="allow",
            mode="offline" if offline else "online",
            dir=str(checkpoint_dir),
            config=None if saved else dict(context.hyperparameters),
            tags=[context.job.namespace, context.job.name],
            settings=wandb.Settings(
                # The trainer's output stays the container's: no capture of stdout and stderr.
                console="off",
                **({"base_url": settings.base_url} if settings.base_url else {}),
            ),
        )
        if not offline and run.starting_step > 0:
            # W&B numbers history rows by step: the next step it takes is one past the last it has.
            logged = Logged(step=run.starting_step - 1, eval=run.starting_step - 1)
        return cls(run, run_id, logged, log_checkpoints=settings.log_checkpoints, staging=staging)

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def log_checkpoint(self, checkpoint: CheckpointReport, folder: Path) -> None:
        if not self.log_checkpoints:
            return
        import wandb

        artifact = wandb.Artifact(f"checkpoints-{self.run_id}", type="model", metadata=checkpoint.to_wire())
        artifact.add_dir(str(folder / "model"), name="model")
        artifact.add_file(str(folder / "manifest.json"))
        self.run.log_artifact(artifact, aliases=[checkpoint.id, "latest"])

    def finish(self, state: TrainerState) -> None:
        if state == TrainerState.stopped:
            self.run.mark_preempting()  # W&B shows the run as preempted, to be resumed
        self.run.finish(exit_code=0 if state in (TrainerState.completed, TrainerState.stopped) else 1)
        if self._staging_before is None:
            os.environ.pop(STAGING_ENV, None)
        else:
            os.environ[STAGING_ENV] = self._staging_before


def offline_last_step(wandb_dir: Path, run_id: str) -> int:
    """The last step the run's earlier offline folders hold, read with W&B's reader of its
    transaction log (``wandb leet inspect --summary --json``); 0 when none can be read."""
    last = 0
    for folder in sorted(wandb_dir.glob(f"offline-run-*-{run_id}")):
        command = [sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=READ_TIMEOUT_SECONDS, check=False)
        try:
            step = int(json.loads(done.stdout).get("step") or 0)
        except (ValueError, AttributeError):
            log.warning("wandb: cannot read %s (%s); its steps may be logged again", folder, done.stderr.strip()[:300])
            continue
        last = max(last, step)
    return last
