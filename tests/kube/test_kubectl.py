"""The real kubectl against the emulator: ``get`` prints the CRD's columns from the server's
Table, ``-o yaml`` round-trips the status, ``describe`` and ``events`` find the job's Events, ``logs`` reads a pod's log.

kubectl is not a Python dependency: without it on PATH these tests are skipped (CI may lack it).
"""

from __future__ import annotations

import datetime
import re
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import factories
from tests.kube.kubectl import KUBECTL, Kubectl, KubectlFailed
from tests.kube.server import EmulatorServer

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")

API = "training.tensorone.ai/v1alpha1"
STATUS: dict[str, Any] = {
    "phase": "Running",
    "progress": {"currentStep": 55, "totalSteps": 120, "currentEpoch": 2, "totalEpochs": 4, "percentage": 45.8},
    "metrics": {"currentLoss": 1.2345, "bestLoss": 1.2001, "learningRate": 0.0002},
    "checkpoints": [{"id": "ckpt-epoch-1", "step": 30, "epoch": 1, "reason": "epoch"}],
}


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    with EmulatorServer() as server:
        server.api.create(
            {
                "apiVersion": API,
                "kind": "TrainingJob",
                "metadata": {"name": "llama-chat", "namespace": "default"},
                "spec": {
                    "modelType": "llm",
                    "datasetId": "chat",
                    "gpuType": "a100",
                    "gpusPerWorker": 1,
                    "maxWorkers": 2,
                    "config": {"baseModel": "tiny", "strategy": "lora"},
                },
            }
        )
        job = server.api.patch_status(API, "TrainingJob", "llama-chat", STATUS)
        server.api.create(
            {
                "apiVersion": API,
                "kind": "TrainingJob",
                "metadata": {"name": "queued", "namespace": "default"},
                "spec": {"modelType": "llm", "datasetId": "chat", "config": {"baseModel": "tiny", "strategy": "lora"}},
            }
        )
        # An Event as kopf posts it for the operator.
        now = datetime.datetime.now(datetime.UTC).isoformat()
        server.api.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": "kopf-event-", "namespace": "default"},
                "type": "Normal",
                "reason": "CheckpointSaved",
                "message": "Saved ckpt-epoch-1 at step 30.",
                "source": {"component": "tensorone-operator"},
                "reportingComponent": "tensorone-operator",
                "involvedObject": {
                    "apiVersion": API,
                    "kind": "TrainingJob",
                    "name": "llama-chat",
                    "namespace": "default",
                    "uid": job["metadata"]["uid"],
                },
                "firstTimestamp": now,
                "lastTimestamp": now,
                "eventTime": now,
            }
        )
        yield Kubectl(server, tmp_path_factory.mktemp("kubectl"))


def quiet(kubectl: Kubectl, *args: str) -> str:
    """What kubectl prints, checking it warned of nothing (an ambiguous short name, say)."""
    done = kubectl.run(*args)
    assert "Warning" not in done.stderr, done.stderr
    return done.stdout


def table(text: str) -> list[dict[str, str]]:
    """kubectl's columns by header position (an empty cell stays empty; a header may have a
    space in it, columns are at least three spaces apart)."""
    header, *lines = text.rstrip("\n").split("\n")
    found = list(re.finditer(r"\S+(?: \S+)*", header))
    starts = [match.start() for match in found]
    bounds = [*starts[1:], None]
    return [
        {match.group(): line[start:end].strip() for match, start, end in zip(found, starts, bounds, strict=True)}
        for line in lines
    ]


def test_get_prints_the_crd_columns_with_the_live_values(kubectl: Kubectl) -> None:
    rows = table(quiet(kubectl, "get", "tj"))
    assert list(rows[0]) == ["NAME", "PHASE", "MODEL", "GPU", "WORKERS", "PROGRESS", "LOSS", "AGE"]
    running = next(row for row in rows if row["NAME"] == "llama-chat")
    assert {key: running[key] for key in ("PHASE", "MODEL", "GPU", "WORKERS", "PROGRESS", "LOSS")} == {
        "PHASE": "Running",
        "MODEL": "llm",
        "GPU": "a100",
        "WORKERS": "2",
        "PROGRESS": "45.8",
        "LOSS": "1.2345",
    }
    assert re.fullmatch(r"\d+s", running["AGE"]), running["AGE"]
    # A job without a status yet: the status columns are empty, the defaulted spec is shown.
    queued = next(row for row in rows if row["NAME"] == "queued")
    assert (queued["PHASE"], queued["GPU"], queued["WORKERS"], queued["LOSS"]) == ("", "", "1", "")


def test_the_full_name_and_the_category_reach_the_same_resource(kubectl: Kubectl) -> None:
    names = {row["NAME"] for row in table(kubectl("get", "trainingjobs.training.tensorone.ai"))}
    assert names == {"llama-chat", "queued"}
    # A category lists every kind in it, named with their kind.
    categorised = {row["NAME"] for row in table(kubectl("get", "tensorone"))}
    assert {"trainingjob.training.tensorone.ai/llama-chat", "trainingjob.training.tensorone.ai/queued"} <= categorised
    (one,) = table(kubectl("get", "tj", "llama-chat"))
    assert one["PHASE"] == "Running"
    crds = table(kubectl("get", "crd"))
    assert list(crds[0]) == ["NAME", "CREATED AT"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["CREATED AT"]) for row in crds), crds
    assert {row["NAME"] for row in crds} == {"trainingjobs.training.tensorone.ai", "datasets.training.tensorone.ai"}


