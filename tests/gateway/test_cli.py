"""``t1`` through the gateway: ``$TENSORONE_BASE_URL`` sends it there, ``$TENSORONE_API_KEY`` is
the bearer key it sends (a Kubernetes credential the gateway passes on)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tensorone.cli import main
from tensorone.cli.exit_codes import NOT_ALLOWED, USAGE
from tests.factories import API, training_job
from tests.gateway.conftest import LLM_DATASET
from tests.gateway.process import ADMIN_TOKEN, GatewayProcess
from tests.kube.server import EmulatorServer


def test_t1_sends_the_api_key_from_the_environment(
    cluster: EmulatorServer,
    gateway: GatewayProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster.api.create(training_job("keyed"))
    monkeypatch.setenv("TENSORONE_BASE_URL", gateway.url)
    monkeypatch.setenv("TENSORONE_API_KEY", ADMIN_TOKEN)
    assert main(["list"]) == 0
    assert "keyed" in capsys.readouterr().out


def test_t1_without_a_key_is_refused_in_one_line_with_the_variable_in_the_hint(
    cluster: EmulatorServer,
    gateway: GatewayProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TENSORONE_BASE_URL", gateway.url)
    monkeypatch.delenv("TENSORONE_API_KEY", raising=False)
    assert main(["list"]) == NOT_ALLOWED
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("t1: UNAUTHENTICATED"), err
    assert "$TENSORONE_API_KEY" in err[1], err


def test_t1_create_from_a_manifest_through_the_gateway_keeps_every_field_or_refuses_it(
    cluster: EmulatorServer,
    gateway: GatewayProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TENSORONE_BASE_URL", gateway.url)
    monkeypatch.setenv("TENSORONE_API_KEY", ADMIN_TOKEN)
    manifest = tmp_path / "job.yaml"
    job = training_job("through-gateway", datasetId=LLM_DATASET, tags=["nightly"])
    manifest.write_text(yaml.safe_dump(job))
    assert main(["create", "-f", str(manifest)]) == 0
    assert capsys.readouterr().out == "trainingjob/through-gateway created\n"
    stored = cluster.api.get(API, "TrainingJob", "through-gateway")
    assert stored["spec"]["tags"] == ["nightly"] and stored["spec"]["config"] == job["spec"]["config"]

    # A field the REST create has no parameter for is refused by name, not dropped.
    held = training_job("held-back", datasetId=LLM_DATASET, suspend=True, labels={"kueue.x-k8s.io/queue-name": "q"})
    manifest.write_text(yaml.safe_dump(held))
    assert main(["create", "-f", str(manifest)]) == USAGE
    err = capsys.readouterr().err
    assert "the REST API's create takes no spec.suspend, metadata.labels" in err, err
    assert cluster.api.find(API, "TrainingJob", "held-back") is None


def test_t1_plot_through_the_gateway_draws_the_curves_of_the_jobs_details(
    cluster: EmulatorServer,
    gateway: GatewayProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster.api.create(training_job("curved", datasetId=LLM_DATASET))
    status = {
        "phase": "Running",
        "lossHistory": [{"step": step, "loss": 8.0 / step} for step in range(1, 9)],
        "evalLossHistory": [{"step": 4, "loss": 2.5}, {"step": 8, "loss": 2.0}],
    }
    cluster.api.patch_status(API, "TrainingJob", "curved", status)
    monkeypatch.setenv("TENSORONE_BASE_URL", gateway.url)
    monkeypatch.setenv("TENSORONE_API_KEY", ADMIN_TOKEN)
    assert main(["plot", "curved"]) == 0
    summary = capsys.readouterr().out.split("\njob curved (its status):\n")[1].splitlines()
    assert summary[:2] == [
        "  loss: 8 points, steps 1 to 8, 8 -> 1 (lowest 1 at step 8)",
        "  eval loss: 2 points, steps 4 to 8, 2.5 -> 2 (lowest 2 at step 8)",
    ]
