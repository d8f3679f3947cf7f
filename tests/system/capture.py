"""Capture what ``kubectl`` shows of a real training run, for the README.

    python -m tests.system.capture [--full]

Runs the pieces of the end-to-end tests (tests/system/conftest.py): the emulator, the real
operator in a thread, and a LocalNode that runs the real trainer for the PyTorchJob the operator
creates. The job is the README's example (examples/tiny-llm-lora.yaml: LoRA on the tiny Llama in
examples/models/), with two changes a machine without a cluster needs: the base model is the
folder's absolute path, and the Dataset carries the example's records inline instead of reading
them from a claim. Mid-training and at the end it prints the real output of ``kubectl get tj``,
``kubectl get tj NAME -o yaml`` and, at the end, ``kubectl events --for trainingjob/NAME``.

The only change made to kubectl's output: without ``--full``, the loss curves in the status
(``lossHistory``, ``evalLossHistory``, up to 64 points each) are cut to their first and last points,
and a comment line says how many were left out.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from tensorone_operator.config import OperatorConfig

from tests.factories import REPO, TINY_MODEL, tiny_dataset
from tests.kube.kubectl import KUBECTL, Kubectl
from tests.kube.node import LocalNode
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.runner import OperatorThread
from tests.system.conftest import POLL_SECONDS

EXAMPLE = REPO / "examples" / "tiny-llm-lora.yaml"
CURVES = ("lossHistory", "evalLossHistory")
KEPT_POINTS = 2  # at each end of a trimmed curve


def example_manifests() -> tuple[dict[str, Any], dict[str, Any]]:
    """The example's Dataset and TrainingJob, made to run here (see the module docstring)."""
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(EXAMPLE.read_text())}
    source = documents["Dataset"]
    data = tiny_dataset(source["metadata"]["name"])
    data["spec"] = {**source["spec"], "source": data["spec"]["source"]}
    job = documents["TrainingJob"]
    job["metadata"]["namespace"] = "default"
    job["spec"]["config"]["baseModel"] = TINY_MODEL
    return data, job


def trim_curves(text: str) -> str:
    """kubectl's YAML with each loss curve cut to its first and last points (a comment says so)."""
    lines = text.split("\n")
    result: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        result.append(line)
        index += 1
        match = re.fullmatch(r"( *)(\w+):", line)
        if match is None or match.group(2) not in CURVES:
            continue
        indent = match.group(1)
        items: list[list[str]] = []
        while index < len(lines) and lines[index].startswith(f"{indent}- "):
            item = [lines[index]]
            index += 1
            while index < len(lines) and lines[index].startswith(f"{indent}  "):
                item.append(lines[index])
                index += 1
            items.append(item)
        if len(items) > 2 * KEPT_POINTS + 1:
            left_out = len(items) - 2 * KEPT_POINTS
            kept = [*items[:KEPT_POINTS], [f"{indent}# ... {left_out} more points (trimmed by capture.py)"]]
            items = kept + items[-KEPT_POINTS:]
        result.extend(part for item in items for part in item)
    return "\n".join(result)


def show(kubectl: Kubectl, *args: str, full: bool = True) -> None:
    """Print one kubectl command and its output, as a terminal would show them."""
    output = kubectl(*args)
    print(f"$ kubectl {' '.join(args)}")
    print(output if full else trim_curves(output), end="" if output.endswith("\n") else "\n")
    print()


def capture(workdir: Path, *, full: bool, mid_percentage: float) -> None:
    """Run the example job and print what kubectl shows mid-training and at the end."""
    data, job = example_manifests()
    name = job["metadata"]["name"]
    with EmulatorServer() as server, LocalNode(server, workdir / "node") as node:
        operator = OperatorThread(server, OperatorConfig(progress_poll_seconds=POLL_SECONDS))
        operator.start()
        try:
            kubectl = Kubectl(server, workdir / "kubectl")
            server.api.create(data)
            server.api.create(job)
            started = time.monotonic()

            def status() -> dict[str, Any]:
                found: dict[str, Any] = server.api.get("training.tensorone.ai/v1alpha1", "TrainingJob", name)
                return found.get("status") or {}

            def running_past_mid() -> bool:
                current = status()
                if current.get("phase") in {"Failed", "Cancelled"}:
                    raise RuntimeError(f"{name} ended {current['phase']}: {current.get('message')}")
                percentage = (current.get("progress") or {}).get("percentage", 0)
                return current.get("phase") == "Running" and percentage >= mid_percentage

            wait_for(running_past_mid, f"{name} Running past {mid_percentage}%", timeout=600)
            print(f"# mid-training, {time.monotonic() - started:.0f} s after the job was created\n")
            show(kubectl, "get", "tj")
            show(kubectl, "get", "tj", name, "-o", "yaml", full=full)

            wait_for(lambda: status().get("phase") == "Completed", f"{name} Completed", timeout=900)
            # The last report (the final step and checkpoint) can land just after the phase.
            total = status()["progress"]["totalSteps"]
            wait_for(lambda: status()["progress"]["currentStep"] == total, "the final step in the status")
            wait_for(
                lambda: "Completed" in kubectl("events", "--for", f"trainingjob/{name}"),
                "the Completed Event",
            )
            print(f"# at the end, {time.monotonic() - started:.0f} s after the job was created\n")
            show(kubectl, "get", "tj")
            show(kubectl, "get", "tj", name, "-o", "yaml", full=full)
            show(kubectl, "events", "--for", f"trainingjob/{name}")
        finally:
            operator.stop()
        if node.errors:
            raise RuntimeError(f"the local node reported errors: {node.errors}")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the capture, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.system.capture", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="print the loss curves whole")
    parser.add_argument(
        "--mid", type=float, default=50.0, metavar="PERCENT", help="progress of the mid-training capture (default 50)"
    )
    options = parser.parse_args(argv)
    if KUBECTL is None:
        print("kubectl is not on PATH: install it to capture its output", file=sys.stderr)
        return 2
    if not 0 < options.mid < 100:
        parser.error(f"--mid: {options.mid} is not between 0 and 100 (exclusive)")
    with tempfile.TemporaryDirectory(prefix="tensorone-capture-") as workdir:
        capture(Path(workdir), full=options.full, mid_percentage=options.mid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
