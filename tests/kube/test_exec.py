"""pods/exec over WebSocket against the emulator and the local node, through the kubernetes
package's own ``stream`` client (what ``t1 download`` uses) and the real kubectl (when on PATH), and
the standalone pods the node runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL, V5_CHANNEL_PROTOCOL

from tests.kube.kubectl import KUBECTL, Kubectl
from tests.kube.node import LocalNode
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer

BLOB = bytes(range(256)) * 1000  # every byte value, more than one frame


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LocalNode]:
    with EmulatorServer() as server, LocalNode(server, tmp_path / "node") as running:
        yield running


def core(server: EmulatorServer, tmp_path: Path, token: str | None = None) -> k8s.CoreV1Api:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(
        config_file=str(server.write_kubeconfig(tmp_path / "kubeconfig")), client_configuration=configuration
    )
    if token:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


def standalone_pod(name: str, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "box",
        "image": "busybox:1.36",
        "command": ["sleep", "60"],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}],
            **spec,
        },
    }


def claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def phase(node: LocalNode, name: str, wanted: str) -> dict[str, Any] | None:
    pod = node.api.find("v1", "Pod", name)
    return pod if pod is not None and (pod.get("status") or {}).get("phase") == wanted else None


def run(api: k8s.CoreV1Api, pod: str, command: list[str]) -> tuple[bytes, bytes, dict[str, Any]]:
    """stdout, stderr and the Status of one exec, read frame by frame."""
    ws = stream(
        api.connect_get_namespaced_pod_exec,
        pod,
        "default",
        command=command,
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
        _preload_content=False,
        binary=True,
    )
    assert ws.subprotocol == V5_CHANNEL_PROTOCOL
    ws.run_forever(timeout=30)
    status = json.loads(ws.read_channel(ERROR_CHANNEL))
    return ws.read_channel(STDOUT_CHANNEL), ws.read_channel(STDERR_CHANNEL), status


def test_exec_streams_a_command_in_the_pods_container_with_its_volumes(node: LocalNode, tmp_path: Path) -> None:
    node.api.create(claim("data"))
    (node.claim_dir("default", "data")).mkdir(parents=True)
    (node.claim_dir("default", "data") / "blob").write_bytes(BLOB)
    (node.claim_dir("default", "data") / "note.txt").write_text("hello\n")
    node.api.create(standalone_pod("box"))
    pod = wait_for(lambda: phase(node, "box", "Running"), "the standalone pod to run")
    assert pod["spec"]["nodeName"] == "local-node"
    api = core(node.server, tmp_path)

    out, err, status = run(api, "box", ["cat", "/data/blob"])
    assert (out, err, status) == (BLOB, b"", {"metadata": {}, "status": "Success"})

    out, err, status = run(api, "box", ["sh", "-c", "echo oops >&2; exit 3"])
    assert (out, err) == (b"", b"oops\n")
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"] == [
        {"reason": "ExitCode", "message": "3"}
    ]

    _, _, status = run(api, "box", ["no-such-tool"])
    assert status["reason"] == "InternalError"
    assert 'exec: "no-such-tool": executable file not found in $PATH' in status["message"]

    with pytest.raises(ApiException, match="container other is not valid for pod box"):
        stream(api.connect_get_namespaced_pod_exec, "box", "default", command=["true"], container="other", stdout=True)

    if KUBECTL is not None:  # kubectl >= 1.30 speaks the same WebSocket protocol
        kubectl = Kubectl(node.server, tmp_path / "kubectl")
        assert kubectl("exec", "box", "--", "cat", "/data/note.txt") == "hello\n"
        failed = subprocess.run(
            kubectl.command("exec", "box", "--", "sh", "-c", "exit 4"),
            capture_output=True,
            text=True,
            env=kubectl.env,
            check=False,
        )
        assert (failed.returncode, failed.stderr.strip()) == (4, "command terminated with exit code 4")

    node.api.delete("v1", "Pod", "box")
    wait_for(lambda: not node.standalone.running, "the deleted pod's container to end")


def test_exec_is_refused_for_a_pod_that_has_no_running_container(node: LocalNode, tmp_path: Path) -> None:
    # Pinned to another node: never scheduled here, so no host to exec on.
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-node-7"]}]}
                ]
            }
        }
    }
    node.api.create(claim("data"))
    node.api.create(standalone_pod("elsewhere", affinity=affinity))
    pending = wait_for(lambda: phase(node, "elsewhere", "Pending"), "the pod to be found unschedulable")
    (scheduled,) = pending["status"]["conditions"]
    assert scheduled["reason"] == "Unschedulable" and "didn't match Pod's node affinity" in scheduled["message"]
    api = core(node.server, tmp_path)
    with pytest.raises(ApiException, match="does not have a host assigned"):
        stream(api.connect_get_namespaced_pod_exec, "elsewhere", "default", command=["true"], stdout=True)

    node.api.create(standalone_pod("box", activeDeadlineSeconds=1))
    wait_for(lambda: phase(node, "box", "Running"), "the pod to run")
    failed = wait_for(lambda: phase(node, "box", "Failed"), "the pod's active deadline to end it")
    assert failed["status"]["reason"] == "DeadlineExceeded"
    with pytest.raises(ApiException, match="cannot exec into a container in a completed pod"):
        stream(api.connect_get_namespaced_pod_exec, "box", "default", command=["true"], stdout=True)


def test_exec_needs_create_on_pods_exec(tmp_path: Path) -> None:
    with EmulatorServer() as server:
        server.emulator.tokens.update({"reader": {("GET", "pods"), ("POST", "pods")}})
        with pytest.raises(ApiException, match="403") as refused:
            stream(
                core(server, tmp_path, "reader").connect_get_namespaced_pod_exec,
                "box",
                "default",
                command=["true"],
                stdout=True,
            )
        assert 'cannot create resource \\"pods/exec\\"' in str(refused.value)
