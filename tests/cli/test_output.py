"""``-o json|yaml|wide`` on the verbs that show a job or its lists (get, events, checkpoints), with
the status written as the operator would (the operator is not the point here); times in RFC 3339."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tensorone.cli import main
from tests.factories import API, dataset, training_job
from tests.kube.server import EmulatorServer

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
STATUS = {
    "phase": "Running",
    "message": "training is running",
    "conditions": [
        {
            "type": "Running",
            "status": "True",
            "reason": "PyTorchJobRunning",
            "message": "the pods run",
            "lastTransitionTime": "2026-01-15T12:00:00Z",
        }
    ],
    "metrics": {"currentLoss": 1.25, "learningRate": 0.0002},
    "lossHistory": [{"step": 1, "loss": 3.0}, {"step": 10, "loss": 1.25}],
    "checkpoints": [
        {
            "id": "ckpt-epoch-1",
            "epoch": 1,
            "step": 10,
            "loss": 1.25,
            "createdAt": "2026-01-15T12:00:10Z",
            "size": "1.0MB",
            "reason": "epoch",
        }
    ],
}
EVENT = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {"name": "llama.1"},
    "involvedObject": {"kind": "TrainingJob", "name": "llama", "namespace": "default"},
    "type": "Normal",
    "reason": "CheckpointSaved",
    "message": "checkpoint ckpt-epoch-1 saved",
    "firstTimestamp": "2026-01-15T12:00:10Z",
    "lastTimestamp": "2026-01-15T12:00:20Z",
    "count": 2,
}


@pytest.fixture
def job(cluster: EmulatorServer) -> Iterator[str]:
    cluster.api.create(dataset())
    cluster.api.create(training_job())
    cluster.api.patch_status(API, "TrainingJob", "llama", STATUS)
    cluster.api.create(EVENT)
    yield "llama"


def output(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_get(job: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = output(capsys, "get", job)
    assert "Status:     running - training is running" in text and "Conditions:" not in text
    wide = output(capsys, "get", job, "-o", "wide")
    assert wide.startswith(text.split("Checkpoints:")[0].rstrip())  # the default view, then more
    assert "Loss curve: █▁  3 -> 1.25, steps 1-10" in wide
    assert re.search(r"Running +True +PyTorchJobRunning +2026-01-15T12:00:00Z +the pods run", wide)
    assert "ckpt-epoch-1" in wide and "epoch  2026-01-15T12:00:10Z" in wide
    assert json.loads(output(capsys, "get", job, "-o", "json"))["status"]["phase"] == "Running"
    document = yaml.safe_load(output(capsys, "get", job, "-o", "yaml"))
    assert document["kind"] == "TrainingJob" and RFC3339.fullmatch(document["metadata"]["creationTimestamp"])


def test_events(job: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert output(capsys, "events", job).splitlines()[0].split() == [
        "LAST",
        "SEEN",
        "TYPE",
        "REASON",
        "COUNT",
        "MESSAGE",
    ]
    wide = output(capsys, "events", job, "-o", "wide").splitlines()
    assert wide[0].split()[:4] == ["LAST", "SEEN", "FIRST", "SEEN"]
    assert wide[1].split()[:2] == ["2026-01-15T12:00:20Z", "2026-01-15T12:00:10Z"]
    expected = {
        "type": "Normal",
        "reason": "CheckpointSaved",
        "message": "checkpoint ckpt-epoch-1 saved",
        "count": 2,
        "firstSeen": "2026-01-15T12:00:10Z",
        "lastSeen": "2026-01-15T12:00:20Z",
    }
    assert json.loads(output(capsys, "events", job, "-o", "json")) == {"events": [expected]}
    assert yaml.safe_load(output(capsys, "events", job, "-o", "yaml")) == {"events": [expected]}


def test_checkpoints(job: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "REASON" not in output(capsys, "checkpoints", job)
    wide = output(capsys, "checkpoints", job, "-o", "wide").splitlines()
    assert wide[0].split()[-1] == "REASON" and wide[1].split()[-1] == "epoch"
    [checkpoint] = json.loads(output(capsys, "checkpoints", job, "-o", "json"))["checkpoints"]
    assert checkpoint["id"] == "ckpt-epoch-1" and checkpoint["createdAt"] == "2026-01-15T12:00:10Z"
    assert yaml.safe_load(output(capsys, "checkpoints", job, "-o", "yaml"))["checkpoints"] == [checkpoint]


def test_the_verbs_that_change_something_print_names_or_the_objects_as_they_now_are(
    cluster: EmulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump_all([dataset(namespace=None), training_job(namespace=None)]))
    assert output(capsys, "create", "-f", str(manifest), "-o", "name") == "dataset/chat\ntrainingjob/llama\n"
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(yaml.safe_dump_all([dataset(namespace=None), dataset("web", namespace=None)]))
    created = json.loads(output(capsys, "create", "-f", str(datasets), "-o", "json"))  # chat is left unchanged
    assert created["kind"] == "List" and [item["metadata"]["name"] for item in created["items"]] == ["chat", "web"]
    one = yaml.safe_load(output(capsys, "datasets", "create", "-f", str(datasets), "-o", "yaml"))
    assert one["kind"] == "List" and one["items"][1]["spec"]["format"] == "jsonl"
    stopped = yaml.safe_load(output(capsys, "stop", "llama", "-o", "yaml"))
    assert stopped["kind"] == "TrainingJob" and stopped["spec"]["suspend"] is True
    cluster.api.patch_status(API, "TrainingJob", "llama", {**STATUS, "phase": "Stopped"})
    resumed = json.loads(output(capsys, "resume", "llama", "--checkpoint", "ckpt-epoch-1", "-o", "json"))
    assert resumed["spec"]["suspend"] is False and resumed["spec"]["resumeFrom"] == "ckpt-epoch-1"
    assert output(capsys, "cancel", "llama", "-o", "name") == "trainingjob/llama\n"
    assert output(capsys, "delete", "llama", "-o", "name") == "trainingjob/llama\n"
    assert output(capsys, "datasets", "delete", "chat", "-o", "name") == "dataset/chat\n"
    with pytest.raises(SystemExit):
        main(["delete", "llama", "-o", "json"])  # nothing is left to print
