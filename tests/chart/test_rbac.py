"""The operator's RBAC grants exactly the API calls of ``tensorone_operator.access`` (the list the
running operator's requests are recorded against in tests/operator/test_access.py): no wildcards,
no Secrets, nothing missing and nothing more, in cluster-wide and namespaced mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tensorone_operator.access import API_CALLS, DEFAULT_BACKENDS, WatchMode, required_access
from tensorone_operator.config import ChildBackend

from tests.chart.conftest import RELEASE_NAMESPACE, SCENARIOS, Rendered

Render = Callable[..., Rendered]
# (scope, apiGroup, resource, verb); scope is a namespace, or "cluster" for a ClusterRole binding.
Grant = tuple[str, str, str, str]

CLUSTER_SCOPED = {(call.group, call.resource) for call in API_CALLS if call.cluster_scoped}
DANGEROUS_VERBS = {"escalate", "bind", "impersonate", "*"}
ROLE_KINDS = ("Role", "ClusterRole")


def expected_grants(
    mode: WatchMode, check_gpu_nodes: bool, namespaces: list[str], backends: frozenset[ChildBackend] = DEFAULT_BACKENDS
) -> set[Grant]:
    """The list's calls for this mode, where the chart must grant them: namespaced resources in each
    watched namespace (namespaced mode) or cluster-wide; cluster-scoped ones cluster-wide."""
    grants: set[Grant] = set()
    for (group, resource), verbs in required_access(mode, check_gpu_nodes, backends).items():
        scoped = mode is WatchMode.CLUSTER_WIDE or (group, resource) in CLUSTER_SCOPED
        for scope in ["cluster"] if scoped else namespaces:
            grants |= {(scope, group, resource, verb) for verb in verbs}
    return grants


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
    deployment = rendered.one("Deployment", component="operator")
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
    ("scenario", "mode", "check_gpu_nodes", "namespaces"),
    [
        pytest.param("default", WatchMode.CLUSTER_WIDE, True, [], id="cluster-wide"),
        pytest.param("namespaced", WatchMode.NAMESPACED, False, ["team-a", "team-b"], id="namespaced-no-gpu-check"),
        pytest.param("namespaced-gpu-check", WatchMode.NAMESPACED, True, ["team-a"], id="namespaced-gpu-check"),
    ],
)
def test_operator_gets_exactly_the_access_its_api_calls_need(
    render: Render, scenario: str, mode: WatchMode, check_gpu_nodes: bool, namespaces: list[str]
) -> None:
    granted = operator_grants(render(SCENARIOS[scenario], scenario))
    expected = expected_grants(mode, check_gpu_nodes, namespaces)
    assert sorted(granted - expected) == [], "granted, and no API call of tensorone_operator.access needs it"
    assert sorted(expected - granted) == [], "an API call of tensorone_operator.access needs it, and it is not granted"


def test_cluster_wide_without_gpu_check_drops_node_read(render: Render) -> None:
    granted = operator_grants(render({"operatorConfig": {"checkGpuNodes": False}}))
    assert granted == expected_grants(WatchMode.CLUSTER_WIDE, False, [])
    assert not {grant for grant in granted if grant[2] in {"nodes", "namespaces"}}


@pytest.mark.parametrize(
    ("values", "backends"),
    [
        ({"backend": "trainjob"}, {ChildBackend.trainjob}),
        ({"namespaceBackends": {"team-b": "trainjob"}}, {ChildBackend.pytorchjob, ChildBackend.trainjob}),
    ],
)
def test_the_trainjob_backend_grants_trainjobs_and_only_the_backends_in_use(
    render: Render, values: dict[str, Any], backends: set[ChildBackend]
) -> None:
    granted = operator_grants(render({"operatorConfig": values}))
    assert granted == expected_grants(WatchMode.CLUSTER_WIDE, True, [], frozenset(backends))


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
