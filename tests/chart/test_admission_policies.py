"""The chart's optional ValidatingAdmissionPolicies: rendered only on request, with values checked at
install time, and their CEL evaluated as the API server evaluates it against sample TrainingJobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import celpy
import pytest
from celpy.adapter import json_to_cel

from tests.chart.conftest import CHART, SCENARIOS, HelmRunner, Rendered
from tests.factories import training_job

Render = Callable[..., Rendered]
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def custom_job(image: str, priority: str | None = None) -> dict[str, Any]:
    job = training_job(
        "custom-job",
        model_type="custom",
        config={"baseModel": "x/y", "strategy": "full", "custom": {"image": image}},
    )
    if priority is not None:
        job["spec"]["priority"] = priority
    return job


def llm_job(priority: str | None = None) -> dict[str, Any]:
    job = training_job("llm-job")
    if priority is not None:
        job["spec"]["priority"] = priority
    return job


@dataclass(frozen=True)
class Verdict:
    """What the API server answers: allowed, or the message of the first failed validation."""

    allowed: bool
    message: str = ""


def admit(
    policy: dict[str, Any],
    obj: dict[str, Any],
    namespace: str = "ml-team-a",
    old: dict[str, Any] | None = None,
) -> Verdict:
    """Evaluate a policy's variables in order, then its validations, as the API server does for a
    request that its matchConstraints select."""
    environment = celpy.Environment()
    operation = "UPDATE" if old is not None else "CREATE"
    activation: dict[str, Any] = {
        "object": json_to_cel(obj),
        "oldObject": json_to_cel(old),
        "request": json_to_cel({"operation": operation, "namespace": namespace}),
    }

    def evaluate(expression: str) -> Any:
        return environment.program(environment.compile(expression)).evaluate(activation)

    variables: dict[str, Any] = {}
    for variable in policy["spec"].get("variables", []):
        activation["variables"] = celpy.celtypes.MapType(
            {celpy.celtypes.StringType(k): v for k, v in variables.items()}
        )
        variables[variable["name"]] = evaluate(variable["expression"])
    activation["variables"] = celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in variables.items()})
    for validation in policy["spec"]["validations"]:
        result = evaluate(validation["expression"])
        assert isinstance(result, celpy.celtypes.BoolType), f"{validation['expression']} gave {result!r}"
        if not result:
            return Verdict(False, str(evaluate(validation["messageExpression"])))
    return Verdict(True)


def matches(policy: dict[str, Any], operation: str) -> bool:
    """Whether the policy's matchConstraints select a TrainingJob request of this operation."""
    return any(
        "training.tensorone.ai" in rule["apiGroups"]
        and "trainingjobs" in rule["resources"]
        and operation in rule["operations"]
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
    )


@pytest.fixture
def policies(render: Render) -> Rendered:
    return render(SCENARIOS["admission-policies"], "admission-policies")


def test_no_policy_is_rendered_by_default(render: Render) -> None:
    rendered = render(SCENARIOS["default"], "default")
    assert [obj for obj in rendered.objects if obj["kind"] in POLICY_KINDS] == []


def test_each_policy_has_a_binding_that_names_it(policies: Rendered) -> None:
    names = {policy["metadata"]["name"] for policy in policies.of_kind("ValidatingAdmissionPolicy")}
    assert names == {
        "t1-tensorone-training-operator-custom-image-registries",
        "t1-tensorone-training-operator-priorities",
    }
    bindings = policies.of_kind("ValidatingAdmissionPolicyBinding")
    assert {binding["spec"]["policyName"] for binding in bindings} == names
    assert all(binding["spec"]["validationActions"] == ["Deny"] for binding in bindings)


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("registry.example.com/ml/trainer:1.0", True),
        ("registry.example.com/ml/team-a/trainer@sha256:" + "a" * 64, True),
        ("ghcr.io/tensorone/trainer:0.1.0", True),
        ("registry.example.com/other/trainer:1.0", False),
        ("registry.example.com.evil.io/ml/trainer:1.0", False),
        ("docker.io/library/python:3.11", False),
        ("python:3.11", False),
    ],
)
def test_custom_images_come_only_from_the_allowed_registries(policies: Rendered, image: str, allowed: bool) -> None:
    policy = policies.one("ValidatingAdmissionPolicy", "-custom-image-registries")
    verdict = admit(policy, custom_job(image))
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.message == (
            f"spec.config.custom.image: {image} is not from an allowed registry; "
            "allowed: registry.example.com/ml/, ghcr.io/tensorone/"
        )


