"""Experiment tracking with the real trackers: a tiny job reports to a real MLflow tracking server
(``mlflow server`` on loopback, SQLite), to TensorBoard event files (read back with TensorBoard's
own reader) and to Weights & Biases offline (read back with W&B's reader of its run files).

One job, three processes' worth of runs on the same checkpoint folder: stopped by a SIGTERM before
its first step ends (checkpoint ckpt-step-1), resumed to the end, then resumed again from an older
checkpoint (ckpt-step-4), as after a crash past the last checkpoint. Every tracker must hold one
run with every step once, with the values of the metrics log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.report import TrainerState
from tensorone.errors import ConfigurationError
from tests.kube.loopback import LOOPBACK, free_port
from tests.kube.polling import wait_for
from tests.trainer.conftest import REPO, log_events, make_job, step_losses
from tests.unimportable import run_without
from trainer.capabilities import refuse_unsupported
from trainer.run import RunOptions, RunResult, run
from trainer.signals import StopSignal
from trainer.tracking import TRACKING_STATE

# 24 records, 2 held out: 3 optimizer steps an epoch (gradient accumulation 2), 3 epochs = 9 steps;
# a checkpoint every 2 steps and at every epoch, an evaluation every 2 steps and at every epoch.
TRAINING: dict[str, Any] = {
    "epochs": 3,
    "gradientAccumulationSteps": 2,
    "evalSplit": 0.1,
    "evalSteps": 2,
    "checkpointSteps": 2,
    "keepCheckpoints": 100,
}
STEPS = list(range(1, 10))
SERVER_START_SECONDS = 90  # a cold `mlflow server` on two busy cores takes 5 to 20 s


@dataclass
class MlflowServer:
    """``mlflow server`` in its own process group, on a loopback port."""

    process: subprocess.Popen[bytes]
    uri: str
    log: Path

    def ready(self) -> str:
        """The tracking URI, once the server answers /health."""

        def healthy() -> bool:
            assert self.process.poll() is None, f"mlflow server exited: {self.log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(healthy, "mlflow server to answer /health", timeout=SERVER_START_SECONDS)
        return self.uri


@pytest.fixture(scope="module", autouse=True)
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Started with the module's first test, so it boots while the tests before the tracked job run."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = root / "server.log"
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--host", LOOPBACK, "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=root, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield MlflowServer(process, f"http://{LOOPBACK}:{port}", log)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the server and its uvicorn worker: nothing to keep
        process.wait(timeout=30)


def test_a_tracker_whose_library_is_missing_is_refused_before_training(tmp_path: Path) -> None:
    code = """
    from tensorone.api.resolved import ResolvedJob, with_defaults
    from tensorone.api.v1alpha1 import TrainingConfig
    from tensorone.errors import ConfigurationError
    from trainer.capabilities import refuse_unsupported

    trackers = {
        "mlflow": {"trackingUri": "http://127.0.0.1:1"},
        "tensorboard": {},
        "wandb": {"project": "p", "mode": "offline"},
    }
    for name, settings in trackers.items():
        config = {"baseModel": "models/tiny", "strategy": "lora", "tracking": {name: settings}}
        job = ResolvedJob(
            name="job",
            model_type="llm",
            config=with_defaults(TrainingConfig.model_validate(config)),
            dataset_name="data",
            dataset={"format": "jsonl", "source": {"inline": {"records": [{"text": "x"}]}}},
        )
        try:
            refuse_unsupported(job, cuda_available=False)
        except ConfigurationError as error:
            print(error.field, "|", error.message)
    """
    done = run_without(["mlflow", "tensorboardX", "wandb"], code, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "config.tracking.mlflow",
        "config.tracking.tensorboard",
        "config.tracking.wandb",
    ]
    assert "needs the mlflow-skinny package" in lines[0] and "tensorone-training[tracking]" in lines[0]
    assert "needs the tensorboardX package" in lines[1]
    # Here, with the libraries installed, the same job passes.
    job = make_job(tmp_path, config_extra={"tracking": {"tensorboard": {}}})
    refuse_unsupported(job, cuda_available=False)


def test_an_unreachable_tracker_fails_the_start_with_its_field_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    tracking = {"mlflow": {"trackingUri": f"http://{LOOPBACK}:{free_port()}"}}
    result = run(make_job(tmp_path, config_extra={"tracking": tracking}), RunOptions(serve_reports=False))
    assert result.exit_code == 138, "a tracking server may come back: the pod is restarted"
    assert result.report is not None and result.report.reason == "TrackerUnavailable"
    assert result.report.message is not None and "config.tracking.mlflow: cannot open the run" in result.report.message
    assert not (tmp_path / "checkpoints" / "ckpt-epoch-1").exists(), "nothing was trained"


def test_refusal_names_the_field_without_a_subprocess_for_bad_settings(tmp_path: Path) -> None:
    job = make_job(tmp_path, config_extra={"tracking": {"wandb": {"project": "p"}}})
    with pytest.raises(ConfigurationError) as refused:
        refuse_unsupported(job, cuda_available=False)
    assert refused.value.field == "config.tracking.wandb.apiKeySecret"


@pytest.fixture(scope="module")
def tracked(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The job run three times on one checkpoint folder, tracked by all three trackers."""
    root = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as patch:
        # W&B's own settings and caches in the test's folder, not the home directory.
        for name, folder in (("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_CACHE_DIR", "wandb-cache")):
            patch.setenv(name, str(root / folder))
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("TENSORONE_TERMINATION_LOG", str(root / "termination-log"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        tracking = {
            "runName": "tiny-tracked",
            "mlflow": {"trackingUri": mlflow_server.ready(), "experiment": "tiny", "logCheckpoints": True},
            "tensorboard": {},
            "wandb": {"project": "tiny", "mode": "offline", "logCheckpoints": True},
        }

        def train(resume_from: str | None = None, stop: StopSignal | None = None) -> RunResult:
            job = make_job(root, training=TRAINING, config_extra={"tracking": tracking}, resume_from=resume_from)
            return run(job, RunOptions(serve_reports=False), stop=stop)

        # A SIGTERM that arrived while the first step ran: the step ends, a checkpoint is saved.
        stopped = StopSignal()
        stopped.signal_name = "SIGTERM"
        result = train(stop=stopped)
        assert result.exit_code == 0 and result.report is not None
        assert (result.report.state, result.report.step) == (TrainerState.stopped, 1)
        assert train().report.state == TrainerState.completed  # type: ignore[union-attr]
        assert train(resume_from="ckpt-step-4").report.state == TrainerState.completed  # type: ignore[union-attr]
    yield root


def test_the_runs_ids_are_kept_beside_the_checkpoints(tracked: Path) -> None:
    state = json.loads((tracked / "checkpoints" / TRACKING_STATE).read_text())
    assert state["job"] == {"namespace": "default", "name": "test-job", "uid": None}
    assert set(state["runs"]) == {"mlflow", "tensorboard", "wandb"}
    # Three processes started, and every step was redone once at most: the log says so.
    starts = log_events(tracked / "checkpoints", "start")
    assert [s["resumedFrom"] for s in starts] == [None, "ckpt-step-1", "ckpt-step-4"]
    assert not log_events(tracked / "checkpoints", "trackingFailed")


def test_mlflow_holds_one_run_with_every_step_once_params_and_checkpoints(
    tracked: Path, mlflow_server: MlflowServer
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "a stop and two resumes continue one run"
    run = runs[0]
    assert (
        run.info.run_id == json.loads((tracked / "checkpoints" / TRACKING_STATE).read_text())["runs"]["mlflow"]["runId"]
    )
    assert (run.info.run_name, run.info.status) == ("tiny-tracked", "FINISHED")
    assert run.data.tags["tensorone.job"] == "test-job"

    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == STEPS, "each step logged once"
    expected = step_losses(tracked / "checkpoints")
    assert {m.step: m.value for m in history} == pytest.approx(expected, rel=1e-12)
    for key in ("train/learningRate", "train/epoch", "train/tokensPerSecond"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == STEPS, key
    evaluations = client.get_metric_history(run.info.run_id, "eval/loss")
    expected_eval = {e["step"]: e["evalLoss"] for e in log_events(tracked / "checkpoints", "eval")}
    assert sorted(m.step for m in evaluations) == sorted(expected_eval)
    assert {m.step: m.value for m in evaluations} == pytest.approx(expected_eval, rel=1e-12)

    params = run.data.params
    assert params["training.learningRate"] == "0.01"
    assert params["parameters.targetModules"] == "q_proj,v_proj"
    assert params["strategy"] == "lora" and params["totalSteps"] == "9"
    assert "tracking.mlflow.trackingUri" not in params

    uploaded = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert {"checkpoints/ckpt-step-1", "checkpoints/ckpt-step-4", "checkpoints/ckpt-epoch-3"} <= uploaded
    files = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints/ckpt-epoch-3/model")}
    assert "checkpoints/ckpt-epoch-3/model/adapter_model.safetensors" in files


def test_tensorboard_event_files_hold_every_step_once_and_the_hyperparameters(tracked: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    folders = [p for p in (tracked / "checkpoints" / "tensorboard").iterdir() if p.is_dir()]
    assert [p.name[: -len("-12345678")] for p in folders] == ["tiny-tracked"], "one run folder"
    assert len(list(folders[0].glob("events.out.tfevents.*"))) == 3, "one event file per process"
    events = EventAccumulator(str(folders[0]), size_guidance={"scalars": 0})
    events.Reload()
    losses = events.Scalars("train/loss")
    assert Counter(e.step for e in losses) == Counter(STEPS), "each step shown once"
    assert {e.step: e.value for e in losses} == pytest.approx(step_losses(tracked / "checkpoints"), rel=1e-6)
    assert [e.step for e in events.Scalars("eval/loss")] == sorted(
        {e["step"] for e in log_events(tracked / "checkpoints", "eval")}
    )
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    )
    assert start.session_start_info.hparams["training.learningRate"].number_value == 0.01
    assert start.session_start_info.hparams["baseModel"].string_value.endswith("tiny-llama")


def wandb_records(folder: Path) -> list[dict[str, Any]]:
    """The records of an offline run's transaction log, as W&B's reader prints them."""
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_wandb_offline_files_are_one_run_with_every_step_once_and_checkpoint_artifacts(tracked: Path) -> None:
    run_id = json.loads((tracked / "checkpoints" / TRACKING_STATE).read_text())["runs"]["wandb"]["runId"]
    folders = sorted((tracked / "checkpoints" / "wandb").glob("offline-run-*"))
    assert [p.name.rsplit("-", 1)[1] for p in folders] == [run_id] * 3, "three processes, one run id"

    steps: Counter[int] = Counter()
    losses: dict[int, float] = {}
    aliases: set[str] = set()
    for number, folder in enumerate(folders):
        records = wandb_records(folder)
        header = next(r["run"] for r in records if r["type"] == "run")
        assert (header["run_id"], header["project"], header["display_name"]) == (run_id, "tiny", "tiny-tracked")
        if number == 0:
            assert header["config"]["update"]["training.learningRate"] == 0.01
        for record in records:
            if record["type"] == "history" and "train/loss" in record["history"]["item"]:
                step = int(record["history"]["step"]["num"])
                steps[step] += 1
                losses[step] = record["history"]["item"]["train/loss"]
            elif record["type"] == "artifact":
                aliases.update(record["artifact"]["aliases"])
    assert steps == Counter(STEPS), "each step in one folder only"
    assert losses == pytest.approx(step_losses(tracked / "checkpoints"), rel=1e-12)
    assert {"ckpt-step-1", "ckpt-step-4", "ckpt-epoch-3", "latest"} <= aliases
    # Offline artifacts are staged on the checkpoint folder, where `wandb sync` finds them later.
    assert any((tracked / "checkpoints" / "wandb" / "data").rglob("*"))
