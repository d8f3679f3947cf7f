"""The operator's entry point, scope and logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorone_operator.__main__ import parse_args
from tensorone_operator.logs import configure_logging

from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import PYTORCHJOB, dataset, training_job
from tests.operator.runner import OperatorThread


def test_namespaced_operator_serves_only_its_namespaces(cluster: EmulatorServer) -> None:
    for namespace in ("team-a", "team-b"):
        cluster.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        cluster.api.create(dataset(namespace=namespace))
    with OperatorThread(cluster, namespaces=["team-a"]):
        cluster.api.create(training_job(namespace="team-b"))
        cluster.api.create(training_job(namespace="team-a", gpuType="l4"))
        # Nodes are not watched in namespaced mode: the GPU check lists them (none offers an l4).
        wait_for(
            lambda: (
                (
                    cluster.api.get("training.tensorone.ai/v1alpha1", "TrainingJob", "llama", "team-a").get("status")
                    or {}
                ).get("phase")
                == "Pending"
            )
        )
        assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama", "team-a") is None
    assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama", "team-b") is None
    assert "status" not in cluster.api.get("training.tensorone.ai/v1alpha1", "TrainingJob", "llama", "team-b")


def test_command_line_defaults_follow_the_contract() -> None:
    args = parse_args([])
    assert args.namespace == [] and args.liveness == "http://0.0.0.0:8081/healthz" and args.metrics_port == 8080
    assert parse_args(["-n", "a", "--namespace", "b"]).namespace == ["a", "b"]
    with pytest.raises(SystemExit):
        parse_args(["-n", "a", "--all-namespaces"])


def test_bad_configuration_stops_the_operator_with_the_field(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "config.yaml"
    path.write_text("shmSize: lots\n")
    result = subprocess.run(
        [sys.executable, "-m", "tensorone_operator"],
        env={"TENSORONE_OPERATOR_CONFIG": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "shmSize" in result.stderr


def test_logs_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("json", "INFO")
        logging.getLogger("tensorone_operator").info("reconciled %s", "llama")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "reconciled llama" and record["severity"] == "info"
        with pytest.raises(ValueError, match="TENSORONE_LOG_FORMAT"):
            configure_logging("xml")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def test_nodes_are_not_watched_when_the_gpu_check_is_off(tmp_path: Path) -> None:
    """The chart grants no Node access with checkGpuNodes false: the operator must not watch them."""
    config = tmp_path / "config.yaml"
    config.write_text("checkGpuNodes: false\n")
    probe = (
        "import kopf, tensorone_operator.main; "
        "print(sorted({h.id for h in kopf.get_default_registry()._indexing.get_all_handlers()}))"
    )
    for setting, watched in (("false", False), ("true", True)):
        config.write_text(f"checkGpuNodes: {setting}\n")
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "TENSORONE_OPERATOR_CONFIG": str(config)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert ("gpu_nodes" in out) is watched, out
