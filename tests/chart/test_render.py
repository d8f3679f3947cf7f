"""helm lint and helm template over the scenarios; every object checked against its schema, and the
objects the chart promises checked for what they must hold."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tensorone_operator.builders import TRAINJOB_API_VERSION
from tensorone_operator.chart import CHART_SET_FIELDS
from tensorone_operator.config import DEFAULT_CONFIG_PATH, OperatorConfig, parse_config

from tests.chart.conftest import CHART, RELEASE_NAMESPACE, SCENARIOS, HelmRunner, Rendered

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the one helm's client speaks.
KUBERNETES_VERSIONS = ("1.29", "1.35")
PROMETHEUS_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# Kinds the chart renders only on request, with the first Kubernetes that serves them.
NEWER_KINDS = {"ValidatingAdmissionPolicy": "1.30", "ValidatingAdmissionPolicyBinding": "1.30"}
Render = Callable[..., Rendered]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint(helm: HelmRunner, scenario: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(SCENARIOS[scenario]))
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


def versions_serving(kind: str) -> tuple[str, str]:
    """The oldest Kubernetes the chart renders this kind for, and the newest."""
    return NEWER_KINDS.get(kind, KUBERNETES_VERSIONS[0]), KUBERNETES_VERSIONS[-1]


def test_built_in_objects_match_the_kubernetes_schemas(rendered: Rendered) -> None:
    checked = 0
    for obj in rendered.objects:
        if obj["kind"] in PROMETHEUS_KINDS or obj["apiVersion"] == TRAINJOB_API_VERSION:
            continue  # other projects' kinds (test_trainingruntimes.py checks the runtimes against Trainer's)
        for version in versions_serving(obj["kind"]):
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{rendered.scenario}: {obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes "
                    f"{version} at {'.'.join(map(str, error.path))}: {error.message}"
                )
        checked += 1
    # The CRDs, Deployment, ConfigMap, Service, ServiceAccounts and RBAC at the very least.
    assert checked >= 8


def test_prometheus_monitors_have_the_shape_the_operator_expects(render: Render) -> None:
    rendered = render(SCENARIOS["monitoring"], "monitoring")
    service_monitor = rendered.one("ServiceMonitor")
    assert service_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = rendered.one("Service", "-metrics")
    assert service_monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service_monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    [endpoint] = service_monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"

    pod_monitor = rendered.one("PodMonitor")
    assert pod_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    # Every pod the operator creates carries our two labels (operator contract); rank 0, the only
    # process serving /metrics, runs in the Master pod.
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "tensorone-training",
        "app.kubernetes.io/managed-by": "tensorone-operator",
        "training.kubeflow.org/job-role": "master",
    }
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    [pod_endpoint] = pod_monitor["spec"]["podMetricsEndpoints"]
    assert pod_endpoint["path"] == "/metrics"
    assert pod_endpoint["port"] == "report"
    for monitor in (service_monitor, pod_monitor):
        assert set(monitor["spec"]) <= {
            "selector",
            "namespaceSelector",
            "endpoints",
            "podMetricsEndpoints",
            "podTargetLabels",
            # PodMonitorSpec's per-scrape limits (Prometheus Operator v0.68 and later).
            "sampleLimit",
            "labelLimit",
            "labelNameLengthLimit",
            "labelValueLengthLimit",
        }

    namespaced = render({**SCENARIOS["namespaced"], "metrics": {"podMonitor": {"enabled": True}}})
    assert namespaced.one("PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_a_pod_monitor_per_child_kind_selects_the_rank_0_pod(render: Render) -> None:
    """A TrainJob's rank 0 is its pod of completion index 0; with both kinds in use, both are scraped."""
    both = {"backend": "trainjob", "namespaceBackends": {"legacy": "pytorchjob"}}
    rendered = render({**SCENARIOS["monitoring"], "operatorConfig": both})
    selectors = {m["metadata"]["name"]: m["spec"]["selector"]["matchLabels"] for m in rendered.of_kind("PodMonitor")}
    rank_zero = {
        name.split("-operator-", 1)[1]: {k: v for k, v in labels.items() if "kubeflow" in k or "batch" in k}
        for name, labels in selectors.items()
    }
    assert rank_zero == {
        "training": {"training.kubeflow.org/job-role": "master"},
        "training-trainjob": {"batch.kubernetes.io/job-completion-index": "0"},
    }
    only_trainjob = render({**SCENARIOS["monitoring"], "operatorConfig": {"backend": "trainjob"}})
    assert [m["metadata"]["name"].split("-operator-", 1)[1] for m in only_trainjob.of_kind("PodMonitor")] == [
        "training-trainjob"
    ]


