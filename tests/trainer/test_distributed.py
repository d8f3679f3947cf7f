"""Where a process sits among the training processes (torchrun and Kubeflow variables), and two
processes under torchrun (gloo) resuming exactly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tensorone.api.exit_codes import ExitCode
from tensorone.errors import ConfigurationError
from tests.trainer.conftest import REPO, assert_same_weights, example_records, make_job, step_losses
from trainer.distributed import Topology, topology_from_env
from trainer.run import RunOptions, run


def test_a_process_without_variables_is_alone() -> None:
    assert topology_from_env({}) == Topology()


def test_torchrun_variables() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456"}
    assert topology_from_env(env) == Topology(
        rank=3, world_size=4, local_rank=1, master_addr="job-master-0", master_port=23456
    )


def test_kubeflow_pet_variables_without_torchrun() -> None:
    # A one-process-per-pod PyTorchJob whose command is `python -m trainer`, not torchrun.
    env = {"PET_NNODES": "2", "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "job-master-0", "PET_MASTER_PORT": "23456"}
    assert topology_from_env(env) == Topology(
        rank=1, world_size=2, local_rank=0, master_addr="job-master-0", master_port=23456
    )


def test_pet_node_variables_are_not_ranks_with_several_processes_per_node() -> None:
    env = {"PET_NNODES": "2", "PET_NODE_RANK": "1", "PET_NPROC_PER_NODE": "4"}
    assert topology_from_env(env) == Topology()


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE"),
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, "RANK"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR"),
    ],
)
def test_bad_variables_are_named(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        topology_from_env(env)
    assert raised.value.field == field


# 23 records (the plan pads to 24 by repeating one), 2 processes, batches of 2, accumulation 2:
# 3 optimizer steps per epoch, 2 epochs.
TRAINING: dict[str, Any] = {
    "epochs": 2,
    "batchSize": 2,
    "gradientAccumulationSteps": 2,
    "checkpointSteps": 2,
    "keepCheckpoints": 100,
}
DATASET: dict[str, Any] = {"format": "jsonl", "source": {"inline": {"records": example_records(23)}}}


def torchrun(root: Path, **overrides: Any) -> None:
    config = root / "job.yaml"
    root.mkdir(parents=True, exist_ok=True)
    make_job(root, training=TRAINING, dataset=DATASET, **overrides).write(config)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "trainer", "--config", str(config), "--no-report"]
    env = os.environ | {"TENSORONE_TERMINATION_LOG": str(root / "termination-log")}
    done = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_resume_exactly(tmp_path: Path) -> None:
    torchrun(tmp_path / "reference")
    checkpoints = tmp_path / "reference" / "checkpoints"
    assert sorted(step_losses(checkpoints)) == [1, 2, 3, 4, 5, 6]
    rng = checkpoints / "ckpt-step-4" / "rng"
    assert sorted(p.name for p in rng.iterdir()) == ["rank-0.pt", "rank-1.pt"]
    # Each process has its own generator stream (its own dropout masks).
    assert not torch.equal(torch.load(rng / "rank-0.pt")["torch"], torch.load(rng / "rank-1.pt")["torch"])

    shutil.copytree(checkpoints / "ckpt-step-4", tmp_path / "resumed" / "checkpoints" / "ckpt-step-4")
    torchrun(tmp_path / "resumed", resume_from="ckpt-step-4")

    expected = step_losses(checkpoints)
    resumed = step_losses(tmp_path / "resumed" / "checkpoints")
    assert sorted(resumed) == [5, 6]
    assert all(resumed[step] == expected[step] for step in resumed)
    assert_same_weights(tmp_path / "reference" / "output", tmp_path / "resumed" / "output")

    # The data order depends on the number of processes: one process refuses that checkpoint.
    alone = run(
        make_job(tmp_path / "resumed", training=TRAINING, dataset=DATASET, resume_from="ckpt-step-4"),
        RunOptions(serve_reports=False),
    )
    assert alone.exit_code == 2
    assert alone.report is not None and "2 processes" in (alone.report.message or "")


@pytest.mark.slow
def test_sigterm_stops_every_process_and_the_launcher_exits_143(tmp_path: Path) -> None:
    training = {"epochs": 500, "batchSize": 2, "checkpointEveryEpoch": False, "keepCheckpoints": 2}
    make_job(tmp_path, training=training, dataset=DATASET).write(tmp_path / "job.yaml")
    env = os.environ | {
        "TENSORONE_JOB_CONFIG": str(tmp_path / "job.yaml"),
        "TENSORONE_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    launcher = subprocess.Popen(
        [sys.executable, "-m", "trainer.launch", "--standalone", "--nproc-per-node=2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = tmp_path / "checkpoints" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and launcher.poll() is None:
            if log.exists() and '"event":"step","step":3,' in log.read_text():
                break
            time.sleep(0.1)
        assert launcher.poll() is None, "training ended before the signal"
        launcher.send_signal(signal.SIGTERM)
        exit_code = launcher.wait(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    errors = launcher.stderr.read().decode() if launcher.stderr else ""
    assert exit_code == ExitCode.TERMINATED, errors[-3000:]  # the pod is recreated unless its job stops
    final = json.loads((tmp_path / "termination-log").read_text())
    assert final["state"] == "stopped"
    newest = final["checkpoints"][-1]
    assert (newest["id"], newest["reason"]) == (f"ckpt-step-{final['step']}", "stop")
    assert sorted(p.name for p in (tmp_path / "checkpoints" / newest["id"] / "rng").iterdir()) == [
        "rank-0.pt",
        "rank-1.pt",
    ]
