"""Validation as the API server does it: good manifests pass, each bad one is refused naming its field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.admission import committed_crds, validate
from tensorone.api.crd import load_crds
from tensorone.cli.manifests import load_manifests
from tensorone.errors import FieldError, ValidationFailed

REPO = Path(__file__).resolve().parents[2]
# Hidden files are editors' and tools' scratch copies, not examples.
EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("."))

LLM_JOB = load_manifests("""
apiVersion: training.tensorone.ai/v1alpha1
kind: TrainingJob
metadata: {name: llama-7b-finetune, namespace: research}
spec:
  modelType: llm
  datasetId: instructions
  config:
    baseModel: meta-llama/Llama-2-7b-hf
    strategy: lora
    parameters: {rank: 16, alpha: 32, dropout: 0.1, targetModules: [q_proj, v_proj]}
    training: {epochs: 3, batchSize: 4, learningRate: 2e-4, evalSplit: 0.1, evalSteps: 50}
    optimization: {mixedPrecision: bf16, gradientCheckpointing: true}
  gpuType: a100
  gpusPerWorker: 2
  maxWorkers: 2
  tags: [llama, lora]
""")[0]

VISION_JOB = load_manifests("""
apiVersion: training.tensorone.ai/v1alpha1
kind: TrainingJob
metadata: {name: custom-object-detection}
spec:
  modelType: vision
  datasetId: objects
  config:
    architecture: yolov8
    inputSize: [640, 640]
    numClasses: 80
    training: {epochs: 100, batchSize: 16, learningRate: 0.01, momentum: 0.937}
    augmentation: {mixup: 0.1, hsvH: 0.015}
  gpuType: v100
  maxWorkers: 4
""")[0]

CUSTOM_JOB = load_manifests("""
apiVersion: training.tensorone.ai/v1alpha1
kind: TrainingJob
metadata: {name: ticket-classifier}
spec:
  modelType: custom
  datasetId: tickets
  config:
    custom:
      image: registry.example.com/trainer:1.0
      args: [--epochs, "5"]
      env: [{name: LOG_LEVEL, value: info}]
""")[0]

CPU_JOB = load_manifests("""
apiVersion: training.tensorone.ai/v1alpha1
kind: TrainingJob
metadata: {name: cpu-dev}
spec:
  modelType: llm
  datasetId: greetings
  config:
    baseModel: sshleifer/tiny-gpt2
    strategy: lora
    optimization: {mixedPrecision: "no"}
""")[0]

DATASET = load_manifests("""
apiVersion: training.tensorone.ai/v1alpha1
kind: Dataset
metadata: {name: instructions}
spec:
  format: jsonl
  source:
    pvc: {claimName: training-data, path: /llama/train.jsonl}
  columns: {prompt: prompt, completion: completion}
""")[0]

STATUS = load_manifests("""
phase: Running
observedGeneration: 1
conditions:
  - {type: Ready, status: "True", reason: Running, lastTransitionTime: 2024-01-15T10:35:00Z}
progress: {currentEpoch: 2, totalEpochs: 3, currentStep: 1247, totalSteps: 1875, percentage: 66.5}
metrics: {currentLoss: 0.342, bestLoss: 0.298, learningRate: 1.8e-4, throughput: 1250 tokens/sec}
checkpoints:
  - {id: ckpt-epoch-1, epoch: 1, loss: 0.456, createdAt: 2024-01-15T11:15:00Z, size: 2.3GB}
startedAt: 2024-01-15T10:35:00Z
""")[0]

DELETE = object()


def mutated(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted paths set (or removed with DELETE); ``[i]`` indexes lists."""
    obj = copy.deepcopy(base)
    for path, value in changes.items():
        parts: list[str | int] = []
        for part in path.split("."):
            name, _, index = part.partition("[")
            parts.append(name)
            if index:
                parts.append(int(index.rstrip("]")))
        node: Any = obj
        for key in parts[:-1]:
            if isinstance(key, str) and key not in node:
                node[key] = {}
            node = node[key]
        if value is DELETE:
            del node[parts[-1]]
        else:
            node[parts[-1]] = copy.deepcopy(value)
    return obj


