"""The Table conversion of custom resources follows kube-apiserver's rules (pure functions)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml

from tests import factories
from tests.kube.emulator import CRD_DIR
from tests.kube.tables import (
    CreatedAtColumn,
    PrinterColumn,
    crd_columns,
    evaluate_steps,
    go_float_text,
    go_json,
    human_duration,
    parse_jsonpath,
    to_table,
    wanted_table_version,
)

NOW = datetime.datetime(2026, 11, 22, 12, 0, 0, tzinfo=datetime.UTC)


def crd_version(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / f"training.tensorone.ai_{plural}.yaml").read_text())
    version: dict[str, Any] = crd["spec"]["versions"][0]
    return version


def training_job(**status: Any) -> dict[str, Any]:
    """A stored TrainingJob with ``status`` as written (not through the model, so an integer stays
    an integer for the printer to convert)."""
    job = factories.training_job(
        "llama-chat", metadata={"creationTimestamp": "2026-11-22T11:55:00Z"}, gpuType="a100", maxWorkers=2
    )
    return {**job, "status": status}


def column(type_: str, json_path: str = ".value") -> PrinterColumn:
    return PrinterColumn(name="C", type=type_, json_path=json_path)


def test_the_training_job_columns_follow_the_crd_after_a_name_column() -> None:
    table = to_table(crd_columns(crd_version("trainingjobs")), [], resource_version="7", now=NOW)
    definitions = table["columnDefinitions"]
    assert [d["name"] for d in definitions] == ["Name", "Phase", "Model", "GPU", "Workers", "Progress", "Loss", "Age"]
    assert [d["type"] for d in definitions] == [
        "string",
        "string",
        "string",
        "string",
        "integer",
        "number",
        "number",
        "date",
    ]
    assert definitions[0]["format"] == "name" and definitions[0]["description"].startswith("Name must be unique")
    assert definitions[1]["description"] == "Phase of the job."
    # A column without a description gets the API server's generated one.
    assert definitions[-1]["description"] == (
        "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp"
    )
    assert {d["priority"] for d in definitions} == {0}
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "7"} and table["rows"] == []


def test_a_filled_status_gives_typed_cells_and_the_age() -> None:
    job = training_job(phase="Running", progress={"percentage": 45}, metrics={"currentLoss": 1.25})
    table = to_table(crd_columns(crd_version("trainingjobs")), [job], resource_version="9", now=NOW)
    (row,) = table["rows"]
    assert row["cells"] == ["llama-chat", "Running", "llm", "a100", 2, 45.0, 1.25, "5m"]
    assert isinstance(row["cells"][5], float)  # a number column turns an integer into a float


def test_jsonpath_misses_give_empty_cells() -> None:
    job = training_job()
    del job["spec"]["gpuType"]
    (row,) = to_table(crd_columns(crd_version("trainingjobs")), [job], resource_version="1", now=NOW)["rows"]
    assert row["cells"] == ["llama-chat", None, "llm", None, 2, None, None, "5m"]


def test_the_dataset_ready_column_filters_the_conditions() -> None:
    columns = crd_columns(crd_version("datasets"))
    dataset: dict[str, Any] = {
        "metadata": {"name": "chat", "creationTimestamp": "2026-11-20T12:00:00Z"},
        "spec": {"format": "jsonl"},
        "status": {"conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]},
    }
    (row,) = to_table(columns, [dataset], resource_version="1", now=NOW)["rows"]
    assert row["cells"] == ["chat", "jsonl", "True", "2d"]
    dataset["status"]["conditions"] = [{"type": "Other", "status": "False"}]
    (row,) = to_table(columns, [dataset], resource_version="1", now=NOW)["rows"]
    assert row["cells"] == ["chat", "jsonl", None, "2d"]


@pytest.mark.parametrize(
    ("type_", "value", "cell"),
    [
        ("integer", 3, 3),
        ("integer", 3.9, 3),  # truncated, as Go's int64(float64)
        ("integer", -3.9, -3),
        ("integer", "3", None),  # a value of another type is not converted
        ("integer", True, None),
        ("number", 2, 2.0),
        ("number", 0.125, 0.125),
        ("number", "0.1", None),
        ("boolean", False, False),
        ("boolean", "true", None),
        ("string", "Running", "Running"),
        ("string", 5, "5"),  # a string column prints any value
        ("string", 0.5, "0.5"),
        ("string", 1e6, "1e+06"),
        ("string", True, "true"),
        ("string", {"b": [1, 2.5], "a": "<x>"}, '{"a":"\\u003cx\\u003e","b":[1,2.5]}'),
        ("date", "2026-11-22T11:59:30Z", "30s"),
        ("date", "2026-11-22T11:59:30.5+00:00", "29s"),
        ("date", "2026-11-22T14:00:00Z", "<invalid>"),  # in the future
        ("date", "yesterday", "<invalid>"),
        ("date", "2026-11-22", "<invalid>"),  # RFC 3339 needs the time
        ("date", "", "<unknown>"),
        ("date", 12, None),
    ],
)
def test_cells_follow_the_column_type(type_: str, value: Any, cell: Any) -> None:
    assert column(type_).cell({"value": value}, NOW) == cell


def test_a_null_value_is_an_empty_cell() -> None:
    assert column("string").cell({"value": None}, NOW) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 12 * 60, "5h12m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (10 * 86400, "10d"),
        (3 * 365 * 86400 + 30 * 86400, "3y30d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_read_like_kubectl(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("path", "found"),
    [
        (".items[0].name", ["a"]),
        (".items[-1].name", ["c"]),
        (".items[0:2].name", ["a", "b"]),
        (".items[::2].name", ["a", "c"]),
        (".items[*].name", ["a", "b", "c"]),
        (".items[0,2].name", ["a", "c"]),
        (".items[?(@.n > 1)].name", ["b", "c"]),
        (".items[?(@.n == 1)].name", ["a"]),
        (".items[?(@.flag)].name", ["b"]),
        ("..n", [1, 2, 3]),
        (".meta['app.kubernetes.io/name']", ["x"]),
        (".meta.app\\.kubernetes\\.io/name", ["x"]),
        (".items[5].name", []),
        (".missing.deeper", []),
        ("{.items[0].name}", ["a"]),
    ],
)
def test_jsonpath_follows_the_kubernetes_dialect(path: str, found: list[Any]) -> None:
    doc = {
        "items": [{"name": "a", "n": 1}, {"name": "b", "n": 2, "flag": True}, {"name": "c", "n": 3}],
        "meta": {"app.kubernetes.io/name": "x"},
    }
    if path == ".items[5].name":
        with pytest.raises(ValueError, match="out of bounds"):
            evaluate_steps(parse_jsonpath(path), doc)
        assert column("string", path).cell(doc, NOW) is None  # an error is an empty cell
        return
    assert evaluate_steps(parse_jsonpath(path), doc) == found


def test_bad_columns_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match=r"additionalPrinterColumns\[C\]\.jsonPath.*unterminated"):
        PrinterColumn(name="C", type="string", json_path=".a[0")
    with pytest.raises(ValueError, match=r"additionalPrinterColumns\[C\]\.type.*integer, number, string"):
        PrinterColumn(name="C", type="float", json_path=".a")


def test_a_version_without_columns_gets_an_age_column() -> None:
    (age,) = crd_columns({"name": "v1"})
    assert (age.name, age.type, age.json_path) == ("Age", "date", ".metadata.creationTimestamp")
    assert age.definition()["description"].startswith("CreationTimestamp is a timestamp")


def test_rows_carry_the_object_as_include_object_asks() -> None:
    job = training_job(phase="Pending")
    columns = crd_columns(crd_version("trainingjobs"))
    (row,) = to_table(columns, [job], resource_version="1", now=NOW)["rows"]
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": job["metadata"],
    }
    (row,) = to_table(columns, [job], resource_version="1", include_object="Object", now=NOW)["rows"]
    assert row["object"] == job
    (row,) = to_table(columns, [job], resource_version="1", include_object="None", now=NOW)["rows"]
    assert "object" not in row
    beta = to_table(columns, [job], resource_version="1", table_version="v1beta1", now=NOW)
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    assert beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    with pytest.raises(ValueError, match=r"includeObject.*None, Metadata, Object"):
        to_table(columns, [job], resource_version="1", include_object="All")


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
            "application/json",
            "v1",
        ),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json", "v1beta1"),
        ("application/json", None),
        ("application/json, application/json;as=Table;v=v1;g=meta.k8s.io", None),
        ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", None),
        ("", None),
    ],
)
def test_the_table_is_answered_only_when_asked_first(accept: str, version: str | None) -> None:
    assert wanted_table_version(accept) == version


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.5, "0.5"), (100000.0, "100000"), (123456789.0, "1.23456789e+08"), (1.5e-05, "1.5e-05"), (0.0001, "0.0001")],
)
def test_floats_print_as_go_prints_them(value: float, text: str) -> None:
    assert go_float_text(value) == text


def test_json_in_cells_is_go_json() -> None:
    assert go_json({"z": 2.0, "a": [1e-7, 1e21, 0.25]}) == '{"a":[1e-7,1e+21,0.25],"z":2}'


def test_watch_events_after_the_first_leave_the_columns_out() -> None:
    columns = crd_columns(crd_version("trainingjobs"))
    later = to_table(columns, [training_job(phase="Queued")], resource_version="3", no_headers=True, now=NOW)
    assert later["columnDefinitions"] is None and later["rows"][0]["cells"][1] == "Queued"


def test_the_default_convertor_prints_the_creation_time_itself() -> None:
    crd = {"metadata": {"name": "trainingjobs.training.tensorone.ai", "creationTimestamp": "2026-11-22T13:00:00+01:00"}}
    table = to_table([CreatedAtColumn()], [crd, {"metadata": {"name": "bare"}}], resource_version="1", now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
    assert table["columnDefinitions"][1]["type"] == "date"
    assert [row["cells"] for row in table["rows"]] == [
        ["trainingjobs.training.tensorone.ai", "2026-11-22T12:00:00Z"],
        ["bare", "0001-01-01T00:00:00Z"],  # Go's zero time
    ]
