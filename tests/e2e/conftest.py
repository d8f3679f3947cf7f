"""Set-up of the kind end-to-end suite: cluster, Training Operator v1.9, Kubeflow Trainer v2.2 with
JobSet, Kueue (for the tests that queue a job), our images and chart.

Opt-in: it runs only with ``TENSORONE_E2E=1`` and when ``kind``, ``docker`` and ``kubectl`` are on
PATH; otherwise every test skips and says why. Settings (environment variables):

- ``TENSORONE_E2E_CLUSTER`` (default tensorone-e2e): the kind cluster; reused when it exists.
- ``TENSORONE_E2E_KEEP=1``: keep the cluster afterwards (for debugging with kubectl).
- ``TRAINING_OPERATOR_REF`` (default v1.9.1): the kubeflow/training-operator tag to install.
- ``TRAINER_REF`` (default v2.2.0): the kubeflow/trainer tag whose ``manifests/overlays/manager``
  is installed (Trainer v2 and the JobSet release it names, v0.11.0 for v2.2.0).
- ``KUEUE_REF`` (default v0.14.8): the kubernetes-sigs/kueue release whose ``manifests.yaml`` is
  installed. Its TrainJob integration speaks Trainer v2.2 from v0.17.0 on: the test of a TrainJob
  through a queue runs only with such a release.
- ``TENSORONE_E2E_TORCH_INDEX`` (default the PyTorch CPU wheel index): where the trainer image's
  torch comes from; kind nodes have no GPU, so the CPU build keeps the image small.
- ``TENSORONE_E2E_SKIP_BUILD=1``: use images already loaded into the cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm_binary import HelmUnavailable, ensure_helm
from tests.e2e.cluster import REPO_ROOT, KindCluster, run

OPT_IN = "TENSORONE_E2E"
CLUSTER_NAME = os.environ.get("TENSORONE_E2E_CLUSTER", "tensorone-e2e")
TRAINING_OPERATOR_REF = os.environ.get("TRAINING_OPERATOR_REF", "v1.9.1")
TRAINER_REF = os.environ.get("TRAINER_REF", "v2.2.0")
KUEUE_REF = os.environ.get("KUEUE_REF", "v0.14.8")
# The first Kueue release whose TrainJob integration writes Trainer v2.2's runtimePatches (v0.14 to
# v0.16 write v2.1's podTemplateOverrides, and their update of a v2.2 TrainJob drops its patches).
KUEUE_FOR_TRAINER_V2_2 = (0, 17, 0)
TORCH_INDEX = os.environ.get("TENSORONE_E2E_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
IMAGE_TAG = "e2e"
OPERATOR_IMAGE = "ghcr.io/tensorone/training-operator"
TRAINER_IMAGE = "ghcr.io/tensorone/trainer"
RELEASE = "tensorone"
OPERATOR_NAMESPACE = "tensorone-system"
JOB_NAMESPACE = "e2e"
# The namespace values-e2e.yaml puts on the trainjob backend.
TRAINJOB_NAMESPACE = "e2e-trainjob"
# Kueue's ResourceFlavor, ClusterQueue and a LocalQueue per job namespace.
KUEUE_QUEUES = Path(__file__).parent / "kueue-queues.yaml"
LOCAL_QUEUE = "e2e"
# Image tags, pull policy Never, CPU-sized pods; the chart tests render with this file too.
E2E_VALUES = Path(__file__).parent / "values-e2e.yaml"
# The repository's tiny Llama, baked into the e2e trainer image: no model hub needed.
TINY_MODEL_DIR = REPO_ROOT / "examples" / "models"
TINY_MODEL_PATH = "/models/tiny-llama"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder that needs the cluster ``kind``, and skip those unless the
    suite can run here (the manifests' own checks run everywhere)."""
    reason = _why_not_runnable()
    for item in items:
        needs_cluster = "cluster" in getattr(item, "fixturenames", ())
        if needs_cluster and Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.kind)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _why_not_runnable() -> str | None:
    missing = [tool for tool in ("docker", "kind", "kubectl") if shutil.which(tool) is None]
    if missing:
        return f"the kind e2e suite needs a container engine and {', '.join(missing)} on PATH (missing here)"
    if os.environ.get(OPT_IN) != "1":
        return f"the kind e2e suite is opt-in (it builds images and creates a cluster): set {OPT_IN}=1"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "docker is on PATH but no container engine answers `docker info`"
    return None


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindCluster]:
    """A kind cluster (created unless it exists), deleted afterwards unless TENSORONE_E2E_KEEP=1."""
    try:
        helm = ensure_helm()
    except HelmUnavailable as error:
        pytest.fail(f"helm is needed: {error}")
    existing = run(["kind", "get", "clusters"]).split()
    created = CLUSTER_NAME not in existing
    if created:
        run(["kind", "create", "cluster", "--name", CLUSTER_NAME, "--wait", "180s"], timeout=600)
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    kubeconfig.write_text(run(["kind", "get", "kubeconfig", "--name", CLUSTER_NAME]))
    yield KindCluster(name=CLUSTER_NAME, kubeconfig=kubeconfig, helm_binary=helm)
    if created and os.environ.get("TENSORONE_E2E_KEEP") != "1":
        run(["kind", "delete", "cluster", "--name", CLUSTER_NAME], timeout=300)