def errors_of(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    with pytest.raises(ValidationFailed) as failed:
        validate(obj, old)
    return failed.value.errors


# --- good manifests ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_object_validates(path: Path) -> None:
    objects = load_manifests(path.read_text())
    assert objects, f"{path.name} holds no object"
    for obj in objects:
        validate(obj)


def test_the_user_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    expected = {"llama-lora.yaml", "vision-yolo.yaml", "custom-image.yaml", "cpu-dev-job.yaml"}
    assert expected <= names
    assert {"dataset-pvc.yaml", "dataset-uri.yaml", "dataset-huggingface.yaml", "dataset-inline.yaml"} <= names


@pytest.mark.parametrize(
    "obj", [LLM_JOB, VISION_JOB, CUSTOM_JOB, CPU_JOB, DATASET], ids=["llm", "vision", "custom", "cpu", "dataset"]
)
def test_base_manifests_validate(obj: dict[str, Any]) -> None:
    validate(obj)


def test_status_is_validated_and_accepted_when_valid() -> None:
    validate({**LLM_JOB, "status": STATUS}, LLM_JOB)


# --- bad manifests: each a small mutation of a good one ----------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    base: dict[str, Any]
    changes: dict[str, Any]
    field: str
    says: str
    old: dict[str, Any] | None = None


def _old(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    return mutated(base, changes)


BAD = [
    # ranges from the reference
    Bad("learning-rate-above-0.1", LLM_JOB, {"spec.config.training.learningRate": 0.5},
        "spec.config.training.learningRate", "must be between 1e-06 and 0.1, got 0.5"),
    Bad("learning-rate-below-1e-6", LLM_JOB, {"spec.config.training.learningRate": 1e-7},
        "spec.config.training.learningRate", "between 1e-06 and 0.1"),
    Bad("zero-epochs", LLM_JOB, {"spec.config.training.epochs": 0}, "spec.config.training.epochs", "between 1 and"),
    Bad("33-workers", LLM_JOB, {"spec.maxWorkers": 33}, "spec.maxWorkers", "must be between 1 and 32, got 33"),
    Bad("zero-workers", LLM_JOB, {"spec.maxWorkers": 0}, "spec.maxWorkers", "between 1 and 32"),
    Bad("workers-as-text", LLM_JOB, {"spec.maxWorkers": "two"}, "spec.maxWorkers", "must be of type integer"),
    Bad("17-gpus-per-worker", LLM_JOB, {"spec.gpusPerWorker": 17}, "spec.gpusPerWorker", "between 1 and 16"),
    Bad("eval-split-above-half", LLM_JOB, {"spec.config.training.evalSplit": 0.6},
        "spec.config.training.evalSplit", "between 0.0 and 0.5"),
    Bad("lora-dropout-0.95", LLM_JOB, {"spec.config.parameters.dropout": 0.95},
        "spec.config.parameters.dropout", "between 0.0 and 0.9"),
    Bad("lora-rank-0", LLM_JOB, {"spec.config.parameters.rank": 0}, "spec.config.parameters.rank", "between 1 and"),
    Bad("momentum-1", VISION_JOB, {"spec.config.training.momentum": 1.0},
        "spec.config.training.momentum", "at least 0.0 and less than 1.0"),
    Bad("runtime-10s", LLM_JOB, {"spec.maxRuntimeSeconds": 10}, "spec.maxRuntimeSeconds", "between 60 and"),
    # enums
    Bad("model-type-audio", LLM_JOB, {"spec.modelType": "audio"},
        "spec.modelType", "must be one of llm, vision, multimodal, custom, got 'audio'"),
    Bad("strategy-prefix", LLM_JOB, {"spec.config.strategy": "prefix"},
        "spec.config.strategy", "must be one of lora, qlora, full"),
    Bad("priority-urgent", LLM_JOB, {"spec.priority": "urgent"}, "spec.priority", "must be one of high, normal, low"),
    Bad("lr-scheduler-step", LLM_JOB, {"spec.config.training.lrScheduler": "step"},
        "spec.config.training.lrScheduler", "linear, cosine, constant"),
    Bad("unquoted-no-is-boolean", CPU_JOB, {"spec.config.optimization.mixedPrecision": False},
        "spec.config.optimization.mixedPrecision", "quote the value"),
    # names
    Bad("name-54-characters", LLM_JOB, {"metadata.name": "a" * 54}, "metadata.name", "at most 53 characters"),
    Bad("name-with-underscore", LLM_JOB, {"metadata.name": "llama_7b"}, "metadata.name", "DNS"),
    Bad("name-upper-case", LLM_JOB, {"metadata.name": "Llama"}, "metadata.name", "DNS"),
    Bad("name-starts-with-digit", LLM_JOB, {"metadata.name": "7b-llama"}, "metadata.name", "DNS-1035 label"),
    Bad("name-missing", LLM_JOB, {"metadata.name": DELETE}, "metadata.name", "required"),
    Bad("dataset-id-with-underscore", LLM_JOB, {"spec.datasetId": "ds_123"}, "spec.datasetId", "must match"),
    Bad("gpu-type-upper-case", LLM_JOB, {"spec.gpuType": "A100"}, "spec.gpuType", "must match"),
    Bad("tag-with-space", LLM_JOB, {"spec.tags": ["big model"]}, "spec.tags[0]", "must match"),
    Bad("duplicate-tag", LLM_JOB, {"spec.tags": ["a", "a"]}, "spec.tags[1]", "duplicate value 'a'"),
    Bad("33-tags", LLM_JOB, {"spec.tags": [f"t{i}" for i in range(33)]}, "spec.tags", "at most 32 items"),
    Bad("description-too-long", LLM_JOB, {"spec.description": "x" * 2049}, "spec.description", "at most 2048"),
    Bad("resume-from-bad-id", LLM_JOB, {"spec.resumeFrom": "Ckpt!"}, "spec.resumeFrom", "must match"),
    Bad("checkpoint-size-not-a-quantity", LLM_JOB, {"spec.checkpointStorage": {"size": "20GB"}},
        "spec.checkpointStorage.size", "must match"),
    Bad("input-size-three-numbers", VISION_JOB, {"spec.config.inputSize": [640, 640, 3]},
        "spec.config.inputSize", "exactly 2 items"),
    Bad("input-size-8-pixels", VISION_JOB, {"spec.config.inputSize": [8, 640]},
        "spec.config.inputSize[0]", "between 16 and 8192"),
    # required fields
    Bad("no-model-type", LLM_JOB, {"spec.modelType": DELETE}, "spec.modelType", "required"),
    Bad("no-config", LLM_JOB, {"spec.config": DELETE}, "spec.config", "required"),
    Bad("no-spec", LLM_JOB, {"spec": DELETE}, "spec", "required"),
    Bad("custom-without-image", CUSTOM_JOB, {"spec.config.custom.image": DELETE}, "spec.config.custom.image", "required"),
    # strategy- and model-specific fields (CEL)
    Bad("lora-parameters-with-full", LLM_JOB, {"spec.config.strategy": "full"},
        "spec.config.parameters", "applies only to strategy lora or qlora"),
    Bad("vision-fields-on-llm", LLM_JOB, {"spec.config.numClasses": 10},
        "spec.config", "apply only to modelType vision"),
    Bad("custom-without-custom", CUSTOM_JOB, {"spec.config.custom": DELETE, "spec.config.baseModel": "x/y"},
        "spec.config", "config.custom (image, command, args, env) is required"),
    Bad("custom-container-on-llm", LLM_JOB, {"spec.config.custom": {"image": "busybox"}},
        "spec.config.custom", "applies only to modelType custom"),
    Bad("llm-without-base-model", LLM_JOB, {"spec.config.baseModel": DELETE},
        "spec.config", "baseModel and config.strategy"),
    Bad("llm-without-strategy", LLM_JOB, {"spec.config.strategy": DELETE, "spec.config.parameters": DELETE},
        "spec.config", "baseModel and config.strategy"),
    Bad("vision-without-architecture", VISION_JOB, {"spec.config.architecture": DELETE},
        "spec.config", "architecture (or config.baseModel) is required"),
    Bad("vision-with-lora", VISION_JOB, {"spec.config.strategy": "lora"},
        "spec.config.strategy", "must be full or absent"),
    Bad("qlora-without-gpu", CPU_JOB, {"spec.config.strategy": "qlora"}, "spec.gpuType", "qlora needs a GPU"),
    Bad("fp16-on-cpu", CPU_JOB, {"spec.config.optimization.mixedPrecision": "fp16"},
        "spec.config.optimization.mixedPrecision", "fp16 needs a GPU"),
    Bad("fp16-with-qlora", LLM_JOB, {"spec.config.strategy": "qlora", "spec.config.optimization.mixedPrecision": "fp16"},
        "spec.config.optimization.mixedPrecision", "not supported with strategy qlora"),
    Bad("gpus-per-worker-without-gpu", CPU_JOB, {"spec.gpusPerWorker": 1}, "spec.gpusPerWorker", "needs gpuType"),
    Bad("spot-without-gpu", CPU_JOB, {"spec.spot": True}, "spec.spot", "spot needs gpuType"),
    Bad("eval-steps-without-eval-split", LLM_JOB, {"spec.config.training.evalSplit": 0},
        "spec.config.training.evalSteps", "needs config.training.evalSplit greater than 0"),
    Bad("duplicate-env-name", CUSTOM_JOB, {"spec.config.custom.env": [{"name": "A"}, {"name": "A", "value": "b"}]},
        "spec.config.custom.env[1]", "duplicate entry with name='A'"),
    Bad("env-name-starts-with-digit", CUSTOM_JOB, {"spec.config.custom.env": [{"name": "1X"}]},
        "spec.config.custom.env[0].name", "must match"),
    # experiment tracking
    Bad("tracking-on-custom", CUSTOM_JOB, {"spec.config.tracking": {"tensorboard": {}}},
        "spec.config.tracking", "a custom image tracks experiments with its own code"),
    Bad("tracking-without-tracker", LLM_JOB, {"spec.config.tracking": {"runName": "x"}},
        "spec.config.tracking", "needs at least one of mlflow, tensorboard or wandb"),
    Bad("mlflow-two-credentials", LLM_JOB,
        {"spec.config.tracking": {"mlflow": {"trackingUri": "https://mlflow.example.com",
                                             "credentialsSecret": {"name": "mlflow"}, "tokenSecret": {"name": "t"}}}},
        "spec.config.tracking.mlflow.tokenSecret", "not both"),
    Bad("mlflow-uri-not-http", LLM_JOB, {"spec.config.tracking": {"mlflow": {"trackingUri": "file:///tmp/mlruns"}}},
        "spec.config.tracking.mlflow.trackingUri", "must match"),
    Bad("mlflow-credentials-inline", LLM_JOB,
        {"spec.config.tracking": {"mlflow": {"trackingUri": "https://m.example.com", "password": "hunter2"}}},
        "spec.config.tracking.mlflow.password", "unknown field"),
    Bad("tensorboard-log-dir-escapes", LLM_JOB, {"spec.config.tracking": {"tensorboard": {"logDir": "../x"}}},
        "spec.config.tracking.tensorboard.logDir", "must match"),
    Bad("tensorboard-log-dir-is-a-checkpoint", LLM_JOB,
        {"spec.config.tracking": {"tensorboard": {"logDir": "ckpt-step-5"}}},
        "spec.config.tracking.tensorboard.logDir", "must not be a checkpoint's name"),
    Bad("wandb-online-without-key", LLM_JOB, {"spec.config.tracking": {"wandb": {"project": "llama"}}},
        "spec.config.tracking.wandb.apiKeySecret", "required in mode online"),
    Bad("wandb-unknown-mode", LLM_JOB, {"spec.config.tracking": {"wandb": {"project": "llama", "mode": "shared"}}},
        "spec.config.tracking.wandb.mode", "online, offline"),
    # spec.output: the upload of the model
    Bad("output-on-custom", CUSTOM_JOB, {"spec.output": {"uri": "s3://models/team"}},
        "spec.output", "a custom image uploads its model with its own code"),
    Bad("output-uri-not-s3", LLM_JOB, {"spec.output": {"uri": "gs://models/team"}}, "spec.output.uri", "must match"),
    Bad("output-uri-bucket-upper-case", LLM_JOB, {"spec.output": {"uri": "s3://Models/team"}},
        "spec.output.uri", "must match"),
    Bad("output-uri-empty-segment", LLM_JOB, {"spec.output": {"uri": "s3://models//team"}},
        "spec.output.uri", "must match"),
    Bad("output-endpoint-not-http", LLM_JOB,
        {"spec.output": {"uri": "s3://models", "endpointUrl": "minio.minio.svc:9000"}},
        "spec.output.endpointUrl", "must match"),
    Bad("output-inline-credentials", LLM_JOB,
        {"spec.output": {"uri": "s3://models", "accessKeyId": "AKIA0000", "secretAccessKey": "x"}},
        "spec.output.accessKeyId", "unknown field"),
    Bad("output-secret-name-invalid", LLM_JOB,
        {"spec.output": {"uri": "s3://models", "credentialsSecret": {"name": "S3_Creds"}}},
        "spec.output.credentialsSecret.name", "must match"),
    Bad("output-changed", LLM_JOB, {"spec.output": {"uri": "s3://models/b"}}, "spec.output", "output is immutable",
        old=mutated(LLM_JOB, {"spec.output": {"uri": "s3://models/a"}})),
    Bad("output-added", LLM_JOB, {"spec.output": {"uri": "s3://models/a"}}, "spec.output", "output is immutable",
        old=LLM_JOB),
    # unknown fields
    Bad("unknown-spec-field", LLM_JOB, {"spec.foo": 1}, "spec.foo", "unknown field"),
    Bad("unknown-config-field", LLM_JOB, {"spec.config.training.lr": 0.1}, "spec.config.training.lr", "unknown field"),
    Bad("snake-case-in-manifest", LLM_JOB, {"spec.config.training.batch_size": 4},
        "spec.config.training.batch_size", "allowed here: epochs, batchSize"),
    Bad("unknown-metadata-field", LLM_JOB, {"metadata.labelz": {}}, "metadata.labelz", "unknown field"),
    Bad("wrong-api-version", LLM_JOB, {"apiVersion": "training.tensorone.ai/v1"},
        "apiVersion", "must be training.tensorone.ai/v1alpha1"),
    Bad("api-version-a-list", LLM_JOB, {"apiVersion": ["training.tensorone.ai/v1alpha1"]},
        "apiVersion", "must be training.tensorone.ai/v1alpha1"),
    Bad("api-version-a-map", LLM_JOB, {"apiVersion": {"group": "training.tensorone.ai"}},
        "apiVersion", "must be training.tensorone.ai/v1alpha1"),
    Bad("unknown-kind", LLM_JOB, {"kind": "TrainingRun"}, "kind", "must be one of Dataset, TrainingJob"),
    Bad("kind-a-list", LLM_JOB, {"kind": ["TrainingJob"]}, "kind", "must be one of Dataset, TrainingJob"),
    # datasets
    Bad("dataset-two-sources", DATASET, {"spec.source.uri": "s3://bucket/data.jsonl"},
        "spec.source", "exactly one of pvc, uri, huggingFace or inline"),
    Bad("dataset-no-source", DATASET, {"spec.source": {}}, "spec.source", "exactly one of pvc, uri, huggingFace or inline"),
    Bad("dataset-format-xml", DATASET, {"spec.format": "xml"}, "spec.format", "must be one of jsonl, json, csv"),
    Bad("dataset-prompt-without-completion", DATASET, {"spec.columns.completion": DELETE},
        "spec.columns", "prompt and columns.completion go together"),
    Bad("dataset-text-and-messages", DATASET, {"spec.columns": {"text": "t", "messages": "m"}},
        "spec.columns", "must describe one layout"),
    Bad("dataset-inline-csv", DATASET, {"spec.source": {"inline": {"records": [{"text": "a"}]}}, "spec.format": "csv"},
        "spec.format", "format must be jsonl or json"),
    Bad("dataset-inline-images", DATASET, {"spec.source": {"inline": {"records": [{"a": 1}]}}, "spec.format": "coco"},
        "spec.source", "image formats need files"),
    Bad("dataset-ftp-uri", DATASET, {"spec.source": {"uri": "ftp://host/data.jsonl"}}, "spec.source.uri", "must match"),
    Bad("dataset-relative-pvc-path", DATASET, {"spec.source.pvc.path": "llama/train.jsonl"},
        "spec.source.pvc.path", "must match"),
    Bad("dataset-no-inline-records", DATASET, {"spec.source": {"inline": {"records": []}}},
        "spec.source.inline.records", "must not be empty (1 to 1000 items)"),
    # transition rules (updates)
    Bad("change-config-of-existing-job", mutated(LLM_JOB, {"spec.config.training.epochs": 4}), {},
        "spec", "config are immutable", old=LLM_JOB),
    Bad("change-dataset-of-existing-job", mutated(LLM_JOB, {"spec.datasetId": "other"}), {},
        "spec", "datasetId and config are immutable", old=LLM_JOB),
    Bad("change-workers-of-existing-job", mutated(LLM_JOB, {"spec.maxWorkers": 3}), {},
        "spec", "maxWorkers and spot are immutable", old=LLM_JOB),
    Bad("drop-gpu-of-existing-job", mutated(LLM_JOB, {"spec.gpuType": DELETE, "spec.gpusPerWorker": DELETE}), {},
        "spec", "gpuType, gpusPerWorker, maxWorkers and spot are immutable", old=LLM_JOB),
    Bad("move-existing-job-to-spot", mutated(LLM_JOB, {"spec.spot": True}), {},
        "spec", "maxWorkers and spot are immutable", old=LLM_JOB),
    Bad("uncancel", mutated(LLM_JOB, {"spec.cancel": False}), {},
        "spec.cancel", "cancel cannot be undone", old=mutated(LLM_JOB, {"spec.cancel": True})),
    Bad("uncancel-by-removing-the-field", LLM_JOB, {}, "spec.cancel", "cancel cannot be undone",
        old=mutated(LLM_JOB, {"spec.cancel": True})),
    # status (written by the operator)
    Bad("status-unknown-phase", LLM_JOB, {"status": {**STATUS, "phase": "Exploded"}},
        "status.phase", "Pending, Queued, Running, Stopping, Stopped, Completed, Failed, Cancelled"),
    Bad("status-percentage-150", LLM_JOB, {"status": {**STATUS, "progress": {"percentage": 150}}},
        "status.progress.percentage", "between 0.0 and 100.0"),
    Bad("status-duplicate-condition", LLM_JOB, {"status": {**STATUS, "conditions": STATUS["conditions"] * 2}},
        "status.conditions[1]", "duplicate entry with type='Ready'"),
    Bad("status-condition-without-reason", LLM_JOB,
        {"status": {**STATUS, "conditions": [{k: v for k, v in STATUS["conditions"][0].items() if k != "reason"}]}},
        "status.conditions[0].reason", "required"),
    Bad("status-checkpoint-date-not-rfc3339", LLM_JOB,
        {"status": {**STATUS, "checkpoints": [{"id": "c1", "createdAt": "yesterday"}]}},
        "status.checkpoints[0].createdAt", "RFC 3339"),
    # early stopping and the output
    Bad("early-stopping-without-evaluation", LLM_JOB,
        {"spec.config.training.evalSplit": 0.0, "spec.config.training.evalSteps": None,
         "spec.config.training.earlyStopping": {"patience": 2}},
        "spec.config.training.earlyStopping", "earlyStopping needs config.training.evalSplit greater than 0"),
    Bad("early-stopping-eval-loss-max", LLM_JOB, {"spec.config.training.earlyStopping": {"mode": "max"}},
        "spec.config.training.earlyStopping.mode", "mode must be min for metric evalLoss"),
    Bad("early-stopping-patience-0", LLM_JOB, {"spec.config.training.earlyStopping": {"patience": 0}},
        "spec.config.training.earlyStopping.patience", "between 1 and 1000"),
    Bad("early-stopping-negative-min-delta", LLM_JOB, {"spec.config.training.earlyStopping": {"minDelta": -0.1}},
        "spec.config.training.earlyStopping.minDelta", "between 0.0 and"),
    Bad("early-stopping-mode-sideways", LLM_JOB, {"spec.config.training.earlyStopping": {"mode": "sideways"}},
        "spec.config.training.earlyStopping.mode", "min, max"),
    Bad("merge-with-full", LLM_JOB,
        {"spec.config.strategy": "full", "spec.config.parameters": None, "spec.config.output": {"merge": True}},
        "spec.config.output.merge", "config.output.merge applies only to strategy lora"),
    Bad("output-from-best-without-evaluation", LLM_JOB,
        {"spec.config.training.evalSplit": 0.0, "spec.config.training.evalSteps": None,
         "spec.config.output": {"from": "best"}},
        "spec.config.output.from", "config.output.from best needs config.training.evalSplit greater than 0"),
    Bad("output-from-first", LLM_JOB, {"spec.config.output": {"from": "first"}},
        "spec.config.output.from", "last, best"),
    Bad("status-output-digest-not-hex", LLM_JOB,
        {"status": {**STATUS, "output": {"path": "output", "kind": "adapter", "sizeBytes": 1, "sha256": "xyz"}}},
        "status.output.sha256", "must match the pattern ^[0-9a-f]{64}$"),
    Bad("status-51-checkpoints", LLM_JOB, {"status": {**STATUS, "checkpoints": [{"id": f"c{i}"} for i in range(51)]}},
        "status.checkpoints", "at most 50 items"),
]  # fmt: skip


def test_bad_cases_are_distinct_and_enough() -> None:
    assert len({case.id for case in BAD}) == len(BAD)
    assert len(BAD) >= 40
    inputs = [repr((case.base, case.changes, case.old)) for case in BAD]
    assert len(set(inputs)) == len(inputs)


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_manifest_is_refused_naming_its_field(case: Bad) -> None:
    obj = mutated(case.base, case.changes)
    validate(case.base)  # the base is good on create: the mutation (or the update) is what fails
    errors = errors_of(obj, case.old)
    matching = [e for e in errors if e.field == case.field and case.says in e.reason]
    assert matching, f"expected {case.field}: ...{case.says}... in {errors}"


def test_every_cel_rule_is_failed_by_a_bad_case() -> None:
    """Each rule in the CRDs is exercised failing (here) and passing (the good manifests above
    and the allowed updates below evaluate every rule and pass)."""
    produced: set[str] = set()
    for case in BAD:
        with pytest.raises(ValidationFailed) as failed:
            validate(mutated(case.base, case.changes), case.old)
        produced |= {e.reason for e in failed.value.errors}
    for kind, crd in committed_crds().items():
        for rule in _rules(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]):
            assert rule["message"] in produced, f"{kind}: no bad case fails rule {rule['rule']!r}"


def _rules(schema: dict[str, Any]) -> list[dict[str, Any]]:
    rules = list(schema.get("x-kubernetes-validations", []))
    for sub in (schema.get("properties") or {}).values():
        rules += _rules(sub)
    if isinstance(schema.get("items"), dict):
        rules += _rules(schema["items"])
    return rules


# --- updates that are allowed --------------------------------------------------------------------

ALLOWED_UPDATES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "stop": lambda job: mutated(job, {"spec.suspend": True}),
    "resume-from-checkpoint": lambda job: mutated(job, {"spec.suspend": False, "spec.resumeFrom": "ckpt-epoch-1"}),
    "cancel": lambda job: mutated(job, {"spec.cancel": True}),
    "retag-and-reprioritise": lambda job: mutated(job, {"spec.tags": ["x"], "spec.priority": "low"}),
    "status-write": lambda job: mutated(job, {"status": STATUS}),
}


