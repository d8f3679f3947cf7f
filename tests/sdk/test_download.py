"""``t1 download`` end to end: the real trainer trains and exports to a real S3-compatible server
(moto's, on loopback), writing its checkpoint folder as a pod writes the claim, and its report
becomes the TrainingJob's status as the operator writes it (in the Kubernetes API emulator).

From the export, ``t1`` downloads the final model and a checkpoint with this machine's credentials,
byte for byte, refusing a file that changed in the store. From the claim (a job without an export),
it makes a restricted pod that the local node schedules and runs with the claim's folder mounted,
copies through pods/exec (the WebSocket protocol of the kubernetes package's own client, served by
the emulator), checks every file against the checkpoint's manifest or the status's digest, and
deletes the pod, also when the copy fails."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tensorone_operator.live_status import live_fields

from tensorone import TensorOneClient
from tensorone.api.v1alpha1.trainingjob import OutputExport
from tensorone.cli import main
from tensorone.cli.exit_codes import INTERRUPTED, NOT_FOUND, REFUSED, STORE, USAGE
from tensorone.download_pod import Placement, placement_for
from tensorone.errors import Forbidden, InvalidJobState
from tests.chart.pod_security import restricted_violations
from tests.cli.terminal import T1
from tests.factories import training_job
from tests.kube.node import LocalNode
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.s3_server import ACCESS_KEY_ID, BUCKET, SECRET_ACCESS_KEY, S3Server, s3_server
from tests.trainer.conftest import make_job
from trainer.run import RunOptions, run

API = "training.tensorone.ai/v1alpha1"


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, Path, dict[str, Any]]]:
    """A tiny job trained and exported with its checkpoints: the server, the run's folder, and the
    status the operator writes from the trainer's last report."""
    root = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as env, s3_server() as server:
        env.setenv("TENSORONE_OUTPUT_ACCESS_KEY_ID", ACCESS_KEY_ID)
        env.setenv("TENSORONE_OUTPUT_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        env.setenv("TENSORONE_TERMINATION_LOG", str(root / "termination-log"))
        job = make_job(root, training={"maxSteps": 2, "checkpointSteps": 1, "checkpointEveryEpoch": False})
        output = {"uri": f"s3://{BUCKET}/team-a", "endpointUrl": server.endpoint_url, "checkpoints": True}
        # The claim's layout, as the training pods write it: checkpoints at its root, the model in output/.
        update = {"checkpoint_dir": str(root), "output_dir": str(root / "output")}
        job = job.model_copy(update={"name": "llama", "output": OutputExport.model_validate(output), **update})
        result = run(job, RunOptions(serve_reports=False))
        assert result.report is not None and result.report.export is not None
        assert result.report.export.state == "exported", result.report.export.message
        status = {"phase": "Completed", **live_fields(result.report, now=datetime.now(UTC), running_seconds=1)}
        yield server, root, {"spec": {"output": output}, "status": status}


@pytest.fixture
def cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exported_run: tuple[S3Server, Path, dict[str, Any]]
) -> Iterator[EmulatorServer]:
    _, _, job = exported_run
    # This machine's own credentials for the store, as the AWS tools read them.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    with EmulatorServer() as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        server.api.create(training_job("llama", output=job["spec"]["output"]))
        server.api.patch_status(API, "TrainingJob", "llama", job["status"])
        yield server


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_the_final_model_and_a_checkpoint_come_back_byte_for_byte(
    cluster: EmulatorServer,
    exported_run: tuple[S3Server, Path, dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, root, _ = exported_run
    assert main(["download", "llama", "-o", str(tmp_path / "model")]) == 0
    assert files_of(tmp_path / "model") == files_of(root / "output")
    assert "(SHA-256 checked)" in capsys.readouterr().out

    assert main(["download", "llama", "--checkpoint", "ckpt-step-1", "-o", str(tmp_path / "ckpt")]) == 0
    assert files_of(tmp_path / "ckpt") == files_of(root / "ckpt-step-1")

    assert main(["download", "llama", "-o", str(tmp_path / "model")]) == USAGE  # not empty
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_a_file_changed_in_the_store_is_refused_and_not_left_behind(
    cluster: EmulatorServer,
    exported_run: tuple[S3Server, Path, dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, root, _ = exported_run
    key = "team-a/llama/checkpoints/ckpt-step-2/model/adapter_model.safetensors"
    original = (root / "ckpt-step-2" / "model" / "adapter_model.safetensors").read_bytes()
    server.client().put_object(Bucket=BUCKET, Key=key, Body=bytes(reversed(original)))
    try:
        code = main(["download", "llama", "--checkpoint", "ckpt-step-2", "-o", str(tmp_path / "ckpt")])
    finally:
        server.client().put_object(Bucket=BUCKET, Key=key, Body=original)
    assert code == STORE
    err = capsys.readouterr().err
    assert err.startswith("t1: DIGEST_MISMATCH:") and key in err
    assert not (tmp_path / "ckpt" / "model" / "adapter_model.safetensors").exists()
    assert not [p for p in (tmp_path / "ckpt").rglob("*.part")]


def test_an_unknown_checkpoint_is_refused_with_the_ones_there_are(
    cluster: EmulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["download", "llama", "--checkpoint", "ckpt-step-9", "-o", str(tmp_path / "x")]) == NOT_FOUND
    assert (
        "has no checkpoint 'ckpt-step-9' (its checkpoints: ckpt-step-1, ckpt-step-2, and final"
        in capsys.readouterr().err
    )


# From the checkpoint claim ------------------------------------------------------------------------

CLAIM = "local-only-checkpoints"


@pytest.fixture
def claim_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exported_run: tuple[S3Server, Path, dict[str, Any]]
) -> Iterator[LocalNode]:
    """A job that was not exported, its claim bound and holding what the trainer wrote, and a node."""
    _, root, job = exported_run
    with EmulatorServer() as server, LocalNode(server, tmp_path / "node") as node:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        create_not_exported(server, job["status"])
        shutil.copytree(root, node.claim_dir("default", CLAIM))
        yield node


def create_not_exported(server: EmulatorServer, status: dict[str, Any]) -> None:
    """Job ``local-only``: the run's status without the export, and its claim, Bound."""
    server.api.create(training_job("local-only"))
    output = {k: v for k, v in status["output"].items() if k != "exportUri"}
    server.api.patch_status(API, "TrainingJob", "local-only", status | {"output": output})
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}},
    }
    server.api.create(claim)
    server.api.patch_status("v1", "PersistentVolumeClaim", CLAIM, {"phase": "Bound"})


