"""The operator's RBAC grants exactly the access of the operator contract: no wildcards, no Secrets,
nothing missing, nothing more, in cluster-wide and namespaced mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.conftest import RELEASE_NAMESPACE, SCENARIOS, Rendered

Render = Callable[..., Rendered]
# (scope, apiGroup, resource, verb); scope is a namespace, or "cluster" for a ClusterRole binding.
Grant = tuple[str, str, str, str]

# The operator contract's table (helpers/operator-contract.md), namespaced resources.
NAMESPACED_ACCESS: dict[tuple[str, str], set[str]] = {
    ("training.tensorone.ai", "trainingjobs"): {"get", "list", "watch", "patch", "update"},
    ("training.tensorone.ai", "datasets"): {"get", "list", "watch", "patch", "update"},
    ("training.tensorone.ai", "trainingjobs/status"): {"get", "patch", "update"},
    ("training.tensorone.ai", "datasets/status"): {"get", "patch", "update"},
    ("training.tensorone.ai", "trainingjobs/finalizers"): {"update"},
    ("kubeflow.org", "pytorchjobs"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
POD_PROXY: dict[tuple[str, str], set[str]] = {("", "pods/proxy"): {"get"}}
CRD_SCAN: dict[tuple[str, str], set[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"}
}
NODE_READ: dict[tuple[str, str], set[str]] = {("", "nodes"): {"get", "list", "watch"}}
NAMESPACE_READ: dict[tuple[str, str], set[str]] = {("", "namespaces"): {"get", "list", "watch"}}
DANGEROUS_VERBS = {"escalate", "bind", "impersonate", "*"}
ROLE_KINDS = ("Role", "ClusterRole")


def _grants(scope: str, access: dict[tuple[str, str], set[str]]) -> set[Grant]:
    return {(scope, group, resource, verb) for (group, resource), verbs in access.items() for verb in verbs}


def _rule_grants(scope: str, rules: list[dict[str, Any]]) -> set[Grant]:
    return {
        (scope, group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def operator_grants(rendered: Rendered) -> set[Grant]:
    """What the operator's ServiceAccount may do, following every binding whose subject it is."""
    deployment = rendered.one("Deployment")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {
        (role["kind"], role["metadata"].get("namespace"), role["metadata"]["name"]): role
        for role in rendered.objects
        if role["kind"] in ROLE_KINDS
    }
    grants: set[Grant] = set()
    for binding in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding"):
        subjects = binding["subjects"]
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == RELEASE_NAMESPACE
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        binding_namespace = binding["metadata"].get("namespace")
        role_namespace = binding_namespace if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], role_namespace, ref["name"])]
        scope = binding_namespace if binding["kind"] == "RoleBinding" else "cluster"
        grants |= _rule_grants(scope, role["rules"])
    return grants


def test_no_role_uses_wildcards_secrets_or_escalation(rendered: Rendered) -> None:
    for role in (obj for obj in rendered.objects if obj["kind"] in ROLE_KINDS):
        where = f"{rendered.scenario}: {role['kind']}/{role['metadata']['name']}"
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), f"{where} has a wildcard in {field}"
            assert not {"secrets", "serviceaccounts/token"} & set(rule.get("resources", [])), f"{where} grants {rule}"
            assert not DANGEROUS_VERBS & set(rule["verbs"]), f"{where} grants {rule['verbs']}"


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        pytest.param(
            "default",
            _grants("cluster", NAMESPACED_ACCESS | CRD_SCAN | NODE_READ | NAMESPACE_READ),
            id="cluster-wide",
        ),
        pytest.param(
            "namespaced",
            _grants("team-a", NAMESPACED_ACCESS | POD_PROXY)
            | _grants("team-b", NAMESPACED_ACCESS | POD_PROXY)
            | _grants("cluster", CRD_SCAN),
            id="namespaced-no-gpu-check-pod-proxy",
        ),
        pytest.param(
            "namespaced-gpu-check",
            _grants("team-a", NAMESPACED_ACCESS) | _grants("cluster", CRD_SCAN | NODE_READ),
            id="namespaced-gpu-check",
        ),
    ],
)
def test_operator_gets_exactly_the_contracts_access(render: Render, scenario: str, expected: set[Grant]) -> None:
    granted = operator_grants(render(SCENARIOS[scenario], scenario))
    assert sorted(granted - expected) == [], "more access than the contract lists"
    assert sorted(expected - granted) == [], "access the contract lists is missing"


def test_cluster_wide_without_gpu_check_drops_node_read(render: Render) -> None:
    granted = operator_grants(render({"operatorConfig": {"checkGpuNodes": False}}))
    assert ("cluster", "", "nodes", "list") not in granted
    assert ("cluster", "", "namespaces", "watch") in granted


def test_rbac_can_be_left_to_the_cluster_admin(render: Render) -> None:
    rendered = render({"rbac": {"create": False}, "aggregatedRoles": {"enabled": False}})
    assert [obj["kind"] for obj in rendered.objects if "Role" in obj["kind"]] == []


def test_aggregated_user_roles(render: Render) -> None:
    rendered = render({}, "default")
    viewer = rendered.one("ClusterRole", "-viewer")
    editor = rendered.one("ClusterRole", "-editor")
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    viewer_grants = _rule_grants("cluster", viewer["rules"])
    assert {verb for *_, verb in viewer_grants} == {"get", "list", "watch"}
    assert {resource for _, _, resource, _ in viewer_grants} == {
        "trainingjobs",
        "trainingjobs/status",
        "datasets",
        "datasets/status",
    }
    editor_grants = _rule_grants("cluster", editor["rules"])
    # Users write specs (stop, resume and cancel are spec fields); status is the operator's alone.
    assert {resource for _, _, resource, _ in editor_grants} == {"trainingjobs", "datasets"}
    assert {"create", "patch", "update", "delete"} <= {verb for *_, verb in editor_grants}
