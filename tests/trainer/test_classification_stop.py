"""SIGTERM to a vision trainer, for real: it saves a checkpoint and exits 0, and the resumed run
ends bit-identical to one never stopped (augmentation and MixUp on)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.kube.loopback import free_port
from tests.kube.polling import wait_for
from tests.trainer.conftest import REPO, assert_same_weights, step_losses
from tests.trainer.images import build_shapes, vision_job
from tests.trainer.test_stop_signal import progress
from trainer.run import RunOptions, run

pytestmark = pytest.mark.slow

# 48 images, 38 for training in batches of 8: 5 steps an epoch, 50 in all.
TRAINING: dict[str, Any] = {"epochs": 10, "evalSplit": 0.2, "checkpointEveryEpoch": False, "lrScheduler": "constant"}
AUGMENTATION = {"fliplr": 0.5, "scale": 0.2, "hsvV": 0.3, "mixup": 0.5}


def test_sigterm_saves_a_checkpoint_and_the_resume_is_bit_identical(tmp_path: Path) -> None:
    data = tmp_path / "claim" / "shapes"
    build_shapes(data, per_class=16)
    port = free_port()
    job = vision_job(tmp_path / "stopped", data=data, training=TRAINING, augmentation=AUGMENTATION)
    config = tmp_path / "job.yaml"
    job.model_copy(update={"report_port": port}).write(config)
    termination_log = tmp_path / "termination-log"
    env = os.environ | {"TENSORONE_JOB_CONFIG": str(config), "TENSORONE_TERMINATION_LOG": str(termination_log)}
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(
            lambda: process.poll() is not None or ((progress(port) or {}).get("step", 0) >= 3), "step 3", timeout=120
        )
        assert process.poll() is None, "the trainer ended before it could be signalled"
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode() if process.stdout else ""
    assert exit_code == 0, output
    final = json.loads(termination_log.read_text())
    assert final["state"] == "stopped" and final["checkpoints"][-1]["reason"] == "stop", final
    assert final["step"] < 50

    resumed = run(job, RunOptions(serve_reports=False))
    assert resumed.exit_code == 0 and resumed.report is not None
    assert resumed.report.resumed_from == final["checkpoints"][-1]["id"]
    assert resumed.report.eval_metrics["accuracy"] > 1 / 3
    reference = vision_job(tmp_path / "reference", data=data, training=TRAINING, augmentation=AUGMENTATION)
    assert run(reference, RunOptions(serve_reports=False)).exit_code == 0
    expected, losses = (
        step_losses(tmp_path / "reference" / "checkpoints"),
        step_losses(tmp_path / "stopped" / "checkpoints"),
    )
    assert sorted(losses) == sorted(expected) == list(range(1, 51))
    assert all(losses[step] == expected[step] for step in expected), "losses differ after the resume"
    assert_same_weights(tmp_path / "reference" / "output", tmp_path / "stopped" / "output")
