"""The local node runs a PyTorchJob's pods as real trainer processes, as a kubelet would."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tensorone_operator.builders import build_config_map, build_pytorchjob
from tensorone_operator.config import OperatorConfig

from tensorone.api.admission import validate
from tensorone.api.v1alpha1 import Dataset, TrainingJob
from tests import factories
from tests.factories import PYTORCHJOB, RECORDS, stop_reason
from tests.kube.node import LocalNode
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer

pytestmark = pytest.mark.slow


def training_job(name: str, epochs: int, **training: Any) -> dict[str, Any]:
    """The tiny job as the API server stores it (defaults applied), with the uid the builders own
    the children by."""
    job = factories.training_job(
        name, metadata={"uid": f"uid-{name}"}, datasetId="tiny", config=factories.tiny_config(epochs=epochs, **training)
    )
    return validate(job)


DATASET = factories.dataset("tiny", records=RECORDS)


@pytest.fixture
def cluster() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


def submit(cluster: EmulatorServer, job: dict[str, Any]) -> None:
    config = OperatorConfig()
    typed, dataset = TrainingJob.model_validate(job), Dataset.model_validate(DATASET)
    cluster.api.create(build_config_map(typed, dataset, config))
    cluster.api.create(build_pytorchjob(typed, dataset, config))


def condition(cluster: EmulatorServer, name: str, kind: str) -> bool:
    child = cluster.api.get(PYTORCHJOB, "PyTorchJob", name)
    return any(c["type"] == kind and c["status"] == "True" for c in (child.get("status") or {}).get("conditions", []))


def running_pod(cluster: EmulatorServer, name: str) -> dict[str, Any] | None:
    """The pod once its status says it runs."""
    obj = cluster.api.find("v1", "Pod", name)
    return obj if obj is not None and (obj.get("status") or {}).get("phase") == "Running" else None


def terminated(cluster: EmulatorServer, pod: str) -> dict[str, Any] | None:
    obj = cluster.api.find("v1", "Pod", pod)
    statuses = ((obj or {}).get("status") or {}).get("containerStatuses") or [{}]
    state: dict[str, Any] | None = statuses[0].get("state", {}).get("terminated")
    return state


def test_a_job_runs_to_succeeded_with_pods_and_termination_message(cluster: EmulatorServer, tmp_path: Path) -> None:
    submit(cluster, training_job("runs", epochs=2))
    with LocalNode(cluster, tmp_path) as node:
        # The kubelet writes the pod's status after the pod is created: wait for both.
        pod = wait_for(lambda: running_pod(cluster, "runs-master-0"), what="the master pod running")
        assert pod["status"]["podIP"] == "127.0.0.1"
        wait_for(
            lambda: condition(cluster, "runs", "Succeeded"),
            what="Succeeded",
            explain=lambda: node.pod_log("default", "runs"),
        )
        final = terminated(cluster, "runs-master-0")
        replicas = cluster.api.get(PYTORCHJOB, "PyTorchJob", "runs")["status"]["replicaStatuses"]
        assert replicas == {"Master": {"active": 0, "succeeded": 1, "failed": 0}}
        assert node.errors == []
    assert final is not None and final["exitCode"] == 0
    report = json.loads(final["message"])
    assert report["state"] == "completed"
    assert report["checkpoints"][-1]["id"] == "ckpt-epoch-2"
    assert (node.claim_dir("default", "runs-checkpoints") / "ckpt-epoch-2" / "manifest.json").exists()


def test_suspend_sends_sigterm_and_resume_continues(cluster: EmulatorServer, tmp_path: Path) -> None:
    submit(cluster, training_job("pausing", epochs=200))
    with LocalNode(cluster, tmp_path) as node:

        def progress() -> dict[str, Any]:
            pod = cluster.api.find("v1", "Pod", "pausing-master-0")
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                return {}
            port = next(p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "report")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=2) as response:
                    report: dict[str, Any] = json.loads(response.read())
                    return report
            except OSError:
                return {}

        wait_for(
            lambda: progress().get("step", 0) >= 3,
            what="training steps",
            explain=lambda: node.pod_log("default", "pausing"),
        )
        cluster.api.patch(PYTORCHJOB, "PyTorchJob", "pausing", {"spec": {"runPolicy": {"suspend": True}}})
        wait_for(lambda: condition(cluster, "pausing", "Suspended"), what="Suspended")
        stop_report = json.loads((tmp_path / "pods/default/pausing-master-0/termination-log").read_text())
        assert stop_report["state"] == "stopped"
        stopped_at = stop_report["checkpoints"][-1]
        assert stopped_at["step"] == stop_report["step"]
        assert stopped_at["reason"] == stop_reason(stop_report)
        assert cluster.api.find("v1", "Pod", "pausing-master-0") is None
        replicas = cluster.api.get(PYTORCHJOB, "PyTorchJob", "pausing")["status"]["replicaStatuses"]
        assert replicas["Master"]["active"] == 0

        cluster.api.patch(PYTORCHJOB, "PyTorchJob", "pausing", {"spec": {"runPolicy": {"suspend": False}}})
        wait_for(lambda: not condition(cluster, "pausing", "Suspended"), what="resumed")
        resumed = wait_for(lambda: progress().get("step", 0) > stopped_at["step"], what="steps after the resume")
        assert resumed
        assert progress()["resumedFrom"] == stopped_at["id"]
        cluster.api.patch(PYTORCHJOB, "PyTorchJob", "pausing", {"spec": {"runPolicy": {"suspend": True}}})
        wait_for(lambda: condition(cluster, "pausing", "Suspended"), what="Suspended again")
        second = json.loads((tmp_path / "pods/default/pausing-master-0/termination-log").read_text())
        assert second["state"] == "stopped" and second["resumedFrom"] == stopped_at["id"]
        assert second["step"] > stopped_at["step"]
        assert node.errors == []


def exiting_job(name: str, code: int, restart_policy: str, backoff_limit: int) -> dict[str, Any]:
    """A PyTorchJob whose one pod exits with ``code`` at once."""
    container = {"name": "pytorch", "image": "python", "command": ["python", "-c", f"raise SystemExit({code})"]}
    master = {"replicas": 1, "restartPolicy": restart_policy, "template": {"spec": {"containers": [container]}}}
    return {
        "apiVersion": PYTORCHJOB,
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"pytorchReplicaSpecs": {"Master": master}, "runPolicy": {"backoffLimit": backoff_limit}},
    }


def test_exit_code_policy_restarts_a_retryable_exit_past_the_backoff_limit(
    cluster: EmulatorServer, tmp_path: Path
) -> None:
    cluster.api.create(exiting_job("retried", 138, "ExitCode", backoff_limit=1))
    with LocalNode(cluster, tmp_path) as node:
        wait_for(
            lambda: node.runs[("default", "retried")].restarts >= 3 if ("default", "retried") in node.runs else None
        )
    assert not condition(cluster, "retried", "Failed")


def test_exit_code_policy_fails_a_permanent_exit_at_once(cluster: EmulatorServer, tmp_path: Path) -> None:
    cluster.api.create(exiting_job("permanent", 5, "ExitCode", backoff_limit=3))
    with LocalNode(cluster, tmp_path) as node:
        wait_for(lambda: condition(cluster, "permanent", "Failed"))
        assert node.runs[("default", "permanent")].restarts == 0
    pod = cluster.api.get("v1", "Pod", "permanent-master-0")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 5