def test_jobs_of_the_built_in_trainer_pass_the_registry_policy(policies: Rendered) -> None:
    policy = policies.one("ValidatingAdmissionPolicy", "-custom-image-registries")
    assert admit(policy, llm_job()).allowed


def test_the_registry_policy_checks_creates_only(policies: Rendered) -> None:
    # config is immutable: a job created before the list changed can still be stopped and deleted.
    policy = policies.one("ValidatingAdmissionPolicy", "-custom-image-registries")
    assert matches(policy, "CREATE")
    assert not matches(policy, "UPDATE")


@pytest.mark.parametrize(
    ("namespace", "priority", "allowed"),
    [
        ("ml-team-a", "low", True),
        ("ml-team-a", "normal", True),
        ("ml-team-a", None, True),  # the schema's default, normal
        ("ml-team-a", "high", False),
        ("ml-research", "high", True),
        ("ml-interns", "low", True),
        ("ml-interns", "normal", False),
        ("elsewhere", "normal", True),
        ("elsewhere", "high", False),
    ],
)
def test_priorities_allowed_per_namespace(
    policies: Rendered, namespace: str, priority: str | None, allowed: bool
) -> None:
    policy = policies.one("ValidatingAdmissionPolicy", "-priorities")
    assert matches(policy, "CREATE")
    verdict = admit(policy, llm_job(priority), namespace)
    assert verdict.allowed is allowed
    if not allowed:
        expected = {"ml-team-a": "low, normal", "ml-interns": "low", "elsewhere": "low, normal"}[namespace]
        assert verdict.message == (
            f"spec.priority: {priority} is not allowed in namespace {namespace}; allowed: {expected}"
        )


def test_a_priority_raised_on_update_is_refused_and_a_kept_one_passes(policies: Rendered) -> None:
    policy = policies.one("ValidatingAdmissionPolicy", "-priorities")
    assert matches(policy, "UPDATE")
    raised = admit(policy, llm_job("high"), "ml-team-a", old=llm_job("normal"))
    assert not raised.allowed
    # A job created high before the namespace's list changed can still be suspended and deleted.
    suspended = llm_job("high")
    suspended["spec"]["suspend"] = True
    assert admit(policy, suspended, "ml-team-a", old=llm_job("high")).allowed


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"customImageRegistries": {"enabled": True, "allowedPrefixes": []}},
            "admissionPolicies.customImageRegistries.allowedPrefixes: list at least one registry prefix",
        ),
        (
            {"customImageRegistries": {"enabled": True, "allowedPrefixes": ["registry.example.com"]}},
            "at '/admissionPolicies/customImageRegistries/allowedPrefixes/0'",
        ),
        (
            {"customImageRegistries": {"enabled": True, "allowedPrefixes": ["reg'istry.example.com/"]}},
            "at '/admissionPolicies/customImageRegistries/allowedPrefixes/0'",
        ),
        (
            {"priorities": {"enabled": True, "byNamespace": {"ml-team-a": ["urgent"]}}},
            "/admissionPolicies/priorities/byNamespace/ml-team-a/0",
        ),
        ({"priorities": {"enabled": True, "allowed": []}}, "at '/admissionPolicies/priorities/allowed'"),
        (
            {"validationActions": ["Deny", "Warn"], "priorities": {"enabled": True}},
            "admissionPolicies.validationActions: Deny and Warn cannot be used together",
        ),
    ],
    ids=["no-prefix", "prefix-without-slash", "prefix-with-quote", "unknown-priority", "no-priority", "deny-and-warn"],
)
def test_bad_policy_values_fail_the_install_naming_the_value(
    helm: HelmRunner, tmp_path: Any, values: dict[str, Any], message: str
) -> None:
    import yaml

    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({"admissionPolicies": values}))
    result = helm("template", "t1", str(CHART), "-f", str(values_file))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
