"""SIGTERM, for real: a trainer subprocess is signalled mid-run, saves a checkpoint, exits 0 at
once (143 under the pods' launcher, so a drained pod comes back), reports the checkpoint in its
termination message and at /progress, and a resumed run then ends exactly where an uninterrupted
one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.exit_codes import ExitCode
from tests.kube.loopback import free_port
from tests.kube.polling import wait_for
from tests.trainer.conftest import REPO, assert_same_weights, make_job, step_losses
from trainer.run import RunOptions, run

pytestmark = pytest.mark.slow

# 24 records, batches of 4: 6 steps an epoch; long enough to be signalled while training.
TRAINING: dict[str, Any] = {"epochs": 20, "batchSize": 4, "checkpointEveryEpoch": False, "keepCheckpoints": 2}
GRACE_SECONDS = 30  # Kubernetes' default terminationGracePeriodSeconds


def progress(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=2) as response:
            result: dict[str, Any] = json.load(response)
            return result
    except OSError:
        return None


def start_trainer(tmp_path: Path, folder: str, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """``python -m trainer`` on the test job under ``tmp_path/folder``, as a pod runs it; its termination log."""
    job = make_job(tmp_path / folder, training=TRAINING).model_copy(update={"report_port": port})
    config = tmp_path / "job.yaml"
    job.write(config)
    termination_log = tmp_path / "termination-log"
    env = os.environ | {"TENSORONE_JOB_CONFIG": str(config), "TENSORONE_TERMINATION_LOG": str(termination_log)}
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return process, termination_log


def test_sigterm_saves_a_checkpoint_exits_0_and_resume_is_exact(tmp_path: Path) -> None:
    port = free_port()
    process, termination_log = start_trainer(tmp_path, "stopped", port)
    try:
        deadline = time.monotonic() + 120
        seen: dict[str, Any] | None = None
        while time.monotonic() < deadline and process.poll() is None:
            seen = progress(port)
            if seen is not None and seen["step"] >= 3:
                break
            time.sleep(0.05)
        assert seen is not None and seen["state"] == "running", "the trainer never reported running"
        assert process.poll() is None, "the trainer ended before it could be signalled"

        process.send_signal(signal.SIGTERM)
        # Within the grace period, or Kubernetes would kill the pod before its checkpoint is whole.
        exit_code = process.wait(timeout=GRACE_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode() if process.stdout else ""

    assert exit_code == 0, output
    final = json.loads(termination_log.read_text())
    assert final["state"] == "stopped"
    assert "SIGTERM" in final["message"]
    stopped_at = final["step"]
    assert 3 <= stopped_at < 120
    newest = final["checkpoints"][-1]
    assert newest["id"] == f"ckpt-step-{stopped_at}"
    assert newest["reason"] == "stop"
    assert (tmp_path / "stopped" / "checkpoints" / newest["id"] / "manifest.json").is_file()

    # Resume (latest, in this process) and compare with a run that was never stopped.
    resumed = run(make_job(tmp_path / "stopped", training=TRAINING), RunOptions(serve_reports=False))
    assert resumed.exit_code == 0
    assert resumed.report is not None and resumed.report.resumed_from == newest["id"]
    never_stopped = run(make_job(tmp_path / "reference", training=TRAINING), RunOptions(serve_reports=False))
    assert never_stopped.exit_code == 0

    expected = step_losses(tmp_path / "reference" / "checkpoints")
    losses = step_losses(tmp_path / "stopped" / "checkpoints")
    assert sorted(losses) == sorted(expected)
    assert all(losses[step] == expected[step] for step in expected), "losses differ after the resume"
    assert_same_weights(tmp_path / "reference" / "output", tmp_path / "stopped" / "output")


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for the signal (Linux: the SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_sigterm_while_the_trainer_is_still_starting_is_not_lost(tmp_path: Path) -> None:
    """A pod stopped as soon as its trainer can hear it (torch not yet imported, no model loaded)
    still ends cleanly and reports that it stopped."""
    process, termination_log = start_trainer(tmp_path, "early", free_port())
    try:
        # The first moment a stop can be honoured: the trainer's handler is installed.
        wait_for(lambda: process.poll() is not None or catches(process.pid, signal.SIGTERM), "a SIGTERM handler")
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode() if process.stdout else ""
    assert exit_code == 0, output
    final = json.loads(termination_log.read_text())
    assert final["state"] == "stopped", final


# SIGTERM at each moment of start-up, for each way the trainer is started -----------------------

EXAMPLE = REPO / "examples" / "tiny-llm-lora.yaml"


def loaded(pid: int, library: str) -> bool:
    """Whether the process has mapped a shared library (so its import is under way or done)."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def torch_loaded(pid: int) -> bool:
    return loaded(pid, "libtorch")


