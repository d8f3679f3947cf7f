"""values.schema.json refuses bad values at install time, naming the value and what is allowed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tensorone_operator.config import DEFAULT_GPU_CATALOG, parse_config

from tensorone.errors import ConfigurationError
from tests.chart.conftest import CHART, RELEASE, HelmRunner

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


# Bad values and what helm says about each.
BAD_VALUES = [
    pytest.param({"runAsUser": 0}, "at '/runAsUser': minimum: got 0, want 1", id="root-user"),
    pytest.param(
        {"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of", id="pull-policy"
    ),
    pytest.param({"image": {"digest": "sha256:abc"}}, "at '/image/digest'", id="short-digest"),
    pytest.param({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0'", id="namespace-name"),
    pytest.param({"replicaCount": 2}, "additional properties 'replicaCount' not allowed", id="unknown-key"),
    pytest.param({"operatorConfig": {"reportPort": 80}}, "at '/operatorConfig/reportPort': minimum", id="report-port"),
    pytest.param({"operatorConfig": {"progressPollSeconds": 0}}, "at '/operatorConfig/progressPollSeconds'", id="poll"),
    pytest.param({"operatorConfig": {"shmSize": "lots"}}, "at '/operatorConfig/shmSize'", id="shm-quantity"),
    pytest.param(
        {"operatorConfig": {"cpuJob": {"cpu": 2}}},
        "at '/operatorConfig/cpuJob/cpu': got number, want string",
        id="cpu-unquoted",
    ),
    pytest.param(
        {"operatorConfig": {"checkGpuNode": False}},
        "additional properties 'checkGpuNode' not allowed",
        id="config-typo",
    ),
    pytest.param(
        {
            "operatorConfig": {
                "gpuCatalog": {
                    "A100_80": {"displayName": "x", "products": ["x"], "memoryPerGpu": "80GB", "hourlyPrice": 1}
                }
            }
        },
        "'A100_80' does not match pattern",
        id="catalog-key",
    ),
    pytest.param(
        {"operatorConfig": {"gpuCatalog": {"mi300x": {"displayName": "AMD MI300X"}}}},
        "at '/operatorConfig/gpuCatalog/mi300x': missing properties 'products', 'memoryPerGpu', 'hourlyPrice'",
        id="catalog-entry-incomplete",
    ),
    pytest.param(
        {"operatorConfig": {"gpuCatalog": {"a100": {"memoryPerGpu": "80 GiB"}}}},
        "at '/operatorConfig/gpuCatalog/a100/memoryPerGpu'",
        id="catalog-memory",
    ),
    pytest.param(
        {"operatorConfig": {"gpuCatalog": {"a100": {"products": ["NVIDIA A100"]}}}},
        "at '/operatorConfig/gpuCatalog/a100/products/0'",
        id="catalog-product-label",
    ),
    pytest.param(
        {"operatorConfig": {"gpuCatalog": {"a100": {"hourlyPrice": -1}}}},
        "at '/operatorConfig/gpuCatalog/a100/hourlyPrice': minimum: got -1, want 0",
        id="catalog-negative-price",
    ),
    pytest.param(
        {"operatorConfig": {"gpuCatalog": {"a100": {"pricePerHour": 2}}}},
        "at '/operatorConfig/gpuCatalog/a100': additional properties 'pricePerHour' not allowed",
        id="catalog-entry-unknown-key",
    ),
    pytest.param(
        {"operatorConfig": {"gpuCatalog": {"l4": {"spot": {"nodeSelector": {"gke spot": "true"}, "hourlyPrice": 1}}}}},
        "invalid propertyName 'gke spot'",
        id="catalog-spot-label-key",
    ),
    pytest.param(
        {"operatorConfig": {"gpuCatalog": {"l4": {"spot": {"nodeSelector": {"spot": "true"}}}}}},
        "at '/operatorConfig/gpuCatalog/l4/spot': missing property 'hourlyPrice'",
        id="catalog-spot-without-price",
    ),
    pytest.param(
        {"operatorConfig": {"gpuCatalog": dict.fromkeys(DEFAULT_GPU_CATALOG)}},
        "at '/operatorConfig/gpuCatalog': minProperties: got 0, want 1",
        id="catalog-emptied",
    ),
    pytest.param(
        {"operatorConfig": {"checkpointStorage": {"storageClassName": "Fast SSD"}}},
        "at '/operatorConfig/checkpointStorage/storageClassName': 'Fast SSD' does not match pattern",
        id="storage-class-name",
    ),
    pytest.param(
        {"operatorConfig": {"trainerImage": "example/trainer:1"}},
        "at '/operatorConfig': additional properties 'trainerImage' not allowed",
        id="config-field-the-chart-sets",
    ),
    pytest.param(
        {"priorityClasses": {"high": {"value": 2000000000}}},
        "at '/priorityClasses/high/value': maximum",
        id="priority-value",
    ),
    pytest.param(
        {"priorityClasses": {"low": {"name": "Low Priority"}}}, "at '/priorityClasses/low/name'", id="priority-name"
    ),
    pytest.param({"logFormat": "xml"}, "at '/logFormat': value must be one of 'json', 'text'", id="log-format"),
    pytest.param({"metrics": {"podMonitor": {"interval": "15"}}}, "at '/metrics/podMonitor/interval'", id="interval"),
]


@pytest.mark.parametrize(("values", "complaint"), BAD_VALUES)
def test_bad_values_fail_helm_template_with_a_clear_message(
    helm: HelmRunner, tmp_path: Path, values: dict[str, Any], complaint: str
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = helm("template", RELEASE, str(CHART), "-f", str(values_file))
    assert result.returncode != 0, f"helm accepted {values}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr, result.stderr


def _merged(defaults: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Values as Helm merges a user's file into the chart's: maps merged key by key, null deletes."""
    merged = dict(defaults)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        case
        for case in BAD_VALUES
        # The chart sets trainerImage itself: the operator would accept it, the values refuse it.
        if isinstance(case.values[0], dict)
        and "operatorConfig" in case.values[0]
        and case.id != "config-field-the-chart-sets"
    ],
)
def test_operator_config_the_schema_refuses_the_operator_refuses_too(override: dict[str, Any], complaint: str) -> None:
    """The schema is generated from OperatorConfig: what it refuses at install time would have
    stopped the operator at start-up, with an error naming the same field."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    with pytest.raises(ConfigurationError) as error:
        parse_config(_merged(defaults, override)["operatorConfig"])
    where = re.search(r"at '/operatorConfig/([^']+)'", complaint)
    if where:
        parts = where.group(1).split("/")
        while parts[-1].isdigit():  # the operator names the list, not the item
            parts.pop()
        assert ".".join(parts) in str(error.value)


def test_the_schema_is_valid_and_the_defaults_meet_it() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(SCHEMA).validate(defaults)


def _properties(schema: dict[str, Any], path: str = "") -> list[str]:
    """Every object-typed schema node that lists properties but forgets additionalProperties."""
    missing = []
    if schema.get("type") == "object" and "properties" in schema and schema.get("additionalProperties") is not False:
        missing.append(path or "/")
    for key, child in (schema.get("properties") or {}).items():
        missing += _properties(child, f"{path}/{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        missing += _properties(schema["additionalProperties"], f"{path}/*")
    return missing


def test_every_values_object_refuses_unknown_keys() -> None:
    """A typo anywhere in the values is an error, not a silently ignored setting."""
    assert _properties(SCHEMA) == []


def test_every_value_is_described() -> None:
    undocumented = [
        key for key, node in SCHEMA["properties"].items() if "description" not in node and node.get("type") != "object"
    ]
    assert undocumented == []
