"""``t1 download`` end to end: the real trainer trains and exports to a real S3-compatible server
(moto's, on loopback), its report becomes the TrainingJob's status as the operator writes it (in
the Kubernetes API emulator), and ``t1`` downloads the final model and a checkpoint from the export
with this machine's credentials, byte for byte, refusing a file that changed in the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tensorone_operator.live_status import live_fields

from tensorone.api.v1alpha1.trainingjob import OutputExport
from tensorone.cli import main
from tensorone.cli.exit_codes import REFUSED, STORE, USAGE
from tests.factories import training_job
from tests.kube.server import EmulatorServer
from tests.s3_server import ACCESS_KEY_ID, BUCKET, SECRET_ACCESS_KEY, S3Server, s3_server
from tests.trainer.conftest import make_job
from trainer.run import RunOptions, run

API = "training.tensorone.ai/v1alpha1"


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, Path, dict[str, Any]]]:
    """A tiny job trained and exported with its checkpoints: the server, the run's folder, and the
    status the operator writes from the trainer's last report."""
    root = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as env, s3_server() as server:
        env.setenv("TENSORONE_OUTPUT_ACCESS_KEY_ID", ACCESS_KEY_ID)
        env.setenv("TENSORONE_OUTPUT_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        env.setenv("TENSORONE_TERMINATION_LOG", str(root / "termination-log"))
        job = make_job(root, training={"maxSteps": 2, "checkpointSteps": 1, "checkpointEveryEpoch": False})
        output = {"uri": f"s3://{BUCKET}/team-a", "endpointUrl": server.endpoint_url, "checkpoints": True}
        job = job.model_copy(update={"name": "llama", "output": OutputExport.model_validate(output)})
        result = run(job, RunOptions(serve_reports=False))
        assert result.report is not None and result.report.export is not None
        assert result.report.export.state == "exported", result.report.export.message
        status = {"phase": "Completed", **live_fields(result.report, now=datetime.now(UTC), running_seconds=1)}
        yield server, root, {"spec": {"output": output}, "status": status}


@pytest.fixture
def cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exported_run: tuple[S3Server, Path, dict[str, Any]]
) -> Iterator[EmulatorServer]:
    _, _, job = exported_run
    # This machine's own credentials for the store, as the AWS tools read them.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    with EmulatorServer() as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        server.api.create(training_job("llama", output=job["spec"]["output"]))
        server.api.patch_status(API, "TrainingJob", "llama", job["status"])
        server.api.create(training_job("local-only"))
        local = {k: v for k, v in job["status"]["output"].items() if k not in ("exportUri", "exportedCheckpoints")}
        server.api.patch_status(API, "TrainingJob", "local-only", {"phase": "Completed", "output": local})
        yield server


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_the_final_model_and_a_checkpoint_come_back_byte_for_byte(
    cluster: EmulatorServer,
    exported_run: tuple[S3Server, Path, dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, root, _ = exported_run
    assert main(["download", "llama", "-o", str(tmp_path / "model")]) == 0
    assert files_of(tmp_path / "model") == files_of(root / "output")
    assert "(SHA-256 checked)" in capsys.readouterr().out

    assert main(["download", "llama", "--checkpoint", "ckpt-step-1", "-o", str(tmp_path / "ckpt")]) == 0
    assert files_of(tmp_path / "ckpt") == files_of(root / "checkpoints" / "ckpt-step-1")

    assert main(["download", "llama", "-o", str(tmp_path / "model")]) == USAGE  # not empty
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_a_file_changed_in_the_store_is_refused_and_not_left_behind(
    cluster: EmulatorServer,
    exported_run: tuple[S3Server, Path, dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, root, _ = exported_run
    key = "team-a/llama/checkpoints/ckpt-step-2/model/adapter_model.safetensors"
    original = (root / "checkpoints" / "ckpt-step-2" / "model" / "adapter_model.safetensors").read_bytes()
    server.client().put_object(Bucket=BUCKET, Key=key, Body=bytes(reversed(original)))
    try:
        code = main(["download", "llama", "--checkpoint", "ckpt-step-2", "-o", str(tmp_path / "ckpt")])
    finally:
        server.client().put_object(Bucket=BUCKET, Key=key, Body=original)
    assert code == STORE
    err = capsys.readouterr().err
    assert err.startswith("t1: DIGEST_MISMATCH:") and key in err
    assert not (tmp_path / "ckpt" / "model" / "adapter_model.safetensors").exists()
    assert not [p for p in (tmp_path / "ckpt").rglob("*.part")]


def test_a_job_without_an_export_names_the_claim_that_holds_its_model(
    cluster: EmulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["download", "local-only", "-o", str(tmp_path / "model")]) == REFUSED
    err = capsys.readouterr().err
    assert "INVALID_JOB_STATE" in err and "it has no spec.output" in err
    assert "on the checkpoint claim local-only-checkpoints, under output/" in err
    assert main(["download", "llama", "--checkpoint", "ckpt-step-9", "-o", str(tmp_path / "x")]) == 3
    assert "has no checkpoint 'ckpt-step-9'" in capsys.readouterr().err