def trainer_worker(launcher: int) -> int | None:
    """The pid of a ``-m trainer`` process below the launcher (torchrun's worker), if it exists yet."""
    import psutil

    try:
        for child in psutil.Process(launcher).children(recursive=True):
            if child.cmdline()[-2:] == ["-m", "trainer"]:
                return int(child.pid)
    except psutil.Error:
        return None
    return None


def stop_when(process: subprocess.Popen[bytes], ready: Any, what: str) -> tuple[int, str]:
    """Wait for ``ready()`` (an observable moment of the start-up), send SIGTERM, return the exit
    code and the output."""
    try:
        wait_for(lambda: process.poll() is not None or ready(), what, timeout=180)
        assert process.poll() is None, f"the process ended before {what}"
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read().decode() if process.stdout else ""
    return exit_code, output


def test_sigterm_to_python_m_trainer_while_pydantic_loads(tmp_path: Path) -> None:
    """The API types (pydantic) load before torch, for seconds on a busy node."""
    process, termination_log = start_trainer(tmp_path, "pydantic", free_port())
    exit_code, output = stop_when(process, lambda: loaded(process.pid, "pydantic_core"), "pydantic is loading")
    assert exit_code == 0, output
    assert json.loads(termination_log.read_text())["state"] == "stopped"


def test_sigterm_to_python_m_trainer_while_torch_loads(tmp_path: Path) -> None:
    process, termination_log = start_trainer(tmp_path, "torch", free_port())
    exit_code, output = stop_when(process, lambda: torch_loaded(process.pid), "torch is loading")
    assert exit_code == 0, output
    assert json.loads(termination_log.read_text())["state"] == "stopped"


def start_t1_train(tmp_path: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"TENSORONE_TERMINATION_LOG": str(tmp_path / "termination-log")}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "t1"), "train", str(EXAMPLE), "--output", str(tmp_path), "--no-report"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_sigterm_to_t1_train_while_its_verbs_load(tmp_path: Path) -> None:
    process = start_t1_train(tmp_path)

    def verbs_loading() -> bool:
        if not (catches(process.pid, signal.SIGTERM) or torch_loaded(process.pid)):
            return False
        assert not torch_loaded(process.pid), "t1 caught no SIGTERM before torch was loaded"
        return True

    exit_code, output = stop_when(process, verbs_loading, "t1's handler")
    assert exit_code == 0, output
    assert "stopped by SIGTERM" in output


def test_sigterm_to_t1_train_while_torch_loads(tmp_path: Path) -> None:
    process = start_t1_train(tmp_path)
    exit_code, output = stop_when(process, lambda: torch_loaded(process.pid), "torch is loading")
    assert exit_code == 0, output
    assert "state stopped" in output, output


def start_launcher(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    make_job(tmp_path, training=TRAINING).write(tmp_path / "job.yaml")
    termination_log = tmp_path / "termination-log"
    env = os.environ | {
        "TENSORONE_JOB_CONFIG": str(tmp_path / "job.yaml"),
        "TENSORONE_TERMINATION_LOG": str(termination_log),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer.launch", "--standalone", "--nproc-per-node=1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return process, termination_log


def test_sigterm_to_the_launcher_as_soon_as_it_can_hear_it(tmp_path: Path) -> None:
    process, termination_log = start_launcher(tmp_path)
    exit_code, output = stop_when(process, lambda: catches(process.pid, signal.SIGTERM), "the launcher's handler")
    # A pod's stop exits 143: the pod is recreated (a drain) unless its job stops (then nothing is).
    assert exit_code == ExitCode.TERMINATED, output
    assert json.loads(termination_log.read_text())["state"] == "stopped"


def test_sigint_to_the_launcher_exits_0(tmp_path: Path) -> None:
    """Ctrl-C at a terminal is a person's stop, not a pod's: it ends cleanly."""
    process, termination_log = start_launcher(tmp_path)
    try:
        # Python catches SIGINT from its start: the launcher's own handler is in place once its worker runs.
        wait_for(lambda: process.poll() is not None or trainer_worker(process.pid) is not None, "the worker")
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read().decode() if process.stdout else ""
    assert exit_code == 0, output
    assert json.loads(termination_log.read_text())["state"] == "stopped"


def test_sigterm_to_the_launcher_while_its_worker_loads_torch(tmp_path: Path) -> None:
    process, termination_log = start_launcher(tmp_path)

    def worker_loads_torch() -> bool:
        worker = trainer_worker(process.pid)
        return worker is not None and torch_loaded(worker)

    exit_code, output = stop_when(process, worker_loads_torch, "the worker loads torch")
    assert exit_code == ExitCode.TERMINATED, output[-3000:]
    assert json.loads(termination_log.read_text())["state"] == "stopped"