@pytest.mark.parametrize("change", sorted(ALLOWED_UPDATES))
def test_lifecycle_updates_pass_the_transition_rules(change: str) -> None:
    for job in (LLM_JOB, CPU_JOB, CUSTOM_JOB):
        validate(ALLOWED_UPDATES[change](job), job)


def test_a_cancelled_job_stays_cancelled_and_may_still_change_its_description() -> None:
    cancelled = mutated(LLM_JOB, {"spec.cancel": True})
    validate(mutated(cancelled, {"spec.description": "done"}), cancelled)


def test_config_equality_ignores_defaults_and_int_versus_double_spelling() -> None:
    # The stored object has its defaults; the new one spells 0.1 dropout the same and leaves the
    # defaulted fields out: the config is unchanged, as the API server sees it after defaulting.
    stored = validate(LLM_JOB)
    rewritten = mutated(LLM_JOB, {"spec.config.training.weightDecay": 0})
    validate(rewritten, stored)


def test_transition_rules_do_not_run_on_create() -> None:
    validate(mutated(LLM_JOB, {"spec.cancel": False}))


# --- defaulting, pruning, typing -----------------------------------------------------------------


def test_defaults_fill_absent_fields_only_where_the_parent_exists() -> None:
    obj = copy.deepcopy(CPU_JOB)
    result = validate(obj)
    assert obj == CPU_JOB, "the input is not modified"
    spec = result["spec"]
    assert spec["maxWorkers"] == 1 and spec["priority"] == "normal" and spec["suspend"] is False
    assert spec["config"]["optimization"] == {
        "mixedPrecision": "no",
        "gradientCheckpointing": False,
        "compile": False,
        "maxGradNorm": 1.0,
    }
    assert "training" not in spec["config"] and "parameters" not in spec["config"]
    assert "checkpointStorage" not in spec


