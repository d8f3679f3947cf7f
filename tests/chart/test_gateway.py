"""The gateway in the chart: off by default, one value turns on its own Deployment and Service,
and its pods hold no credential (requests act as their callers)."""

from __future__ import annotations

from collections.abc import Callable

from tests.chart.conftest import SCENARIOS, Rendered

Render = Callable[..., Rendered]


def gateway_objects(rendered: Rendered) -> list[str]:
    return [
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in rendered.objects
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "gateway"
    ]


def test_the_gateway_is_off_by_default(render: Render) -> None:
    assert gateway_objects(render(SCENARIOS["default"], "default")) == []


def test_one_value_deploys_the_gateway_without_a_token_of_its_own(render: Render) -> None:
    rendered = render(SCENARIOS["gateway"], "gateway")
    assert sorted(gateway_objects(rendered)) == [
        "Deployment/t1-tensorone-training-operator-gateway",
        "Service/t1-tensorone-training-operator-gateway",
    ]
    pod = rendered.one("Deployment", "-gateway")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert "--namespace=ml" in container["args"]
    assert "--ca-file=/etc/tensorone/kube-ca/ca.crt" in container["args"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["kube-ca"]["configMap"]["name"] == "kube-root-ca.crt"
    assert volumes["config"]["configMap"]["name"] == "t1-tensorone-training-operator-config"
    service = rendered.one("Service", "-gateway")["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    assert service["selector"]["app.kubernetes.io/component"] == "gateway"