def test_yaml_output_round_trips_the_status(kubectl: Kubectl) -> None:
    job = yaml.safe_load(kubectl("get", "tj", "llama-chat", "-o", "yaml"))
    assert job["kind"] == "TrainingJob" and job["status"] == STATUS
    assert job["spec"]["maxWorkers"] == 2 and job["metadata"]["generation"] == 1


def test_describe_and_events_show_the_jobs_events(kubectl: Kubectl) -> None:
    described = kubectl("describe", "tj", "llama-chat")
    assert "Phase:" in described and "Running" in described
    events_part = described.split("Events:")[-1]
    assert "CheckpointSaved" in events_part and "Saved ckpt-epoch-1 at step 30." in events_part
    listed = kubectl("events", "--for", "trainingjob/llama-chat")
    (event,) = table(listed)
    assert (event["TYPE"], event["REASON"], event["OBJECT"]) == ("Normal", "CheckpointSaved", "TrainingJob/llama-chat")


def test_a_watch_prints_each_change_as_a_row_without_repeating_the_header(kubectl: Kubectl) -> None:
    # Its own namespace: the other tests see the same emulator, in any order.
    kubectl.server.api.create(
        {
            "apiVersion": API,
            "kind": "TrainingJob",
            "metadata": {"name": "watched", "namespace": "watching"},
            "spec": {"modelType": "llm", "datasetId": "chat", "config": {"baseModel": "tiny", "strategy": "lora"}},
        }
    )
    # A watch of the list: it starts from the list's version, so a change made before the watch
    # request reaches the server is still printed (kubectl starts the watch of one named object
    # from "0" and hides its first event, which would race with the patch below).
    command = kubectl.command("get", "tj", "-n", "watching", "-w")
    watch = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=kubectl.env)
    deadline = threading.Timer(20, watch.kill)  # a silent kubectl ends the reads below, never hangs them
    deadline.start()
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().split()[:2] == ["NAME", "PHASE"]
        assert watch.stdout.readline().split()[:2] == ["watched", "llm"]  # no phase yet
        kubectl.server.api.patch_status(API, "TrainingJob", "watched", {"phase": "Queued"}, namespace="watching")
        assert watch.stdout.readline().split()[:3] == ["watched", "Queued", "llm"]
    finally:
        deadline.cancel()
        watch.kill()
        watch.wait()


def test_logs_reads_the_container_runs_as_from_a_kubelet(kubectl: Kubectl) -> None:
    """kubectl logs, --tail, -p and -f, and its error for a container that has no previous run."""
    api, container = kubectl.server.api, {"name": "pytorch", "image": "trainer:1"}
    owner = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "j", "uid": "u", "namespace": "logs"},
    }
    api.create(factories.pod("j-master-0", owner, spec={"containers": [container], "nodeName": "n"}, labels={}))
    started = factories.running_pod_status(container, pod_ip="10.0.0.1", started_at=factories.now())
    api.patch("v1", "Pod", "j-master-0", {"status": started}, "logs", subresource="status")
    kubectl.server.write_log("logs", "j-master-0", "step 1\nstep 2\n")
    assert kubectl("logs", "-n", "logs", "j-master-0") == "step 1\nstep 2\n"
    assert kubectl("logs", "-n", "logs", "j-master-0", "--tail", "1") == "step 2\n"
    with pytest.raises(KubectlFailed) as refused:
        kubectl("logs", "-n", "logs", "j-master-0", "-p")
    assert (
        'Error from server (BadRequest): previous terminated container "pytorch" in pod "j-master-0" not found'
        in str(refused.value)
    )
    restarted = factories.running_pod_status(container, pod_ip="10.0.0.1", started_at=factories.now(), restarts=1)
    api.patch("v1", "Pod", "j-master-0", {"status": restarted}, "logs", subresource="status")
    kubectl.server.write_log("logs", "j-master-0", "resumed\n")
    assert kubectl("logs", "-n", "logs", "j-master-0", "-p") == "step 1\nstep 2\n"
    follow = subprocess.Popen(
        kubectl.command("logs", "-n", "logs", "-f", "j-master-0"), stdout=subprocess.PIPE, text=True, env=kubectl.env
    )
    deadline = threading.Timer(20, follow.kill)
    deadline.start()
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "resumed\n"
        kubectl.server.write_log("logs", "j-master-0", "done\n")
        assert follow.stdout.readline() == "done\n"
        ended = factories.terminated_pod_status(
            container, exit_code=0, message="", finished_at=factories.now(), restarts=1
        )
        api.patch("v1", "Pod", "j-master-0", {"status": ended}, "logs", subresource="status")
        assert follow.stdout.read() == ""
        assert follow.wait(timeout=20) == 0
    finally:
        deadline.cancel()
        follow.kill()
        follow.wait()