def test_nested_defaults_apply_inside_a_present_object() -> None:
    result = validate(mutated(CPU_JOB, {"spec.config.training": {}}))
    training = result["spec"]["config"]["training"]
    assert training["epochs"] == 1 and training["learningRate"] == 2e-4 and training["evalSplit"] == 0.0


def test_nulls_are_dropped_or_replaced_by_the_default() -> None:
    result = validate(mutated(CPU_JOB, {"spec.description": None, "spec.maxWorkers": None}))
    assert "description" not in result["spec"]
    assert result["spec"]["maxWorkers"] == 1


def test_integer_written_for_a_number_compares_as_a_double_in_cel() -> None:
    # evalSplit is a number; written as the integer 0 the rule `evalSplit > 0.0` must still be
    # evaluated (a plain CEL int would not compare with a double) and fail with its message.
    errors = errors_of(mutated(LLM_JOB, {"spec.config.training.evalSplit": 0}))
    assert [str(e) for e in errors] == [
        "spec.config.training.evalSteps: config.training.evalSteps needs config.training.evalSplit greater than 0"
    ]
    validate(mutated(LLM_JOB, {"spec.config.training.evalSplit": 1 / 4}))


def test_every_problem_is_reported_at_once() -> None:
    obj = mutated(
        LLM_JOB,
        {
            "spec.config.training.learningRate": 0.5,
            "spec.maxWorkers": 40,
            "spec.bogus": True,
            "spec.config.strategy": "full",  # fails a CEL rule: parameters with full
        },
    )
    fields = [e.field for e in errors_of(obj)]
    assert fields == ["spec.bogus", "spec.config.training.learningRate", "spec.maxWorkers", "spec.config.parameters"]


