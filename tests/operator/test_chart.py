"""The chart's operatorConfig values and schema: generated from OperatorConfig and kept current."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tensorone_operator.chart import (
    BEGIN,
    CHART_DIR,
    CHART_SET_FIELDS,
    END,
    SCHEMA_FILE,
    VALUES_FILE,
    VALUES_KEY,
    generated_files,
    main,
    operator_config_schema,
    render_schema,
    render_values,
    values_section,
)
from tensorone_operator.config import DEFAULT_GPU_CATALOG, GpuType, OperatorConfig, parse_config

from tensorone.api.catalog import SpotCapacity, Toleration
from tensorone.errors import ConfigurationError


def _chart_defaults(config: OperatorConfig) -> dict[str, Any]:
    """What operatorConfig in values.yaml holds for ``config``: all but the fields the chart sets."""
    dumped = config.model_dump(by_alias=True, mode="json")
    # A catalog entry's unset optional fields (no spot capacity) are left out, as absent.
    dumped["gpuCatalog"] = {
        key: {name: value for name, value in entry.items() if value is not None}
        for key, entry in dumped["gpuCatalog"].items()
    }
    return {key: value for key, value in dumped.items() if key not in CHART_SET_FIELDS}


def test_committed_chart_files_are_what_the_model_generates() -> None:
    for path, text in generated_files().items():
        assert path.read_text() == text, f"{path.name} is stale: run `python -m tensorone_operator.chart`"
    assert main(["--check"]) == 0


def test_values_yaml_holds_the_built_in_defaults_and_catalog() -> None:
    values = yaml.safe_load((CHART_DIR / VALUES_FILE).read_text())
    assert values[VALUES_KEY] == _chart_defaults(OperatorConfig())
    catalog = {key: GpuType.model_validate(entry) for key, entry in values[VALUES_KEY]["gpuCatalog"].items()}
    assert catalog == DEFAULT_GPU_CATALOG


def test_values_section_reads_back_as_the_config_it_was_made_from() -> None:
    """Strings YAML would read as something else (numbers, booleans, null, mappings, comments) are
    quoted; the rest stay plain."""
    tricky = OperatorConfig(
        currency="yes",
        shm_size="1",
        checkpoint_storage={"size": "1.5", "storage_class_name": ""},
        gpu_catalog={
            "x1": GpuType(
                display_name="GPU: #1, [fast] & 'new'",
                products=["1", "null", "on", "A.B_c-d"],
                memory_per_gpu="80GB",
                hourly_price=0,
                cpu_per_gpu="12",
            ),
            "x2": GpuType(
                display_name="Spot",
                products=["X2"],
                memory_per_gpu="24GB",
                hourly_price=1,
                spot=SpotCapacity(
                    node_selector={"cloud.google.com/gke-spot": "true"},
                    tolerations=[Toleration(key="cloud.google.com/gke-spot", value="true", effect="NoSchedule")],
                    hourly_price=0.3,
                ),
            ),
        },
    )
    section = values_section(tricky)
    assert section.startswith(BEGIN + "\n") and section.endswith(END + "\n")
    assert yaml.safe_load(section) == {VALUES_KEY: _chart_defaults(tricky)}
    assert parse_config(yaml.safe_load(section)[VALUES_KEY]).gpu_catalog == tricky.gpu_catalog
    assert "memoryPerGpu: 80GB\n" in section and 'cpuPerGpu: "12"\n' in section


def test_every_field_is_commented_in_values_yaml() -> None:
    section = values_section()
    for name, field in OperatorConfig.model_fields.items():
        if field.alias in CHART_SET_FIELDS:
            continue
        assert field.description and " ".join(field.description.split()[:4]) in " ".join(section.split()), name
    for name, field in GpuType.model_fields.items():
        assert f"#   {field.alias}: " in section, name


def test_hand_written_parts_are_kept() -> None:
    values = f"# head\nimage: {{}}\n{BEGIN}\nstale: true\n{END}\n\n# tail\nmetrics: {{}}\n"
    regenerated = render_values(values)
    assert regenerated.startswith(f"# head\nimage: {{}}\n{BEGIN}\n{VALUES_KEY}:\n")
    assert regenerated.endswith(f"{END}\n\n# tail\nmetrics: {{}}\n")
    assert "stale" not in regenerated

    schema = {"type": "object", "properties": {"image": {"type": "object"}, VALUES_KEY: {"stale": True}}}
    regenerated_schema = json.loads(render_schema(json.dumps(schema)))
    assert regenerated_schema["properties"]["image"] == {"type": "object"}
    assert regenerated_schema["properties"][VALUES_KEY] == operator_config_schema()


@pytest.mark.parametrize("values", ["# no markers\n", f"{END}\n{BEGIN}\n"], ids=["missing", "swapped"])
def test_values_without_the_markers_are_refused(values: str) -> None:
    with pytest.raises(ValueError, match="marker lines"):
        render_values(values)


def test_check_fails_on_a_stale_chart(tmp_path: Path) -> None:
    for name in (VALUES_FILE, SCHEMA_FILE):
        shutil.copy(CHART_DIR / name, tmp_path / name)
    values = tmp_path / VALUES_FILE
    values.write_text(values.read_text().replace("hourlyPrice: 4.1\n", "hourlyPrice: 3.2\n", 1))
    schema = tmp_path / SCHEMA_FILE
    schema.write_text(schema.read_text().replace('"maxLength": 128', '"maxLength": 64', 1))
    assert main(["--check", "--chart", str(tmp_path)]) == 1
    assert main(["--chart", str(tmp_path)]) == 0
    assert main(["--check", "--chart", str(tmp_path)]) == 0
    assert values.read_text() == (CHART_DIR / VALUES_FILE).read_text()
    assert schema.read_text() == (CHART_DIR / SCHEMA_FILE).read_text()


def _with(path: str, value: Any) -> dict[str, Any]:
    """The chart's default operatorConfig with one value set (``a.b.c`` path; None deletes)."""
    config = copy.deepcopy(_chart_defaults(OperatorConfig()))
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return config


