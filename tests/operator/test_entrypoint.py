"""The operator's entry point, scope and logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import kopf
import pytest
from tensorone_operator.__main__ import parse_args
from tensorone_operator.config import OperatorConfig
from tensorone_operator.logs import configure_logging
from tensorone_operator.main import register

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


def test_nodes_are_not_watched_when_the_gpu_check_is_off() -> None:
    """The chart grants no Node access with checkGpuNodes false: the operator must not watch them."""
    for setting in (False, True):
        registry = register(OperatorConfig(check_gpu_nodes=setting), kopf.OperatorRegistry())
        indexes = {handler.id for handler in registry._indexing.get_all_handlers()}
        watched = {handler.id for handler in registry._watching.get_all_handlers()}
        assert ("gpu_nodes" in indexes, "gpu_node_changed" in watched) == (setting, setting), (indexes, watched)


def test_importing_the_handlers_registers_nothing() -> None:
    """Registration is a function of the loaded configuration, never a side effect of an import."""
    code = "import kopf, tensorone_operator.main; print(len(kopf.get_default_registry()._indexing.get_all_handlers()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


def test_the_operator_process_loads_no_rule_evaluator_and_no_trainer() -> None:
    """The operator builds resolved jobs and never checks them against the CRDs' rules (the API
    server did, and the trainer does): the CEL interpreter and the schema validator stay out of its
    memory, as do the trainer's libraries."""
    heavy = ["celpy", "lark", "jsonschema", "torch", "transformers", "trainer"]
    code = (
        "import sys, tensorone_operator.__main__, tensorone_operator.main;"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