@pytest.fixture(scope="session")
def training_operator(cluster: KindCluster) -> str:
    """Kubeflow Training Operator v1.9 (standalone overlay), running."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        f"github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref={TRAINING_OPERATOR_REF}",
        timeout=600,
    )
    cluster.kubectl(
        "-n", "kubeflow", "rollout", "status", "deployment/training-operator", "--timeout=300s", timeout=330
    )
    return TRAINING_OPERATOR_REF


@pytest.fixture(scope="session")
def kubeflow_trainer(cluster: KindCluster) -> str:
    """Kubeflow Trainer v2 and JobSet (the manager overlay installs both), running: the chart's
    ClusterTrainingRuntimes need Trainer's CRDs and its webhook."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        f"https://github.com/kubeflow/trainer.git/manifests/overlays/manager?ref={TRAINER_REF}",
        timeout=600,
    )
    for deployment in ("jobset-controller-manager", "kubeflow-trainer-controller-manager"):
        cluster.kubectl(
            "-n", "kubeflow-system", "rollout", "status", f"deployment/{deployment}", "--timeout=300s", timeout=330
        )
    return TRAINER_REF


def kueue_version(ref: str) -> tuple[int, ...]:
    """(major, minor, patch) of a Kueue release tag such as v0.14.8."""
    return tuple(int(part) for part in ref.removeprefix("v").split("-")[0].split("."))


@pytest.fixture(scope="session")
def kueue(cluster: KindCluster, kubeflow_trainer: str, chart: str) -> str:
    """Kueue, installed after Trainer (its TrainJob integration starts when Trainer's CRDs exist),
    with the queues of kueue-queues.yaml."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "-f",
        f"https://github.com/kubernetes-sigs/kueue/releases/download/{KUEUE_REF}/manifests.yaml",
        timeout=600,
    )
    cluster.kubectl(
        "-n",
        "kueue-system",
        "wait",
        "deploy/kueue-controller-manager",
        "--for=condition=available",
        "--timeout=300s",
        timeout=330,
    )
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for obj in yaml.safe_load_all(KUEUE_QUEUES.read_text()):
        by_namespace.setdefault(obj["metadata"].get("namespace", "default"), []).append(obj)
    for namespace, objects in by_namespace.items():
        cluster.apply_when_webhooks_answer(objects, namespace, timeout=180)
    return KUEUE_REF


@pytest.fixture(scope="session")
def images(cluster: KindCluster) -> dict[str, str]:
    """Our operator and trainer images (the trainer with the tiny model), built and loaded into kind."""
    operator = f"{OPERATOR_IMAGE}:{IMAGE_TAG}"
    trainer = f"{TRAINER_IMAGE}:{IMAGE_TAG}"
    if os.environ.get("TENSORONE_E2E_SKIP_BUILD") != "1":
        run(["docker", "build", "--target", "operator", "-t", operator, str(REPO_ROOT)], timeout=1800)
        base = f"{TRAINER_IMAGE}:{IMAGE_TAG}-base"
        run(
            [
                "docker",
                "build",
                "--target",
                "trainer",
                "--build-arg",
                f"TORCH_INDEX_URL={TORCH_INDEX}",
                "-t",
                base,
                str(REPO_ROOT),
            ],
            timeout=3600,
        )
        # A Dockerfile on stdin with examples/models as the context: the tiny model at a fixed path.
        run(
            ["docker", "build", "-t", trainer, "-f", "-", str(TINY_MODEL_DIR)],
            input_text=f"FROM {base}\nCOPY --chown=1000:1000 tiny-llama {TINY_MODEL_PATH}\n",
            timeout=600,
        )
        for image in (operator, trainer):
            run(["kind", "load", "docker-image", image, "--name", cluster.name], timeout=900)
    return {"operator": operator, "trainer": trainer}


@pytest.fixture(scope="session")
def chart(cluster: KindCluster, training_operator: str, kubeflow_trainer: str, images: dict[str, str]) -> str:
    """Our chart installed (or upgraded) with the e2e images, CPU-sized job resources and the
    namespace TRAINJOB_NAMESPACE on the trainjob backend."""
    # The job namespaces exist before the install, which creates the training ServiceAccount in them.
    for namespace in (JOB_NAMESPACE, TRAINJOB_NAMESPACE):
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, "default")
    cluster.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(REPO_ROOT / "charts" / "tensorone-training-operator"),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout=5m",
        "--values",
        str(E2E_VALUES),
    )
    return RELEASE
