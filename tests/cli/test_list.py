"""``t1 list`` with the real operator: ``-w`` follows the jobs (a table kept current on a terminal,
a row per change on a pipe), ``-A`` lists every namespace, ``-o`` prints documents or more columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tensorone.cli import main
from tensorone.cli.exit_codes import INTERRUPTED, USAGE
from tests.cli.terminal import T1
from tests.factories import dataset, training_job
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import phase_is
from tests.operator.runner import OperatorThread

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def create_jobs(cluster: EmulatorServer) -> None:
    """Job a in default, job b in the namespace other, each with its Dataset."""
    cluster.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    for namespace, name in (("default", "a"), ("other", "b")):
        cluster.api.create(dataset(namespace=namespace))
        cluster.api.create(training_job(name, namespace))


def test_list_w_keeps_the_table_current_on_a_terminal(
    cluster: EmulatorServer, operator: OperatorThread, kubeconfig: Path
) -> None:
    create_jobs(cluster)
    wait_for(lambda: phase_is(cluster.api, "Pending", "a"))
    with T1(["list", "-w", "-A", "--sort", "name", "--order", "asc"], kubeconfig, tty=True) as t1:
        t1.wait_for_text("NAMESPACE", "default    a     pending", "other      b     pending")
        cluster.api.create(training_job("c"))
        t1.wait_for_text("default    c     ")
        cluster.api.delete("training.tensorone.ai/v1alpha1", "TrainingJob", "a")  # the operator's finalizer runs

        def a_is_gone() -> bool:
            frame = t1.last_frame("NAMESPACE")
            assert " a " not in frame and " c " in frame, frame
            return True

        wait_for(a_is_gone, "job a to leave the table")
        t1.interrupt()
        assert t1.wait() == INTERRUPTED
    assert "Traceback" not in t1.stderr


def test_list_w_on_a_pipe_prints_a_row_per_change(
    cluster: EmulatorServer, operator: OperatorThread, kubeconfig: Path
) -> None:
    create_jobs(cluster)
    wait_for(lambda: phase_is(cluster.api, "Pending", "a"))
    with T1(["list", "-w", "-o", "wide"], kubeconfig, tty=False) as t1:
        t1.wait_for_text("NAME", "a     pending")
        cluster.api.delete("training.tensorone.ai/v1alpha1", "TrainingJob", "a")
        t1.wait_for_text("a     deleted")
        t1.interrupt()
        assert t1.wait() == INTERRUPTED
    lines = t1.text().splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATUS", "MODEL"] and "DATASET" in lines[0]
    assert " b " not in t1.text()  # namespace other is not listed without -A
    assert lines[-1].split()[:2] == ["a", "deleted"]


def test_list_a_and_the_output_formats(cluster: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    create_jobs(cluster)
    assert main(["list", "-A"]) == 0
    rows = [line.split()[:3] for line in capsys.readouterr().out.splitlines()]
    assert rows == [["NAMESPACE", "NAME", "STATUS"], ["other", "b", "pending"], ["default", "a", "pending"]]
    assert main(["list", "-o", "wide"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.split()[-8:] == ["DATASET", "PRIORITY", "STEP", "EVAL", "LOSS", "THROUGHPUT", "COST", "ETA"]
    assert main(["list", "-A", "-o", "yaml"]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert [(job["namespace"], job["id"]) for job in document["jobs"]] == [("other", "b"), ("default", "a")]
    assert RFC3339.fullmatch(document["jobs"][0]["createdAt"])
    assert document["pagination"] == {"total": 2, "limit": 50, "offset": 0, "hasMore": False}
    assert main(["list", "-o", "table"]) == 0  # the default, by name
    assert capsys.readouterr().out.startswith("NAME ")


def test_list_w_prints_tables_only_and_needs_the_kubernetes_api(
    cluster: EmulatorServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "-w", "-o", "json"]) == USAGE
    assert capsys.readouterr().err.startswith("t1: CONFIGURATION_ERROR: --output: t1 list -w prints a table")
    monkeypatch.setenv("TENSORONE_BASE_URL", "http://127.0.0.1:9")
    for argv in (["list", "-A"], ["list", "-w"]):
        assert main(argv) == USAGE
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith(f"t1: CONFIGURATION_ERROR: TENSORONE_BASE_URL: t1 {' '.join(argv)} needs")
        assert err[1].startswith("t1: hint: unset TENSORONE_BASE_URL")