def download_pods(node: LocalNode) -> list[dict[str, Any]]:
    """Every download pod the emulator ever stored, as created."""
    emulator = node.server.emulator
    return [
        emulator.versions("v1", "Pod", "default", name)[0]
        for name in {key[4] for key in emulator._versions if key[2] == "pods"}
        if name.startswith("local-only-download-")
    ]


def test_the_final_model_and_a_checkpoint_come_from_the_claim_byte_for_byte(
    claim_cluster: LocalNode,
    exported_run: tuple[S3Server, Path, dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, root, _ = exported_run
    assert main(["download", "local-only", "-o", str(tmp_path / "model")]) == 0
    assert files_of(tmp_path / "model") == files_of(root / "output")
    assert f"from the checkpoint claim {CLAIM}, output/ (pod local-only-download-" in capsys.readouterr().out

    assert main(["download", "local-only", "--checkpoint", "ckpt-step-1", "-o", str(tmp_path / "ckpt")]) == 0
    assert files_of(tmp_path / "ckpt") == files_of(root / "ckpt-step-1")
    assert "manifest.json" in files_of(tmp_path / "ckpt")

    # Each download made its pod, and deleted it.
    pods = download_pods(claim_cluster)
    assert len(pods) == 2
    assert claim_cluster.api.list("v1", "Pod", "default") == []
    wait_for(lambda: not claim_cluster.standalone.running, "the node to end the deleted pods' containers")


def test_the_download_pod_is_restricted_short_lived_and_owned_by_the_job(
    claim_cluster: LocalNode, tmp_path: Path
) -> None:
    assert main(["download", "local-only", "-o", str(tmp_path / "model"), "--image", "busybox:1.36"]) == 0
    (pod,) = download_pods(claim_cluster)
    spec = pod["spec"]
    assert restricted_violations(spec, pod["metadata"].get("annotations")) == []
    (container,) = spec["containers"]
    assert container["image"] == "busybox:1.36"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == 1000  # the training pods' user: it reads what they wrote
    assert 0 < spec["activeDeadlineSeconds"] <= 4 * 3600
    assert set(container["resources"]["limits"]) == {"cpu", "memory", "ephemeral-storage"}
    assert spec["volumes"] == [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}}]
    assert container["volumeMounts"] == [{"name": "checkpoints", "mountPath": "/checkpoints", "readOnly": True}]
    job = claim_cluster.api.get(API, "TrainingJob", "local-only")
    (owner,) = pod["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("TrainingJob", "local-only", job["metadata"]["uid"])
    assert not owner.get("controller")
    assert pod["metadata"]["labels"]["training.tensorone.ai/download-of"] == "local-only"


def test_a_changed_file_on_the_claim_is_refused_leaves_nothing_and_a_rerun_starts_over(
    claim_cluster: LocalNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = claim_cluster.claim_dir("default", CLAIM) / "ckpt-step-2" / "model" / "adapter_model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(bytes(reversed(original)))  # same size, other content
    target = tmp_path / "ckpt"
    code = main(["download", "local-only", "--checkpoint", "ckpt-step-2", "-o", str(target)])
    assert code == STORE
    err = capsys.readouterr().err
    assert err.startswith("t1: DIGEST_MISMATCH:")
    assert f"the checkpoint claim {CLAIM}, ckpt-step-2/model/adapter_model.safetensors has changed since" in err
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert claim_cluster.api.list("v1", "Pod", "default") == []

    output = claim_cluster.claim_dir("default", CLAIM) / "output" / "adapter_config.json"
    output.write_text(output.read_text() + " ")
    assert main(["download", "local-only", "-o", str(tmp_path / "model")]) == STORE
    assert "is not the one the job wrote" in capsys.readouterr().err and not (tmp_path / "model").exists()

    weights.write_bytes(original)
    assert main(["download", "local-only", "--checkpoint", "ckpt-step-2", "-o", str(target)]) == 0
    assert (target / "model" / "adapter_model.safetensors").read_bytes() == original
    assert claim_cluster.api.list("v1", "Pod", "default") == []


def test_a_copy_that_fails_in_the_pod_says_why_and_deletes_the_pod(
    claim_cluster: LocalNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(claim_cluster.claim_dir("default", CLAIM) / "ckpt-step-1")  # listed, gone from the claim
    assert main(["download", "local-only", "--checkpoint", "ckpt-step-1", "-o", str(tmp_path / "c")]) == STORE
    err = capsys.readouterr().err
    assert err.startswith("t1: TRANSFER_ERROR: copying ckpt-step-1/ from the checkpoint claim")
    assert "exit code 2" in err and "ckpt-step-1" in err.split("exit code 2")[1]  # tar's own words
    assert not (tmp_path / "c").exists() and claim_cluster.api.list("v1", "Pod", "default") == []


def test_a_readwriteonce_claim_held_on_another_node_and_a_missing_claim_are_refused(
    claim_cluster: LocalNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = claim_cluster.api
    job = api.get(API, "TrainingJob", "local-only")
    gpu_taint = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    training_pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "local-only-master-0",
            "namespace": "default",
            "labels": {"training.tensorone.ai/job-name": "local-only"},
            "ownerReferences": [
                {
                    "apiVersion": API,
                    "kind": "TrainingJob",
                    "name": "local-only",
                    "uid": job["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "gpu-node-7",
            "tolerations": gpu_taint,
            "containers": [{"name": "pytorch", "image": "registry.example.com/trainer:1.2"}],
            "volumes": [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": CLAIM}}],
        },
    }
    api.create(training_pod)
    api.patch_status("v1", "Pod", "local-only-master-0", {"phase": "Running"})
    assert main(["download", "local-only", "-o", str(tmp_path / "m")]) == STORE
    err = capsys.readouterr().err
    assert "cannot run on node gpu-node-7, where pod local-only-master-0 holds the ReadWriteOnce claim" in err
    (pod,) = download_pods(claim_cluster)
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["gpu-node-7"]
    assert pod["spec"]["tolerations"] == gpu_taint
    assert pod["spec"]["containers"][0]["image"] == "registry.example.com/trainer:1.2"  # the job's own image
    assert [p["metadata"]["name"] for p in api.list("v1", "Pod", "default")] == ["local-only-master-0"]

    api.delete("v1", "Pod", "local-only-master-0")
    api.delete("v1", "PersistentVolumeClaim", CLAIM)
    assert main(["download", "local-only", "-o", str(tmp_path / "m")]) == REFUSED
    assert f"{CLAIM} does not exist in namespace 'default'" in capsys.readouterr().err


def test_without_the_grant_to_exec_the_download_is_forbidden_and_its_pod_deleted(
    claim_cluster: LocalNode, tmp_path: Path
) -> None:
    # Requests without a token (the node's, the test's) are the cluster admin's; the downloader may
    # do everything a download from the claim needs but exec.
    reads = {("GET", plural) for plural in ("trainingjobs", "persistentvolumeclaims", "pods")}
    claim_cluster.server.emulator.tokens.update(
        {"": None, "downloader": reads | {("POST", "pods"), ("DELETE", "pods")}}
    )
    client = TensorOneClient(api_key="downloader")
    with pytest.raises(
        Forbidden, match=r'cannot create resource "pods/exec".*runs tar in its pod \(create on pods/exec'
    ):
        client.download("local-only", tmp_path / "model")
    assert len(download_pods(claim_cluster)) == 1 and claim_cluster.api.list("v1", "Pod", "default") == []
    assert not (tmp_path / "model").exists()


def test_ctrl_c_while_the_pod_starts_deletes_it(
    exported_run: tuple[S3Server, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, _, job = exported_run
    with EmulatorServer() as server:  # no node: the pod is never scheduled, t1 waits for it
        create_not_exported(server, job["status"])
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        with T1(["download", "local-only", "-o", str(tmp_path / "model")], kubeconfig, tty=False) as t1:
            wait_for(lambda: server.api.list("v1", "Pod", "default"), "the download pod to be created", timeout=60)
            t1.interrupt()
            assert t1.wait() == INTERRUPTED
        assert server.api.list("v1", "Pod", "default") == []
        assert not (tmp_path / "model").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_where_the_download_pod_may_run_follows_the_claims_access_modes() -> None:
    def claim(*modes: str) -> dict[str, Any]:
        return {"metadata": {"name": CLAIM}, "spec": {"accessModes": list(modes)}}

    def pod(name: str, phase: str, node: str | None) -> dict[str, Any]:
        volumes = [{"name": "c", "persistentVolumeClaim": {"claimName": CLAIM}}]
        return {"metadata": {"name": name}, "spec": {"nodeName": node, "volumes": volumes}, "status": {"phase": phase}}

    running, finished = pod("master-0", "Running", "gpu-1"), pod("old-0", "Succeeded", "gpu-2")
    assert placement_for(claim("ReadWriteOnce"), [finished, running]) == Placement("gpu-1", [], "master-0")
    assert placement_for(claim("ReadWriteOnce"), [finished, pod("pending", "Pending", None)]) == Placement()
    assert placement_for(claim("ReadWriteMany"), [running]) == Placement()
    with pytest.raises(InvalidJobState, match="ReadWriteOncePod and pod master-0 uses it"):
        placement_for(claim("ReadWriteOncePod"), [running])
    assert placement_for(claim("ReadWriteOncePod"), [finished]) == Placement()