def test_the_spend_alerts_use_the_operators_spend_counter_per_namespace(render: Render) -> None:
    assert not [o for o in render({}).objects if o["kind"] == "PrometheusRule"]  # off by default
    rule = {"enabled": True, "threshold": 250, "namespaceThresholds": {"team-b": 90, "team-a": 5000}}
    rendered = render({"metrics": {"prometheusRule": rule}}, "spend-rule")
    prometheus_rule = rendered.one("PrometheusRule")
    assert prometheus_rule["apiVersion"] == "monitoring.coreos.com/v1"
    [group] = prometheus_rule["spec"]["groups"]
    expressions = {r["expr"]: r for r in group["rules"]}
    assert set(expressions) == {
        'sum by (namespace, currency) (increase(tensorone_operator_spend_total{namespace="team-a"}[1d])) > 5000',
        'sum by (namespace, currency) (increase(tensorone_operator_spend_total{namespace="team-b"}[1d])) > 90',
        'sum by (namespace, currency) (increase(tensorone_operator_spend_total{namespace!~"team-a|team-b"}[1d])) > 250',
    }
    for alert in group["rules"]:
        assert alert["alert"] == "TrainingSpendHigh" and alert["for"] == "5m"
        assert alert["labels"] == {"severity": "warning"}
        assert "{{ $labels.currency }}" in alert["annotations"]["description"]
    assert set(re.findall(r"tensorone_operator_[a-z_]+", " ".join(expressions))) <= _operator_metric_names()
    plain = render({"metrics": {"prometheusRule": {"enabled": True}}}).one("PrometheusRule")
    [only] = plain["spec"]["groups"][0]["rules"]
    assert only["expr"] == "sum by (namespace, currency) (increase(tensorone_operator_spend_total[1d])) > 1000"


def _operator_config(rendered: Rendered) -> dict[str, Any]:
    config_map = rendered.one("ConfigMap", "-config")
    loaded: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return loaded


def test_rendered_config_is_a_valid_operator_config(rendered: Rendered) -> None:
    config = parse_config(_operator_config(rendered), source=f"chart scenario {rendered.scenario}")
    values = rendered.values
    if rendered.scenario == "custom-catalog":
        assert set(config.gpu_catalog) == {"h100", "h200", "l4", "a10g", "l40s", "rtx4090", "a6000", "t4", "mi300x"}
        assert config.gpu_catalog["mi300x"].memory_per_gpu == "192GB"
        # A field set on a default entry changes that field only; the entry keeps the others.
        assert config.gpu_catalog["h100"].hourly_price == 5.5
        assert config.gpu_catalog["h100"].display_name == "NVIDIA H100"
        assert config.gpu_catalog["mi300x"].cpu_per_gpu == "8"  # the model's default for an unset field
        spot = config.gpu_catalog["l4"].spot
        assert spot is not None and spot.hourly_price == 0.28 and spot.tolerations[0].operator == "Equal"
        assert config.gpu_catalog["l4"].hourly_price == 0.80  # the entry keeps its on-demand fields
        assert config.currency == "EUR"
        assert config.trainer_image == "registry.example.com/ml/trainer:2026.11.1"
        assert config.training_service_account == ""
        assert config.checkpoint_storage.storage_class_name == "fast-ssd"
    if rendered.scenario == "no-priority-classes":
        assert config.priority_classes.model_dump() == {"high": "", "normal": "", "low": ""}
        assert rendered.of_kind("PriorityClass") == []
    if values.get("operatorConfig", {}).get("checkGpuNodes") is False:
        assert config.check_gpu_nodes is False


def test_default_values_are_the_operators_built_in_defaults(render: Render) -> None:
    """The chart's defaults and OperatorConfig's must not drift: a user who installs the chart gets
    the behaviour the operator documents."""
    rendered = _operator_config(render({}, "default"))
    # An unset optional field (a catalog entry without spot capacity) is absent from the values.
    assert rendered == OperatorConfig().model_dump(by_alias=True, mode="json", exclude_none=True)


def test_the_template_sets_exactly_the_fields_the_values_leave_out(render: Render) -> None:
    """templates/_helpers.tpl fills CHART_SET_FIELDS from other values; every other field of the
    rendered config comes from operatorConfig, whose schema is generated from OperatorConfig."""
    rendered = _operator_config(render({}, "default"))
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["operatorConfig"]
    assert set(rendered) - set(schema["properties"]) == set(CHART_SET_FIELDS)
    assert set(schema["properties"]) <= set(rendered)


