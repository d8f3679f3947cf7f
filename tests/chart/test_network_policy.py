"""The chart's NetworkPolicies, evaluated as a CNI enforces them: who may reach the operator and the
training pods, and what the operator may reach. The evaluator below covers what the chart uses
(matchLabels selectors, namespace selectors, ipBlocks, numbered and named ports)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.chart.conftest import RELEASE_NAMESPACE, SCENARIOS, Rendered

TRAINING_LABELS = {"app.kubernetes.io/name": "tensorone-training", "app.kubernetes.io/managed-by": "tensorone-operator"}
OPERATOR_LABELS = {
    "app.kubernetes.io/name": "tensorone-training-operator",
    "app.kubernetes.io/instance": "t1",
    "app.kubernetes.io/component": "operator",
}
TRAINING_PORTS = {"report": 9400, "pytorchjob-port": 23456}
OPERATOR_PORTS = {"metrics": 8080, "health": 8081}


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace, labels, named container ports) or, with ``ip`` alone, an address outside."""

    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    ip: str = "10.244.0.10"

    @property
    def is_pod(self) -> bool:
        return bool(self.namespace)


def operator() -> Endpoint:
    return Endpoint(RELEASE_NAMESPACE, OPERATOR_LABELS, OPERATOR_PORTS)


def trainer(namespace: str, job: str = "llama") -> Endpoint:
    return Endpoint(namespace, {**TRAINING_LABELS, "training.tensorone.ai/job-name": job}, TRAINING_PORTS)


def pod(namespace: str, **labels: str) -> Endpoint:
    return Endpoint(namespace, labels)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"the evaluator knows matchLabels only: {selector}"
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: dict[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return not other.is_pod and ipaddress.ip_address(other.ip) in ipaddress.ip_network(peer["ipBlock"]["cidr"])
    if not other.is_pod:
        return False
    if "namespaceSelector" in peer:
        namespace_ok = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace})
    else:
        namespace_ok = other.namespace == policy_namespace
    return namespace_ok and _selects(peer.get("podSelector") or {}, other.labels)


def _port_matches(rule_ports: list[dict[str, Any]] | None, target: Endpoint, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        if rule_port.get("protocol", "TCP") != protocol:
            continue
        wanted = rule_port.get("port")
        if wanted is None or wanted == port or (isinstance(wanted, str) and target.ports.get(wanted) == port):
            return True
    return False


@dataclass(frozen=True)
class Connection:
    source: Endpoint
    target: Endpoint
    port: int
    protocol: str


def _side_allows(policies: list[dict[str, Any]], connection: Connection, kind: str) -> bool:
    """Whether the policies on one side of the connection let it through (``kind`` Ingress: the
    target's policies; Egress: the source's)."""
    subject, other = (
        (connection.target, connection.source) if kind == "Ingress" else (connection.source, connection.target)
    )
    selecting = [
        p
        for p in policies
        if subject.is_pod
        and p["metadata"]["namespace"] == subject.namespace
        and _selects(p["spec"]["podSelector"], subject.labels)
        and kind in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True  # not isolated on this side
    peers_key = "from" if kind == "Ingress" else "to"
    for policy in selecting:
        for rule in policy["spec"].get(kind.lower()) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers)
            if peer_ok and _port_matches(rule.get("ports"), connection.target, connection.port, connection.protocol):
                return True
    return False


def allows(rendered: Rendered) -> Callable[..., bool]:
    policies = rendered.of_kind("NetworkPolicy")

    def check(source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP") -> bool:
        connection = Connection(source, target, port, protocol)
        return _side_allows(policies, connection, "Egress") and _side_allows(policies, connection, "Ingress")

    return check


@pytest.fixture
def network(render: Callable[[dict[str, Any], str], Rendered]) -> Rendered:
    return render(SCENARIOS["network-policy"], "network-policy")


def test_the_operator_reaches_the_report_port_of_training_pods_and_nothing_else_there(network: Rendered) -> None:
    check = allows(network)
    for namespace in ("team-a", "team-b", RELEASE_NAMESPACE):
        assert check(operator(), trainer(namespace), 9400)
        assert not check(operator(), trainer(namespace), 23456)
    assert not check(operator(), pod("team-a", app="web"), 80)


def test_training_pods_are_reached_only_by_peers_the_operator_and_the_scrapers(network: Rendered) -> None:
    check = allows(network)
    prometheus = pod("monitoring", app="prometheus")
    assert check(trainer("team-a", "llama"), trainer("team-a", "llama"), 23456)
    assert check(prometheus, trainer("team-a"), 9400)
    assert not check(prometheus, trainer("team-a"), 23456)
    assert not check(pod("team-a", app="web"), trainer("team-a"), 9400)
    assert not check(trainer("team-b"), trainer("team-a"), 23456)
    assert not check(Endpoint(ip="203.0.113.9"), trainer("team-a"), 9400)


def test_the_operator_reaches_dns_and_only_the_api_server_addresses(network: Rendered) -> None:
    check = allows(network)
    assert check(operator(), Endpoint(ip="10.0.0.1"), 6443)
    assert not check(operator(), Endpoint(ip="10.0.0.2"), 6443)
    assert not check(operator(), Endpoint(ip="10.0.0.1"), 22)
    assert check(operator(), Endpoint(ip="10.96.0.10"), 53, "UDP")


def test_the_operator_is_reached_on_metrics_by_scrapers_and_on_health_by_probes(network: Rendered) -> None:
    check = allows(network)
    assert check(pod("monitoring", app="prometheus"), operator(), 8080)
    assert not check(pod("team-a", app="web"), operator(), 8080)
    assert check(Endpoint(ip="192.168.1.5"), operator(), 8081)
    assert not check(pod("team-a", app="web"), operator(), 9999)


def test_every_training_namespace_gets_its_policy(network: Rendered) -> None:
    namespaces = {
        p["metadata"]["namespace"]
        for p in network.of_kind("NetworkPolicy")
        if p["metadata"]["name"].endswith("-training")
    }
    assert namespaces == {RELEASE_NAMESPACE, "team-a", "team-b"}


def test_no_policy_unless_enabled(render: Callable[[dict[str, Any], str], Rendered]) -> None:
    assert render(SCENARIOS["default"], "default").of_kind("NetworkPolicy") == []


def test_the_pod_monitor_bounds_what_a_scrape_may_add(network: Rendered) -> None:
    spec = network.one("PodMonitor")["spec"]
    assert spec["sampleLimit"] == 1000 and spec["labelLimit"] == 16
    assert spec["labelNameLengthLimit"] == 128 and spec["labelValueLengthLimit"] == 256
