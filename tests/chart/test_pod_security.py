"""Every pod the chart or the operator creates meets the PodSecurity "restricted" profile."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tensorone_operator.config import parse_config

from tensorone.api.v1alpha1 import Dataset, TrainingJob
from tests import factories
from tests.chart.conftest import CHART, SCENARIOS, Rendered
from tests.chart.pod_security import pod_specs, restricted_violations

COMPLIANT_POD: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "main",
            "image": "example/image:1",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
    "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "data", "persistentVolumeClaim": {"claimName": "x"}}],
}


def test_every_chart_pod_is_restricted(rendered: Rendered) -> None:
    pods = [pod for obj in rendered.objects for pod in pod_specs(obj)]
    assert pods, f"{rendered.scenario}: the chart renders no pod at all"
    for where, spec, pod_annotations in pods:
        assert restricted_violations(spec, pod_annotations) == [], f"{rendered.scenario}: {where}"


def test_the_checker_accepts_a_compliant_pod() -> None:
    assert restricted_violations(COMPLIANT_POD) == []


def _break(path: str, value: Any) -> dict[str, Any]:
    """COMPLIANT_POD with one field (dotted path, list indexes as digits) set to ``value``."""
    pod = copy.deepcopy(COMPLIANT_POD)
    *parents, leaf = path.split(".")
    node: Any = pod
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[leaf] = value
    return pod


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("hostNetwork", True, "spec.hostNetwork"),
        ("hostPID", True, "spec.hostPID"),
        ("hostIPC", True, "spec.hostIPC"),
        ("volumes", [{"name": "host", "hostPath": {"path": "/"}}], "hostPath volume"),
        ("volumes", [{"name": "nfs", "nfs": {"server": "x", "path": "/"}}], "nfs volume"),
        ("securityContext.runAsNonRoot", False, "runAsNonRoot"),
        ("securityContext.runAsUser", 0, "runAsUser must not be 0"),
        ("securityContext.seccompProfile", {"type": "Unconfined"}, "seccompProfile"),
        ("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], "not a safe sysctl"),
        ("containers.0.securityContext.privileged", True, "privileged"),
        ("containers.0.securityContext.allowPrivilegeEscalation", True, "allowPrivilegeEscalation"),
        ("containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}, "drop must include ALL"),
        ("containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}, "SYS_ADMIN"),
        ("containers.0.securityContext.runAsUser", 0, "runAsUser must not be 0"),
        ("containers.0.securityContext.procMount", "Unmasked", "procMount"),
        ("containers.0.securityContext.seLinuxOptions", {"user": "root"}, "seLinuxOptions.user"),
        ("containers.0.securityContext.appArmorProfile", {"type": "Unconfined"}, "appArmorProfile"),
        ("containers.0.ports", [{"containerPort": 80, "hostPort": 80}], "hostPort"),
        ("initContainers", [{"name": "init", "image": "x"}], "container init"),
    ],
)
def test_the_checker_catches_each_violation(path: str, value: Any, complaint: str) -> None:
    problems = restricted_violations(_break(path, value))
    assert any(complaint in problem for problem in problems), problems


def test_the_checker_needs_seccomp_somewhere() -> None:
    pod = copy.deepcopy(COMPLIANT_POD)
    del pod["securityContext"]["seccompProfile"]
    assert any("seccompProfile.type" in problem for problem in restricted_violations(pod))
    pod["containers"][0]["securityContext"]["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}
    assert restricted_violations(pod) == []


def test_the_checker_finds_pytorchjob_pods() -> None:
    job = {
        "kind": "PyTorchJob",
        "metadata": {"name": "j"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"template": {"spec": COMPLIANT_POD}},
                "Worker": {"template": {"spec": {}}},
            }
        },
    }
    found = {where: restricted_violations(spec) for where, spec, _ in pod_specs(job)}
    assert found["PyTorchJob/j Master"] == []
    assert found["PyTorchJob/j Worker"] == []  # no containers: nothing to complain about


def _training_job(name: str, **spec: Any) -> dict[str, Any]:
    """A stored TrainingJob in team-a: what the operator's builders get."""
    return factories.training_job(name, "team-a", metadata={"uid": f"uid-{name}", "generation": 1}, **spec)


PODMONITOR_PORT_NAME = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["podMonitor"]["portName"]
OUR_POD_LABELS = {"app.kubernetes.io/name": "tensorone-training", "app.kubernetes.io/managed-by": "tensorone-operator"}

# One Dataset on a claim (the pods mount it read-only) and one from the hub.
DATASETS: dict[str, dict[str, Any]] = {
    "chat": factories.dataset("chat", "team-a", source={"pvc": {"claimName": "datasets", "path": "/chat/train.jsonl"}}),
    "images": factories.dataset("images", "team-a", source={"huggingFace": {"name": "cifar10"}}, format="imagefolder"),
}

TRAINING_JOBS = [
    _training_job(
        "llm-lora",
        gpuType="h100",
        gpusPerWorker=8,
        maxWorkers=4,
        priority="high",
        hubTokenSecret={"name": "hf", "key": "token"},
    ),
    _training_job("cpu-dev", config={"baseModel": "/models/tiny", "strategy": "full"}),
    _training_job(
        "custom-image",
        modelType="custom",
        datasetId="images",
        gpuType="l4",
        config={"custom": {"image": "registry.example.com/me/train:1", "command": ["python", "train.py"]}},
    ),
]


@pytest.mark.parametrize("scenario", ["default", "no-priority-classes", "custom-catalog"])
@pytest.mark.parametrize("job", TRAINING_JOBS, ids=lambda job: job["metadata"]["name"])
def test_operator_pytorchjob_pods_are_restricted(
    render: Callable[..., Rendered], scenario: str, job: dict[str, Any]
) -> None:
    """The pure builder, configured by the config file the chart renders, makes restricted pods."""
    builders = pytest.importorskip("tensorone_operator.builders", reason="the operator's builders do not exist yet")
    config_map = render(SCENARIOS[scenario], scenario).one("ConfigMap", "-config")
    config = parse_config(yaml.safe_load(config_map["data"]["config.yaml"]), source=f"chart {scenario}")
    dataset = Dataset.model_validate(DATASETS[job["spec"]["datasetId"]])
    pytorchjob = builders.build_pytorchjob(TrainingJob.model_validate(job), dataset, config)
    pods = list(pod_specs(pytorchjob))
    assert pods, "the PyTorchJob has no replica"
    for where, spec, pod_annotations in pods:
        assert restricted_violations(spec, pod_annotations) == [], where
        # The template must also be a valid pod for the API server.
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": spec}
        kubernetes_validate.validate(pod, "1.29", strict=True)
        assert spec.get("automountServiceAccountToken") is False
        # The chart's PodMonitor scrapes the port by name, and selects the pods by our labels.
        ports = {port["name"]: port["containerPort"] for port in spec["containers"][0]["ports"]}
        assert ports.get(PODMONITOR_PORT_NAME) == config.report_port
        pod_labels = pytorchjob["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]
        assert OUR_POD_LABELS.items() <= pod_labels.items()
        assert spec.get("serviceAccountName", "") == config.training_service_account or (
            not config.training_service_account and "serviceAccountName" not in spec
        )
