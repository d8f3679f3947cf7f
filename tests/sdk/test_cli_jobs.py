"""``t1`` job verbs end to end against the emulator, through a kubeconfig as a user would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tensorone.cli import main
from tests.kube.server import EmulatorServer

REPO = Path(__file__).resolve().parents[2]
API = "training.tensorone.ai/v1alpha1"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        yield server


def test_create_list_get_stop_cancel(cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "-f", str(REPO / "examples" / "llama-lora.yaml")]) == 0
    out = capsys.readouterr().out
    assert "trainingjob/" in out and "dataset/" in out
    name = next(line.split("/")[1].split()[0] for line in out.splitlines() if line.startswith("trainingjob/"))
    cluster.api.patch_status(
        API,
        "TrainingJob",
        name,
        {"phase": "Running", "progress": {"percentage": 12.5}, "metrics": {"currentLoss": 1.25}},
    )
    assert main(["list"]) == 0
    table = capsys.readouterr().out
    assert name in table and "running" in table and "12.5%" in table and "1.25" in table
    assert main(["get", name]) == 0
    assert "Status:     running" in capsys.readouterr().out
    assert main(["stop", name, "--reason", "lunch"]) == 0
    assert cluster.api.get(API, "TrainingJob", name)["spec"]["suspend"] is True
    assert main(["cancel", name]) == 0
    assert cluster.api.get(API, "TrainingJob", name)["spec"]["cancel"] is True


def test_errors_are_one_line_with_the_code(cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "missing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("t1: JOB_NOT_FOUND:") and "missing" in err
    assert main(["list", "--limit", "500"]) == 2
    assert "limit: must be between 1 and 100" in capsys.readouterr().err
