"""The committed CRDs: generated from the models, structural, bounded, and with sound CEL rules."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ConfigDict, Field

from tensorone.api import crd
from tensorone.api.crd import CHART_CRD_DIR, CRD_DIR, generated_files, load_crds, rule_problems
from tensorone.api.v1alpha1.base import ApiModel, cel

COMMITTED = load_crds(CRD_DIR)
STRING_FORMATS_WITHOUT_LENGTH = {"date-time"}


@pytest.mark.parametrize("directory", [CRD_DIR, CHART_CRD_DIR], ids=["crds", "chart-crds"])
def test_committed_crds_are_what_the_models_generate(directory: Path) -> None:
    generated = generated_files()
    on_disk = {path.name: path.read_text() for path in directory.glob("*.yaml")}
    assert sorted(on_disk) == sorted(generated), "run `python -m tensorone.api.crd`"
    for name, text in generated.items():
        assert on_disk[name] == text, f"{directory.name}/{name} is stale: run `python -m tensorone.api.crd`"


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties by name, array items as [])."""
    yield path or "<root>", schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _schemas() -> list[Any]:
    return [
        pytest.param(version["schema"]["openAPIV3Schema"], id=f"{kind}-{version['name']}")
        for kind, crd in sorted(COMMITTED.items())
        for version in crd["spec"]["versions"]
    ]


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """Violations of the Kubernetes structural-schema rules this project can run into."""
    problems: list[str] = []
    for path, node in _nodes(schema):
        for keyword in ("$ref", "$defs", "definitions", "nullable"):
            if keyword in node:
                problems.append(f"{path}: has {keyword}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false")
        for combinator in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(combinator, []):
                if branch.get("type") == "null":
                    problems.append(f"{path}: {combinator} with a null branch")
                elif "type" in branch or "properties" in branch:
                    problems.append(f"{path}: {combinator} branch declares a type or properties")
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        if not typed and not (node.get("x-kubernetes-preserve-unknown-fields") and path != "<root>"):
            problems.append(f"{path}: no type")
        if node.get("properties") and node.get("additionalProperties"):
            problems.append(f"{path}: both properties and additionalProperties")
    return problems


@pytest.mark.parametrize("schema", _schemas())
def test_schema_is_structural(schema: dict[str, Any]) -> None:
    assert structural_problems(schema) == []


def test_structural_check_catches_what_pydantic_would_emit_unconverted() -> None:
    raw = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/A"},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "c": {"type": "object", "additionalProperties": False, "properties": {"d": {}}},
        },
    }
    assert structural_problems(raw) == [
        "a: has $ref",
        "a: no type",
        "b: anyOf branch declares a type or properties",
        "b: anyOf with a null branch",
        "b: no type",
        "c: additionalProperties: false",
        "c.d: no type",
    ]


@pytest.mark.parametrize("schema", _schemas())
def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    missing = [
        path
        for path, node in _nodes(schema)
        if path != "<root>" and not path.endswith("[]") and not str(node.get("description", "")).strip()
    ]
    # apiVersion/kind/metadata/spec/status of the root are described by Kubernetes itself.
    assert [p for p in missing if p != "metadata"] == []


@pytest.mark.parametrize("schema", _schemas())
def test_strings_and_arrays_are_bounded_for_cel_cost(schema: dict[str, Any]) -> None:
    unbounded: list[str] = []
    for path, node in _nodes(schema):
        if path in ("apiVersion", "kind"):
            continue  # fixed by the API server, never seen by our rules
        if node.get("type") == "string" and not (
            "maxLength" in node or "enum" in node or node.get("format") in STRING_FORMATS_WITHOUT_LENGTH
        ):
            unbounded.append(f"{path}: string without maxLength")
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(f"{path}: array without maxItems")
    assert unbounded == []


@pytest.mark.parametrize("schema", _schemas())
def test_list_map_keys_are_required_properties(schema: dict[str, Any]) -> None:
    for path, node in _nodes(schema):
        if node.get("x-kubernetes-list-type") == "map":
            keys = node.get("x-kubernetes-list-map-keys")
            assert keys, f"{path}: list-type map without keys"
            items = node["items"]
            for key in keys:
                assert key in items.get("required", []) or "default" in items["properties"][key], (
                    f"{path}: map key {key} must be required or defaulted"
                )


@pytest.mark.parametrize("kind", sorted(COMMITTED))
def test_every_cel_rule_compiles_and_selects_declared_fields(kind: str) -> None:
    assert rule_problems(COMMITTED[kind]) == []


def test_rule_checker_finds_a_misspelt_field_and_a_syntax_error() -> None:
    crd = copy.deepcopy(COMMITTED["TrainingJob"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        {"rule": "has(self.config.baseModle)", "message": "typo"},
        {"rule": "self.maxWorkers >", "message": "syntax"},
    ]
    problems = rule_problems(crd)
    assert len(problems) == 2
    assert "undefined field config.baseModle" in problems[0]
    assert "does not compile" in problems[1]


class _MisspeltSpec(ApiModel):
    """A spec whose rule selects a field it does not have."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [cel("has(self.baseModle)", "typo")]})
    base_model: str = Field(max_length=10, description="The field the rule means.")


class _Misspelt(ApiModel):
    """A kind with that spec."""

    spec: _MisspeltSpec = Field(description="Desired state.")
    status: dict[str, str] | None = Field(default=None, description="Observed state.")


@pytest.mark.parametrize("argv", [[], ["--check"]], ids=["generate", "check"])
def test_the_generator_refuses_a_rule_that_selects_an_undefined_field(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(crd, "KINDS", [crd.Kind(model=_Misspelt, kind="Misspelt", plural="misspelts")])
    monkeypatch.setattr(crd, "CRD_DIR", tmp_path / "crds")
    monkeypatch.setattr(crd, "CHART_CRD_DIR", tmp_path / "chart-crds")
    assert crd.main(argv) == 1
    err = capsys.readouterr().err
    assert "CEL rules the API server would refuse" in err
    assert "Misspelt: spec: rule 'has(self.baseModle)' selects undefined field baseModle" in err
    assert list(tmp_path.iterdir()) == [], "nothing is written"


def test_root_rules_see_only_name_and_generate_name_of_metadata() -> None:
    crd = copy.deepcopy(COMMITTED["TrainingJob"])
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    root["x-kubernetes-validations"] = [{"rule": "self.metadata.namespace == 'x'", "message": "m"}]
    assert rule_problems(crd) == [
        "<object>: rule \"self.metadata.namespace == 'x'\" selects undefined field metadata.namespace"
    ]


def test_committed_files_are_plain_yaml_documents() -> None:
    for directory in (CRD_DIR, CHART_CRD_DIR):
        for path in directory.glob("*.yaml"):
            documents = list(yaml.safe_load_all(path.read_text()))
            assert len(documents) == 1 and documents[0]["kind"] == "CustomResourceDefinition", path