def test_blocking_schema_errors_skip_the_cel_rules_as_the_api_server_does() -> None:
    obj = mutated(LLM_JOB, {"spec.priority": "urgent", "spec.config.strategy": "full"})
    errors = errors_of(obj)
    assert [e.field for e in errors] == ["spec.priority", "TrainingJob"]
    assert "validation rules were not checked" in errors[1].reason


def test_error_message_lists_every_problem() -> None:
    with pytest.raises(ValidationFailed) as failed:
        validate(mutated(LLM_JOB, {"spec.maxWorkers": 40, "spec.foo": 1}))
    text = str(failed.value)
    assert "spec.maxWorkers: must be between 1 and 32, got 40" in text
    assert "spec.foo: unknown field" in text
    assert failed.value.code == "CONFIGURATION_ERROR"


def test_validate_uses_the_given_crds() -> None:
    crds = load_crds()
    crds["TrainingJob"] = copy.deepcopy(crds["TrainingJob"])
    spec = crds["TrainingJob"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["maxWorkers"]["maximum"] = 4
    validate(LLM_JOB, crds=crds)
    errors = errors_of_with(mutated(LLM_JOB, {"spec.maxWorkers": 8}), crds)
    assert [str(e) for e in errors] == ["spec.maxWorkers: must be between 1 and 4, got 8"]


def errors_of_with(obj: dict[str, Any], crds: dict[str, dict[str, Any]]) -> list[FieldError]:
    with pytest.raises(ValidationFailed) as failed:
        validate(obj, crds=crds)
    return failed.value.errors


def _rule_sites(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    sites = [(path, rule) for rule in schema.get("x-kubernetes-validations", [])]
    for name, sub in (schema.get("properties") or {}).items():
        sites += _rule_sites(sub, (*path, name))
    return sites


def _has_node(obj: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = obj
    for name in path:
        if not isinstance(node, dict) or name not in node:
            return False
        node = node[name]
    return True


def test_every_cel_rule_is_evaluated_and_passed_by_a_good_manifest() -> None:
    """Complements the test above: the good manifests (all valid) reach every rule's node, and
    the allowed updates reach every transition rule's node with an old value."""
    created = [LLM_JOB, VISION_JOB, CUSTOM_JOB, CPU_JOB, DATASET]
    for path in EXAMPLES:
        created += load_manifests(path.read_text())
    updates = [(make(job), job) for make in ALLOWED_UPDATES.values() for job in (LLM_JOB, CPU_JOB, CUSTOM_JOB)]
    for obj in created:
        validate(obj)
    for obj, old in updates:
        validate(obj, old)
    for kind, crd in committed_crds().items():
        for site, rule in _rule_sites(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]):
            pool = [new for new, _ in updates] if "oldSelf" in rule["rule"] else created
            reached = [obj for obj in pool if obj["kind"] == kind and _has_node(obj, site)]
            assert reached, f"{kind}: no good manifest reaches rule {rule['rule']!r} at {'.'.join(site)}"


def test_an_installed_package_without_crds_folder_validates_with_crds_from_the_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tensorone.api import admission

    monkeypatch.setattr(admission, "CRD_DIR", tmp_path / "not-there")
    admission.committed_crds.cache_clear()
    try:
        assert admission.committed_crds() == load_crds()
        validate(LLM_JOB)
    finally:
        admission.committed_crds.cache_clear()


def test_generate_name_is_checked_by_the_name_rules_with_the_generated_suffix() -> None:
    job = mutated(LLM_JOB, {"metadata": {"generateName": "llama-"}})
    validate(job)
    too_long = mutated(LLM_JOB, {"metadata": {"generateName": "a" * 49 + "-"}})
    assert [e.field for e in errors_of(too_long)] == ["metadata.name"]


def test_a_job_without_a_name_skips_the_rules_that_read_it() -> None:
    errors = errors_of(mutated(LLM_JOB, {"metadata.name": DELETE}))
    assert [e.field for e in errors] == ["metadata.name", "TrainingJob"]


def test_a_map_list_key_of_the_wrong_type_is_reported_not_crashed_on() -> None:
    env = [{"name": {"not": "a string"}}, {"name": {"not": "a string"}}]
    errors = errors_of(mutated(CUSTOM_JOB, {"spec.config.custom.env": env}))
    assert {e.field for e in errors} >= {"spec.config.custom.env[0].name", "spec.config.custom.env[1]"}
