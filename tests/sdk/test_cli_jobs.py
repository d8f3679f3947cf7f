"""``t1`` job verbs end to end against the emulator, through a kubeconfig as a user would."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tensorone.cli import main
from tensorone.cli.exit_codes import NOT_FOUND, UNREACHABLE, USAGE
from tests.factories import gpu_node
from tests.kube.loopback import NOT_AN_OBJECT, SIGN_IN_PAGE, answering_server, free_port
from tests.kube.server import EmulatorServer

REPO = Path(__file__).resolve().parents[2]
API = "training.tensorone.ai/v1alpha1"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        server.api.create(gpu_node())
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
    assert main(["get", "missing"]) == NOT_FOUND
    err = capsys.readouterr().err
    assert err.startswith("t1: JOB_NOT_FOUND:") and "missing" in err
    assert err.splitlines()[1].startswith("t1: hint: t1 list")
    assert main(["list", "--limit", "500"]) == USAGE
    assert "limit: must be between 1 and 100" in capsys.readouterr().err


def test_create_again_leaves_an_unchanged_dataset(cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = REPO / "examples" / "llama-lora.yaml"
    assert main(["create", "-f", str(manifest)]) == 0
    capsys.readouterr()
    assert main(["create", "-f", str(manifest)]) == 4
    out, err = capsys.readouterr()
    assert "unchanged" in out and "ALREADY_EXISTS" in err


def test_delete_says_gone_or_terminating(cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "-f", str(REPO / "examples" / "llama-lora.yaml")]) == 0
    name = next(
        line.split("/")[1].split()[0] for line in capsys.readouterr().out.splitlines() if "trainingjob/" in line
    )
    cluster.api.patch(API, "TrainingJob", name, {"metadata": {"finalizers": ["training.tensorone.ai/finalizer"]}})
    assert main(["delete", name]) == 0
    assert "terminating" in capsys.readouterr().out
    cluster.api.patch(API, "TrainingJob", name, {"metadata": {"finalizers": None}})
    assert main(["delete", name, "--wait", "5"]) == 3  # gone already: not found
    assert main(["list", "-o", "json"]) == 0
    assert capsys.readouterr().out


def test_list_json_has_rfc3339_times(cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "-f", str(REPO / "examples" / "llama-lora.yaml")]) == 0
    capsys.readouterr()
    assert main(["list", "-o", "json"]) == 0
    created = json.loads(capsys.readouterr().out)["jobs"][0]["createdAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created), created


def kubeconfig_at(path: Path, server: str) -> Path:
    """A kubeconfig whose one context points at ``server``."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "c", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "c"}}],
                "current-context": "c",
            }
        )
    )
    return path


def test_an_unreachable_cluster_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig_at(tmp_path / "down", f"http://127.0.0.1:{free_port()}")))
    assert main(["list"]) == UNREACHABLE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("t1: CONNECTION_ERROR: cannot reach the Kubernetes API")
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("answer", [SIGN_IN_PAGE, NOT_AN_OBJECT], ids=["web-page", "json-of-no-object"])
@pytest.mark.parametrize("verb", [["list"], ["get", "llama"]])
def test_a_server_that_is_no_api_server_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: tuple[str, bytes],
    verb: list[str],
) -> None:
    with answering_server(answer) as url:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig_at(tmp_path / "proxy", url)))
        assert main(verb) == UNREACHABLE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("t1: CONNECTION_ERROR: cannot reach the Kubernetes API at http://127.0.0.1:"), err
    assert "is this the API server's address?" in err[0], err


def test_a_closed_pipe_ends_quietly(cluster: EmulatorServer, tmp_path: Path) -> None:
    assert main(["create", "-f", str(REPO / "examples" / "llama-lora.yaml")]) == 0
    script = "import sys; from tensorone.cli import main; sys.exit(main(['list']))"
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    writer = subprocess.run(
        [sys.executable, "-c", script],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait()
    assert "Traceback" not in writer.stderr and "BrokenPipe" not in writer.stderr


def test_create_puts_each_object_in_its_manifests_namespace_and_refuses_a_contrary_option(
    cluster: EmulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = list(yaml.safe_load_all((REPO / "examples" / "llama-lora.yaml").read_text()))
    for document in documents:
        document["metadata"]["namespace"] = "team-a"
    manifest = tmp_path / "team-a.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    assert main(["create", "-f", str(manifest), "-n", "team-b"]) == USAGE
    err = capsys.readouterr().err
    assert "metadata.namespace" in err and "'team-a'" in err and "'team-b'" in err, err
    assert cluster.api.list(API, "Dataset", "team-a") == [] and cluster.api.list(API, "TrainingJob", "team-a") == []

    assert main(["create", "-f", str(manifest)]) == 0
    capsys.readouterr()
    for document in documents:
        assert cluster.api.find(API, document["kind"], document["metadata"]["name"], "team-a") is not None
        assert cluster.api.find(API, document["kind"], document["metadata"]["name"], "default") is None