CONFIGS = {
    "defaults": _chart_defaults(OperatorConfig()),
    "empty": {},
    "poll-fraction": _with("progressPollSeconds", 0.5),
    "new-gpu-minimal": _with(
        "gpuCatalog.mi300x",
        {"displayName": "AMD MI300X", "products": ["AMD-MI300X"], "memoryPerGpu": "192GB", "hourlyPrice": 3},
    ),
    "free-gpu": _with("gpuCatalog.t4.hourlyPrice", 0),
    "storage-class": _with("checkpointStorage.storageClassName", "fast-ssd.example.com"),
    "negative-price": _with("gpuCatalog.a100.hourlyPrice", -1),
    "unknown-key": _with("checkGpuNode", False),
    "unknown-entry-key": _with("gpuCatalog.a100.pricePerHour", 2),
    "entry-incomplete": _with("gpuCatalog.a100.products", None),
    "no-products": _with("gpuCatalog.a100.products", []),
    "product-label": _with("gpuCatalog.a100.products", ["NVIDIA A100"]),
    "product-too-long": _with("gpuCatalog.a100.products", ["a" * 64]),
    "catalog-key": _with("gpuCatalog.A100_80", _chart_defaults(OperatorConfig())["gpuCatalog"]["a100"]),
    "catalog-key-too-long": _with("gpuCatalog." + "a" * 33, _chart_defaults(OperatorConfig())["gpuCatalog"]["a100"]),
    "empty-catalog": _with("gpuCatalog", {}),
    "memory-unit": _with("gpuCatalog.a100.memoryPerGpu", "80 GiB"),
    "cpu-unquoted": _with("cpuJob.cpu", 2),
    "quantity": _with("shmSize", "lots"),
    "poll-zero": _with("progressPollSeconds", 0),
    "grace-too-short": _with("terminationGracePeriodSeconds", 5),
    "port-privileged": _with("reportPort", 80),
    "currency-long": _with("currency", "DOLLARS-US"),
    "storage-class-name": _with("checkpointStorage.storageClassName", "Fast SSD"),
    "trainer-image-here": _with("trainerImage", "example/trainer:1"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_schema_accepts_exactly_what_the_operator_accepts(name: str) -> None:
    """The operatorConfig schema and OperatorConfig agree on every sample: the same configs pass.
    (The fields the chart sets from other values are refused under operatorConfig by the schema;
    the operator would accept them, but the chart overwrites them.)"""
    config = CONFIGS[name]
    schema_ok = jsonschema.Draft7Validator(operator_config_schema()).is_valid(config)
    try:
        parse_config(config)
        operator_ok = True
    except ConfigurationError:
        operator_ok = False
    if name == "trainer-image-here":
        assert (schema_ok, operator_ok) == (False, True)
    else:
        assert schema_ok == operator_ok, f"schema {'accepts' if schema_ok else 'refuses'}, operator the opposite"