def test_priority_classes_carry_the_configured_names(render: Render) -> None:
    rendered = render(SCENARIOS["default"], "default")
    classes = {pc["metadata"]["name"]: pc for pc in rendered.of_kind("PriorityClass")}
    assert set(classes) == {"tensorone-high", "tensorone-normal", "tensorone-low"}
    assert classes["tensorone-high"]["value"] > classes["tensorone-normal"]["value"] > classes["tensorone-low"]["value"]
    assert classes["tensorone-low"]["preemptionPolicy"] == "Never"
    assert not any(pc["globalDefault"] for pc in classes.values())

    renamed = render({"priorityClasses": {"high": {"name": "ml-urgent", "value": 5000}}})
    assert "ml-urgent" in {pc["metadata"]["name"] for pc in renamed.of_kind("PriorityClass")}
    assert _operator_config(renamed)["priorityClasses"]["high"] == "ml-urgent"


def test_operator_deployment(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment", component="operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"]["port"] == "health"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0

    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_dir = DEFAULT_CONFIG_PATH.rsplit("/", 1)[0]
    assert volumes[mounts[config_dir]]["configMap"]["name"] == rendered.one("ConfigMap", "-config")["metadata"]["name"]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["TENSORONE_OPERATOR_CONFIG"] == DEFAULT_CONFIG_PATH
    assert env["TENSORONE_LOG_FORMAT"] in {"json", "text"}

    namespaces = rendered.values.get("watchNamespaces")
    if namespaces:
        assert container["args"] == [f"--namespace={namespace}" for namespace in namespaces]
    else:
        assert container["args"] == ["--all-namespaces"]
    assert pod["serviceAccountName"] in {sa["metadata"]["name"] for sa in rendered.of_kind("ServiceAccount")}


def test_config_change_rolls_the_operator_pod(render: Render) -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod_template = render(values).one("Deployment", component="operator")["spec"]["template"]
        return str(pod_template["metadata"]["annotations"]["checksum/config"])

    baseline = checksum({})
    assert checksum({"operatorConfig": {"progressPollSeconds": 2}}) != baseline
    assert checksum({"trainer": {"image": {"tag": "0.2.0"}}}) != baseline
    assert checksum({"logLevel": "DEBUG"}) == baseline


def test_training_service_account(render: Render) -> None:
    rendered = render({**SCENARIOS["namespaced"], "trainingServiceAccount": {"namespaces": ["team-c"]}})
    training = [sa for sa in rendered.of_kind("ServiceAccount") if sa["metadata"]["name"] == "tensorone-training"]
    assert {sa["metadata"]["namespace"] for sa in training} == {RELEASE_NAMESPACE, "team-a", "team-b", "team-c"}
    assert all(sa["automountServiceAccountToken"] is False for sa in training)
    bound = {
        subject["name"]
        for binding in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding")
        for subject in binding["subjects"]
    }
    assert "tensorone-training" not in bound, "the training ServiceAccount must have no RBAC"

    default_account = render(SCENARIOS["custom-catalog"], "custom-catalog")
    assert [sa["metadata"]["name"] for sa in default_account.of_kind("ServiceAccount")] == ["tensorone"]


def test_grafana_dashboard_is_valid_json_with_operator_and_training_panels(render: Render) -> None:
    rendered = render(SCENARIOS["monitoring"], "monitoring")
    config_map = rendered.one("ConfigMap", "-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["tensorone-training.json"])
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    assert "tensorone_operator_" in expressions and "tensorone_trainer_" in expressions
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


PROMETHEUS_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _operator_metric_names() -> set[str]:
    metrics = pytest.importorskip("tensorone_operator.metrics", reason="the operator's metrics module is not there yet")
    from prometheus_client.metrics import MetricWrapperBase

    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + suffix for suffix in PROMETHEUS_SUFFIXES.get(family.type, ("",))}
    return names


def _trainer_metric_names() -> set[str]:
    """The names the trainer documents in docs/trainer.md (its public contract; a trainer test keeps
    that table equal to what the registry really exposes)."""
    from tests.reporting.test_metric_names import documented

    return {name for name, _, _ in documented()}


def test_grafana_dashboard_uses_only_metrics_that_exist(render: Render) -> None:
    config_map = render(SCENARIOS["monitoring"], "monitoring").one("ConfigMap", "-dashboard")
    dashboard = config_map["data"]["tensorone-training.json"]
    used = set(re.findall(r"tensorone_(?:operator|trainer)_[a-z_]+", dashboard))
    known = _operator_metric_names() | _trainer_metric_names()
    assert sorted(used - known) == []
    # Reconciles, errors, durations, jobs by phase; loss, learning rate, tokens/s, step, memory.
    for required in (
        "tensorone_operator_reconciles_total",
        "tensorone_operator_errors_total",
        "tensorone_operator_reconcile_duration_seconds_bucket",
        "tensorone_operator_jobs",
        "tensorone_trainer_loss",
        "tensorone_trainer_learning_rate",
        "tensorone_trainer_tokens_per_second",
        "tensorone_trainer_step",
        "tensorone_trainer_memory_bytes",
    ):
        assert required in used, f"the dashboard shows no {required}"
