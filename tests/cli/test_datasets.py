"""``t1 datasets list|get|create|delete`` against the emulator with the real operator (which marks
a Dataset Ready and counts its inline records): the job verbs' behaviour, one-line errors with
their exit statuses, ``-o`` formats, and a delete that says deleted or terminating."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tensorone.cli import main
from tensorone.cli.exit_codes import NOT_FOUND, REFUSED, USAGE
from tests.cli.terminal import T1
from tests.factories import API
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import condition
from tests.operator.runner import OperatorThread


def run(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0) -> str:
    assert main(list(argv)) == status, capsys.readouterr()
    return capsys.readouterr().out


def ready(cluster: EmulatorServer, name: str) -> bool:
    stored = cluster.api.get(API, "Dataset", name)
    assert condition(stored.get("status") or {}, "Ready").get("status") == "True", stored.get("status")
    return True


def test_create_list_get_and_delete(
    cluster: EmulatorServer, operator: OperatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = tmp_path / "chat.jsonl"
    records.write_text('{"text": "hello"}\n{"text": "world"}\n')
    argv = ["datasets", "create", "chat", "--format", "jsonl", "--records", str(records), "--description", "greetings"]
    assert run(capsys, *argv) == "dataset/chat created\n"
    assert run(capsys, *argv) == "dataset/chat unchanged\n"  # as kubectl apply: the same spec again
    manifest = tmp_path / "datasets.yaml"
    manifest.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": API,
                    "kind": "Dataset",
                    "metadata": {"name": "web"},
                    "spec": {"format": "csv", "source": {"uri": "https://example.com/data.csv"}},
                }
            ]
        )
    )
    assert run(capsys, "datasets", "create", "-f", str(manifest)) == "dataset/web created\n"
    wait_for(lambda: ready(cluster, "chat"), "the operator to find chat Ready")

    table = run(capsys, "datasets", "list").splitlines()
    assert table[0].split() == ["NAME", "FORMAT", "SOURCE", "RECORDS", "READY", "CREATED"]
    assert table[1].split()[:5] == ["chat", "jsonl", "inline", "2", "True"]
    assert table[2].split()[:3] == ["web", "csv", "https://example.com/data.csv"]
    assert run(capsys, "datasets", "list", "-o", "wide").splitlines()[1].split()[-1] == "greetings"
    listed = json.loads(run(capsys, "datasets", "list", "-o", "json"))["datasets"]
    assert [d["metadata"]["name"] for d in listed] == ["chat", "web"]

    text = run(capsys, "datasets", "get", "chat")
    assert "Format:      jsonl" in text and "Records:     2" in text and "Ready:       True (" in text
    assert text.splitlines()[5].split()[-1].endswith("Z")  # Created, in RFC 3339
    document = yaml.safe_load(run(capsys, "datasets", "get", "chat", "-o", "yaml"))
    assert document["kind"] == "Dataset" and document["spec"]["source"]["inline"]["records"][1] == {"text": "world"}

    assert run(capsys, "datasets", "delete", "web") == "dataset/web deleted\n"
    run(capsys, "datasets", "get", "web", status=NOT_FOUND)


def test_delete_says_terminating_and_waits(
    cluster: EmulatorServer, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "datasets", "create", "held", "--format", "csv", "--uri", "s3://bucket/data.csv")
    cluster.api.patch(API, "Dataset", "held", {"metadata": {"finalizers": ["example.com/keep"]}})
    assert "terminating: finalizers hold it" in run(capsys, "datasets", "delete", "held")
    run(capsys, "datasets", "create", "waited", "--format", "csv", "--uri", "s3://bucket/data.csv")
    cluster.api.patch(API, "Dataset", "waited", {"metadata": {"finalizers": ["example.com/keep"]}})
    with T1(["datasets", "delete", "waited", "--wait", "60"], kubeconfig, tty=False) as t1:
        # Once t1 has deleted it, it waits for the finalizer to go.
        wait_for(lambda: cluster.api.get(API, "Dataset", "waited")["metadata"].get("deletionTimestamp"))
        cluster.api.patch(API, "Dataset", "waited", {"metadata": {"finalizers": None}})
        assert t1.wait() == 0, t1.stderr
    assert t1.text() == "dataset/waited deleted\n"


def test_errors_are_one_line_with_a_hint(
    cluster: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datasets", "delete", "missing"]) == NOT_FOUND
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "t1: DATASET_NOT_FOUND: dataset 'missing' not found in namespace 'default'"
    assert err[1].startswith("t1: hint: t1 datasets list shows this namespace's Datasets")
    assert main(["datasets", "create", "bad", "--format", "csv", "--uri", "ftp://x"]) == USAGE
    assert "spec.source.uri" in capsys.readouterr().err
    assert main(["datasets", "create", "chat", "--format", "jsonl"]) == USAGE
    assert "one of --uri, --hugging-face, --pvc or --records" in capsys.readouterr().err
    run(capsys, "datasets", "create", "chat", "--format", "csv", "--uri", "s3://bucket/a.csv")
    assert main(["datasets", "create", "chat", "--format", "csv", "--uri", "s3://bucket/b.csv"]) == REFUSED
    assert "ALREADY_EXISTS" in capsys.readouterr().err
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"apiVersion": API, "kind": "TrainingJob", "metadata": {"name": "j"}}))
    assert main(["datasets", "create", "-f", str(job)]) == USAGE
    assert "kind: must be Dataset, got 'TrainingJob'" in capsys.readouterr().err
    monkeypatch.setenv("TENSORONE_BASE_URL", "http://127.0.0.1:9")
    assert main(["datasets", "list"]) == USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("t1: CONFIGURATION_ERROR: TENSORONE_BASE_URL: t1 datasets list needs the Kubernetes API")
    assert err[1].startswith("t1: hint: unset TENSORONE_BASE_URL")
