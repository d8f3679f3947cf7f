"""Manifests read and written as kubectl does, ``t1 validate`` and ``t1 convert``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.admission import validate
from tensorone.cli import main
from tensorone.cli.manifests import dump_manifest, load_manifests
from tensorone.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"

BAD_MULTI_DOCUMENT = """\
apiVersion: training.tensorone.ai/v1alpha1
kind: Dataset
metadata: {name: capitals}
spec:
  format: jsonl
  source: {inline: {records: [{text: a}]}}
---
apiVersion: training.tensorone.ai/v1alpha1
kind: TrainingJob
metadata: {name: Bad_Name}
spec:
  modelType: llm
  datasetId: capitals
  config:
    baseModel: x/y
    strategy: lora
    training: {learningRate: 0.5}
  maxWorkers: 33
"""


# --- reading YAML as kubectl does ----------------------------------------------------------------


def test_yaml_reads_exponents_as_numbers_and_keeps_timestamps_as_text() -> None:
    (obj,) = load_manifests("a: 2e-4\nb: 2024-01-15T10:30:00Z\nc: 3\nd: no\n")
    assert obj == {"a": 2e-4, "b": "2024-01-15T10:30:00Z", "c": 3, "d": False}


def test_yaml_multi_document_skips_empty_documents() -> None:
    assert load_manifests("---\na: 1\n---\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]


def test_a_document_that_is_not_an_object_is_refused_naming_its_type() -> None:
    with pytest.raises(ConfigurationError, match="document 2 is a array, not an object"):
        load_manifests("a: 1\n---\n- 1\n")


def test_dumped_manifests_read_back_the_same_strings_that_look_like_numbers_included() -> None:
    obj = {"kind": "TrainingJob", "spec": {"learningRate": 2e-4, "tag": "2e-4", "when": "2024-01-15T10:30:00Z"}}
    text = dump_manifest(obj)
    assert "tag: '2e-4'" in text
    assert load_manifests(text) == [obj]


def test_validate_prints_ok_for_every_example_the_trainer_runs(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("."))
    assert main(["validate", *files]) == 1
    verdicts = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("  ")]
    assert len(verdicts) == sum(len(load_manifests(Path(f).read_text())) for f in files)
    refused = [line for line in verdicts if not line.endswith(": OK")]
    # The reference's YOLOv8 request is valid for the API server; this release's trainer does not
    # build YOLOv8, so the operator refuses it before scheduling anything.
    assert refused == [
        f"{REPO / 'examples/vision-yolo.yaml'}: TrainingJob/custom-object-detection: valid for the API server, "
        "refused by the operator"
    ]


def test_validate_names_what_trains_when_the_operator_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every model type trains; an architecture the trainer does not build is refused by name.
    manifest = tmp_path / "yolo.yaml"
    manifest.write_text(
        "apiVersion: training.tensorone.ai/v1alpha1\nkind: TrainingJob\nmetadata: {name: shapes}\n"
        "spec: {modelType: vision, datasetId: pictures, config: {architecture: yolov8}}\n"
    )
    assert main(["validate", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "TrainingJob/shapes: valid for the API server, refused by the operator" in out
    assert "architecture 'yolov8' is not built by this release's trainer" in out and "Supported: rt-detr-r18" in out


def test_validate_prints_every_field_error_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(BAD_MULTI_DOCUMENT)
    assert main(["validate", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert f"{manifest}: Dataset/capitals: OK" in out
    assert f"{manifest}: TrainingJob/Bad_Name: invalid" in out
    assert "  spec.config.training.learningRate: must be between 1e-06 and 0.1, got 0.5" in out
    assert "  spec.maxWorkers: must be between 1 and 32, got 33" in out
    assert "  metadata.name: " in out


def test_validate_reports_a_missing_file_and_non_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    assert main(["validate", str(broken)]) == 1
    assert "not valid YAML" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1
    assert "no such file" in capsys.readouterr().out


def test_convert_prints_a_valid_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(DATA / "create-llm-lora.json"), "-n", "research"]) == 0
    (manifest,) = load_manifests(capsys.readouterr().out)
    validate(manifest)
    assert manifest["metadata"]["namespace"] == "research"
    assert manifest["spec"]["config"]["training"]["learningRate"] == 2e-4


def test_convert_back_gives_the_original_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = json.loads((DATA / "create-vision.json").read_text())
    assert main(["convert", str(DATA / "create-vision.json")]) == 0
    manifest = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(manifest))
    assert main(["convert", "--to-rest", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == original


def test_convert_refuses_an_invalid_body_naming_rest_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = json.loads((DATA / "create-llm-lora.json").read_text())
    body["config"]["training"]["learning_rate"] = 0.5
    body["maxWorkers"] = 0
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    assert main(["convert", str(path)]) == 1
    err = capsys.readouterr().err
    assert "config.training.learning_rate: must be between 1e-06 and 0.1, got 0.5" in err
    assert "maxWorkers: must be between 1 and 32, got 0" in err


def test_convert_of_non_json_is_a_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "body.json"
    path.write_text("name: not json")
    assert main(["convert", str(path)]) == 2
    assert "CONFIGURATION_ERROR" in capsys.readouterr().err


# Nine lists of nine aliases of the list before: 615 bytes that expand to 9**9 strings.
ALIAS_BOMB = (
    "apiVersion: training.tensorone.ai/v1alpha1\nkind: TrainingJob\nmetadata: {name: billion-laughs}\n"
    "spec:\n  modelType: llm\n  datasetId: chat-data-v2\n  config:\n    baseModel: tiny/llama-lora\n    strategy: lora\n"
    "    parameters:\n"
    '      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"      {name}: &{name} [{','.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(ALIAS_BOMB) == 615
    with pytest.raises(ConfigurationError, match=r"document 1: its aliases expand it to more than 10000 values"):
        load_manifests(ALIAS_BOMB)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert main(["validate", str(bomb)]) == 1
    assert "aliases expand it to more than 10000 values" in capsys.readouterr().out


def test_a_few_aliases_and_merge_keys_read_as_kubectl_reads_them() -> None:
    text = "base: &base {a: 1, b: [x, y]}\nmerged: {<<: *base, b: [z]}\ncopies: [*base, *base]\n"
    assert load_manifests(text) == [
        {
            "base": {"a": 1, "b": ["x", "y"]},
            "merged": {"a": 1, "b": ["z"]},
            "copies": [{"a": 1, "b": ["x", "y"]}, {"a": 1, "b": ["x", "y"]}],
        }
    ]


def test_a_recursive_alias_is_refused_naming_its_anchor() -> None:
    with pytest.raises(
        ConfigurationError, match=r"document 2: the anchored value at line 3, column 7 contains an alias of itself"
    ):
        load_manifests("a: 1\n---\nloop: &loop [1, *loop]\n")


def test_a_document_nested_too_deep_is_refused_with_its_place() -> None:
    with pytest.raises(
        ConfigurationError, match=r"document 1: lists and mappings nest deeper than 100 levels at line 1, column 101"
    ):
        load_manifests("[" * 5000 + "]" * 5000)
    nested: list[Any] = []
    for _ in range(98):
        nested = [nested]
    assert load_manifests("a: " + "[" * 99 + "]" * 99) == [{"a": nested}]


def test_convert_of_json_nested_too_deep_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "body.json"
    path.write_text("[" * 100_000)
    assert main(["convert", str(path)]) == 2
    assert "arrays and objects nest too deep to read" in capsys.readouterr().err


def test_validate_checks_a_job_against_its_dataset_when_both_are_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = (
        "apiVersion: training.tensorone.ai/v1alpha1\nkind: Dataset\nmetadata: {name: pictures}\n"
        "spec: {format: coco, source: {pvc: {claimName: data, path: /p}}, columns: {annotations: a.json}}\n"
    )
    job = (
        "apiVersion: training.tensorone.ai/v1alpha1\nkind: TrainingJob\nmetadata: {name: classify}\n"
        "spec: {modelType: vision, datasetId: pictures, config: {architecture: resnet18, numClasses: 2}}\n"
    )
    (tmp_path / "dataset.yaml").write_text(dataset)
    (tmp_path / "job.yaml").write_text(job)
    # Alone, the job is valid: its Dataset is not there to be checked against.
    assert main(["validate", str(tmp_path / "job.yaml")]) == 0
    capsys.readouterr()
    # With its Dataset (in another file), the operator's refusal is foreseen.
    assert main(["validate", str(tmp_path / "job.yaml"), str(tmp_path / "dataset.yaml")]) == 1
    out = capsys.readouterr().out
    assert "TrainingJob/classify: valid for the API server, refused by the operator" in out
    assert "spec.config.architecture: architecture resnet18 is a classification model, but its coco Dataset" in out
    assert "Dataset/pictures: OK" in out
