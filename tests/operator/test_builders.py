"""The pure builders, checks and catalog, over the API models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tensorone_operator import builders, catalog, checks
from tensorone_operator.config import CpuJobResources, OperatorConfig, load_config, parse_config

from tensorone.api.pods import checkpoint_claim_name
from tensorone.api.resolved import ResolvedJob
from tensorone.api.v1alpha1 import Dataset, TrainingJob
from tensorone.errors import ConfigurationError

CONFIG = OperatorConfig()


def job(labels: dict[str, str] | None = None, **spec: Any) -> TrainingJob:
    base: dict[str, Any] = {
        "modelType": "llm",
        "datasetId": "chat",
        "config": {"baseModel": "meta-llama/Llama-2-7b-hf", "strategy": "lora"},
        "maxWorkers": 1,
        "priority": "normal",
        "suspend": False,
        "maxRestarts": 3,
    }
    base.update(spec)
    return TrainingJob.model_validate(
        {
            "apiVersion": "training.tensorone.ai/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "llama", "namespace": "team", "uid": "uid-1", "labels": labels or {}},
            "spec": base,
        }
    )


def resources(**spec: Any) -> catalog.JobResources:
    return catalog.job_resources(job(**spec).spec, CONFIG)


DATASET = Dataset.model_validate(
    {
        "metadata": {"name": "chat", "namespace": "team"},
        "spec": {"format": "jsonl", "source": {"pvc": {"claimName": "data", "path": "/chat.jsonl"}}},
    }
)


def container(child: dict[str, Any], replica: str = "Master") -> dict[str, Any]:
    result: dict[str, Any] = child["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]["containers"][0]
    return result


def pod_spec(child: dict[str, Any], replica: str = "Master") -> dict[str, Any]:
    result: dict[str, Any] = child["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]
    return result


def test_gpu_job_shape_follows_training_operator_v1_9() -> None:
    child = builders.build_pytorchjob(job(gpuType="a100", gpusPerWorker=4, maxWorkers=3), DATASET, CONFIG)
    assert child["apiVersion"] == "kubeflow.org/v1" and child["kind"] == "PyTorchJob"
    replicas = child["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    assert {r["restartPolicy"] for r in replicas.values()} == {"ExitCode"}  # the trainer says what a restart can help
    assert child["spec"]["nprocPerNode"] == "4"
    assert "elasticPolicy" not in child["spec"]
    main = container(child)
    assert main["name"] == "pytorch"
    assert main["command"][:5] == ["python", "-m", "trainer.launch", "--nnodes=3", "--nproc-per-node=4"]
    assert "--node-rank=$(RANK)" in main["command"]
    assert {"name": "TENSORONE_REPORT_PORT", "value": "9400"} in main["env"]
    pod_ip = {"name": "TENSORONE_REPORT_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert pod_ip in main["env"]  # served on the pod IP only
    assert {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"} in main["ports"]
    assert main["resources"]["requests"] == {
        "cpu": "48",
        "memory": "480Gi",
        "nvidia.com/gpu": "4",
        "ephemeral-storage": "20Gi",
    }
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "4"
    spec = pod_spec(child)
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["priorityClassName"] == "tensorone-normal"
    assert spec["terminationGracePeriodSeconds"] == 300
    assert spec["serviceAccountName"] == "tensorone-training" and spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "llama-checkpoints"}
    assert volumes["job-config"]["configMap"] == {"name": "llama-config"}
    assert volumes["dataset"]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
    security = main["securityContext"]
    assert security == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "readOnlyRootFilesystem": True,
    }


def test_several_products_need_node_affinity_one_product_a_node_selector() -> None:
    several = pod_spec(builders.build_pytorchjob(job(gpuType="a100"), DATASET, CONFIG))
    assert "nodeSelector" not in several
    term = several["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term[0]["matchExpressions"][0]["operator"] == "In"
    assert "NVIDIA-A100-SXM4-80GB" in term[0]["matchExpressions"][0]["values"]
    single = pod_spec(builders.build_pytorchjob(job(gpuType="l4"), DATASET, CONFIG))
    assert single["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    cpu = pod_spec(builders.build_pytorchjob(job(), DATASET, CONFIG))
    assert "nodeSelector" not in cpu and "affinity" not in cpu and "tolerations" not in cpu
    assert container(builders.build_pytorchjob(job(), DATASET, CONFIG))["resources"]["limits"] == {
        "cpu": "2",
        "memory": "8Gi",
        "ephemeral-storage": "200Gi",
    }


def test_run_policy_carries_limits_and_suspend() -> None:
    policy = builders.build_pytorchjob(job(maxRuntimeSeconds=3600, maxRestarts=5, suspend=True), DATASET, CONFIG)[
        "spec"
    ]["runPolicy"]
    assert policy == {"cleanPodPolicy": "Running", "backoffLimit": 5, "suspend": True, "activeDeadlineSeconds": 3600}


def test_a_custom_image_that_follows_the_exit_code_table_gets_the_trainers_restart_policy() -> None:
    image = {"image": "registry.example/me/train@sha256:abc", "command": ["python", "-m", "train"]}

    def policies(**custom: Any) -> set[str]:
        spec = job(modelType="custom", config={"custom": {**image, **custom}}, maxWorkers=2)
        replicas = builders.build_pytorchjob(spec, DATASET, CONFIG)["spec"]["pytorchReplicaSpecs"]
        assert set(replicas) == {"Master", "Worker"}
        return {replica["restartPolicy"] for replica in replicas.values()}

    assert policies(exitCodes="Trainer") == {"ExitCode"}  # 1-127 fail at once, 128-255 restart
    assert policies(exitCodes="Any") == {"OnFailure"}
    assert policies() == {"OnFailure"}  # the default: every failure restarts within backoffLimit


def test_custom_job_runs_the_users_argv_never_a_shell() -> None:
    custom = {
        "image": "registry.example/me/train@sha256:abc",
        "command": ["python", "-m", "train"],
        "args": ["--name", "$(rm -rf /); echo"],
        "env": [{"name": "MY_FLAG", "value": "1"}],
    }
    spec = job(modelType="custom", config={"custom": custom}, hubTokenSecret={"name": "hf", "key": "token"})
    child = builders.build_pytorchjob(spec, DATASET, CONFIG)
    main = container(child)
    # Its exit codes follow no table of ours: restarts within backoffLimit, whatever the code.
    assert child["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicy"] == "OnFailure"
    assert main["image"] == custom["image"]
    assert main["command"] == ["python", "-m", "train"]
    assert main["args"] == ["--name", "$(rm -rf /); echo"]
    env = {e["name"]: e for e in main["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert env["TENSORONE_JOB_CONFIG"]["value"] == "/etc/tensorone/job/job.yaml"
    assert env["MY_FLAG"]["value"] == "1"


def test_torch_threads_are_the_pods_cpus_shared_among_its_processes() -> None:
    def threads(child: dict[str, Any]) -> str | None:
        env = {e["name"]: e.get("value") for e in container(child)["env"]}
        return env.get("OMP_NUM_THREADS")

    a100 = builders.cpu_cores(CONFIG.gpu_catalog["a100"].cpu_per_gpu)
    four_gpus = builders.build_pytorchjob(job(gpuType="a100", gpusPerWorker=4), DATASET, CONFIG)
    per_gpu = builders.threads_per_process(resources(gpuType="a100", gpusPerWorker=4), CONFIG)
    assert per_gpu is not None and threads(four_gpus) == str(per_gpu)
    assert a100 is not None and per_gpu == int(a100)  # each of the 4 processes gets one GPU's share
    small = OperatorConfig(cpu_job=CpuJobResources(cpu="1500m", memory="4Gi"))
    assert threads(builders.build_pytorchjob(job(), DATASET, small)) == "1"
    large = OperatorConfig(cpu_job=CpuJobResources(cpu="6", memory="4Gi"))
    assert threads(builders.build_pytorchjob(job(), DATASET, large)) == "6"
    trainjob = builders.build_trainjob(job(), DATASET, large)["spec"]["trainer"]
    assert {"name": "OMP_NUM_THREADS", "value": "6"} in trainjob["env"]
    # A custom image sets its own (custom.env).
    custom = job(modelType="custom", config={"custom": {"image": "registry.example/me/train:v1"}})
    assert threads(builders.build_pytorchjob(custom, DATASET, large)) is None
    assert [builders.cpu_cores(q) for q in ("4", "2.5", "500m", "1e3", "x")] == [4.0, 2.5, 0.5, 1000.0, None]


def test_a_custom_image_is_pulled_every_time_unless_pinned_by_digest() -> None:
    def pull_policy(image: str) -> str:
        spec = job(modelType="custom", config={"custom": {"image": image}})
        return str(container(builders.build_pytorchjob(spec, DATASET, CONFIG))["imagePullPolicy"])

    assert pull_policy("registry.example/team-b/private:v1") == "Always"
    assert pull_policy("registry.example/team-b/private@sha256:" + "a" * 64) == "IfNotPresent"
    builtin = container(builders.build_pytorchjob(job(), DATASET, CONFIG))
    assert builtin["imagePullPolicy"] == CONFIG.trainer_image_pull_policy


def test_labels_are_ours_plus_kueue_and_never_the_argo_instance_label() -> None:
    spec = job(
        labels={
            "app.kubernetes.io/instance": "argo-app",
            "kueue.x-k8s.io/queue-name": "gpu-queue",
            "team": "nlp",
        }
    )
    child = builders.build_pytorchjob(spec, DATASET, CONFIG)
    expected = {
        "app.kubernetes.io/name": "tensorone-training",
        "app.kubernetes.io/managed-by": "tensorone-operator",
        "training.tensorone.ai/job-name": "llama",
        "kueue.x-k8s.io/queue-name": "gpu-queue",
    }
    assert child["metadata"]["labels"] == expected
    assert child["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"] == expected
    assert child["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "training.tensorone.ai/v1alpha1",
            "kind": "TrainingJob",
            "name": "llama",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_config_map_holds_the_resolved_job_with_defaults() -> None:
    config_map = builders.build_config_map(job(resumeFrom="ckpt-epoch-1", gpuType="l4"), DATASET, CONFIG)
    assert config_map["metadata"]["name"] == "llama-config"
    resolved = ResolvedJob.model_validate(yaml.safe_load(config_map["data"]["job.yaml"]))
    assert resolved.resume_from == "ckpt-epoch-1"
    assert resolved.use_gpu is True
    assert resolved.dataset.format == "jsonl"
    assert resolved.config.training is not None and resolved.config.training.epochs == 1
    assert resolved.config.parameters is not None and resolved.config.parameters.rank == 16


def test_checkpoint_claim_uses_spec_then_config_defaults() -> None:
    claim = builders.build_checkpoint_claim(job(checkpointStorage={"size": "50Gi"}), CONFIG)
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert "storageClassName" not in claim["spec"]
    configured = OperatorConfig.model_validate({"checkpointStorage": {"size": "10Gi", "storageClassName": "nfs"}})
    claim = builders.build_checkpoint_claim(job(), configured)
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "10Gi"}},
        "storageClassName": "nfs",
    }
    mine = job(checkpointStorage={"claimName": "mine"})
    assert not builders.owns_checkpoint_claim(mine)
    assert checkpoint_claim_name(str(mine.metadata.name), mine.spec) == "mine"
    assert checkpoint_claim_name(str(mine.metadata.name), job().spec) == f"{mine.metadata.name}-checkpoints"


def test_child_drift_patches_only_mutable_parts() -> None:
    spec = job(gpuType="a100")
    child = builders.build_pytorchjob(spec, DATASET, CONFIG)
    assert builders.child_drift(spec, child, CONFIG) is None
    changed = job(gpuType="a100", suspend=True, priority="high", maxRuntimeSeconds=600)
    patch = builders.child_drift(changed, child, CONFIG)
    assert patch == {
        "spec": {
            "runPolicy": {"suspend": True, "activeDeadlineSeconds": 600},
            "pytorchReplicaSpecs": {"Master": {"template": {"spec": {"priorityClassName": "tensorone-high"}}}},
        }
    }


def test_the_operators_hold_suspends_the_child_whatever_the_spec_says() -> None:
    running = job(gpuType="a100")
    child = builders.build_pytorchjob(running, DATASET, CONFIG)
    assert builders.child_drift(running, child, CONFIG, hold=True) == {"spec": {"runPolicy": {"suspend": True}}}
    held = {**child, "spec": {**child["spec"], "runPolicy": {**child["spec"]["runPolicy"], "suspend": True}}}
    assert builders.child_drift(running, held, CONFIG, hold=True) is None
    assert builders.child_drift(running, held, CONFIG) == {"spec": {"runPolicy": {"suspend": False}}}


def test_a_cpu_job_costs_the_cpu_pod_price_per_pod() -> None:
    priced = CONFIG.model_copy(update={"cpu_job": CpuJobResources(hourly_price=0.5)})
    given = catalog.job_resources(job(maxWorkers=3).spec, priced)
    assert catalog.estimated_cost(given, priced, max_runtime_seconds=7200) == {
        "hourly": 1.5,
        "currency": "USD",
        "total": 3.0,
    }
    assert catalog.estimated_cost(resources(maxWorkers=3), CONFIG, max_runtime_seconds=None) == {
        "hourly": 0.0,
        "currency": "USD",
    }


def test_catalog_allocation_and_cost() -> None:
    spec = job(gpuType="a100", gpusPerWorker=2, maxWorkers=2, maxRuntimeSeconds=7200).spec
    given = catalog.job_resources(spec, CONFIG)
    assert catalog.resource_allocation(given, CONFIG) == {
        "gpuType": "NVIDIA A100",
        "workers": 2,
        "gpus": 4,
        "memoryPerWorker": "160GB",
    }
    assert catalog.estimated_cost(given, CONFIG, max_runtime_seconds=spec.max_runtime_seconds) == {
        "hourly": 16.4,
        "currency": "USD",
        "total": 32.8,
    }
    without_limit = resources(gpuType="a100")
    assert "total" not in catalog.estimated_cost(without_limit, CONFIG, max_runtime_seconds=None)
    cost = catalog.estimated_cost(without_limit, CONFIG, max_runtime_seconds=None, spent=1.0, remaining_seconds=1800)
    assert cost["total"] == 3.05
    with pytest.raises(ConfigurationError) as error:
        resources(gpuType="tpu")
    assert error.value.field == "spec.gpuType" and "a100" in str(error.value) and "h100" in str(error.value)


def node(product: str, gpus: str = "8", cordoned: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": product, "labels": {"nvidia.com/gpu.product": product}},
        "spec": {"unschedulable": cordoned},
        "status": {"allocatable": {"nvidia.com/gpu": gpus}},
    }


def test_insufficient_resources_lists_what_nodes_offer() -> None:
    nodes = [node("Tesla-V100-SXM2-16GB"), node("NVIDIA-L4"), node("NVIDIA-H100-80GB-HBM3", cordoned=True)]
    problem = checks.check_gpu_nodes(resources(gpuType="h100"), CONFIG, nodes)
    assert problem is not None and problem.code == "INSUFFICIENT_RESOURCES" and problem.waiting
    assert "available GPU types: l4, v100" in problem.message
    assert checks.check_gpu_nodes(resources(gpuType="l4"), CONFIG, nodes) is None
    assert checks.check_gpu_nodes(resources(gpuType="l4"), CONFIG, [node("NVIDIA-L4", gpus="0")]) is not None
    assert checks.check_gpu_nodes(resources(), CONFIG, []) is None


def test_configuration_checks_name_the_field() -> None:
    custom = {"image": "x", "env": [{"name": "MASTER_ADDR", "value": "evil"}]}
    problem = checks.check_configuration(job(modelType="custom", config={"custom": custom}).spec, DATASET)
    assert problem is not None and problem.code == "CONFIGURATION_ERROR" and not problem.waiting
    assert "spec.config.custom.env[0].name" in problem.message
    coco = Dataset.model_validate(
        {"metadata": {"name": "imgs"}, "spec": {"format": "coco", "source": {"uri": "https://example.com/imgs"}}}
    )
    problem = checks.check_configuration(job(config={}).spec, coco)
    assert problem is not None and "spec.datasetId" in problem.message and "jsonl" in problem.message
    assert checks.check_configuration(job(config={}).spec, DATASET) is None
    missing = checks.check_dataset("team", job(datasetId="nope").spec, None)
    assert missing is not None and missing.code == "DATASET_NOT_FOUND" and "'nope'" in missing.message


def test_operator_config_file_is_validated(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.yaml") == OperatorConfig()
    path = tmp_path / "config.yaml"
    path.write_text("trainerImage: example/trainer:1\ngpuCatalog:\n  tpu:\n    displayName: x\n")
    with pytest.raises(ConfigurationError) as error:
        load_config(path)
    assert "gpuCatalog.tpu.products" in str(error.value)
    with pytest.raises(ConfigurationError) as error:
        parse_config({"trainerImagee": "typo"})
    assert "trainerImagee" in str(error.value)


def test_training_pods_bound_their_disk_and_write_only_to_scratch_folders() -> None:
    child = builders.build_pytorchjob(job(gpuType="a100"), DATASET, CONFIG)
    main, spec = container(child), pod_spec(child)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["resources"]["requests"]["ephemeral-storage"] == CONFIG.ephemeral_storage.request
    assert main["resources"]["limits"]["ephemeral-storage"] == CONFIG.ephemeral_storage.limit
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in ("/tmp", builders.TRAINER_HOME):
        assert volumes[mounts[path]]["emptyDir"] == {}, path
    cpu = container(builders.build_pytorchjob(job(), DATASET, CONFIG))
    assert cpu["resources"]["limits"]["ephemeral-storage"] == CONFIG.ephemeral_storage.limit


def test_a_custom_image_keeps_a_writable_root_within_the_disk_limit() -> None:
    custom = {"image": "registry.example/me/train:1", "command": ["python", "train.py"]}
    child = builders.build_pytorchjob(job(modelType="custom", config={"custom": custom}), DATASET, CONFIG)
    main = container(child)
    assert main["securityContext"]["readOnlyRootFilesystem"] is False
    assert main["resources"]["limits"]["ephemeral-storage"] == CONFIG.ephemeral_storage.limit
    paths = {m["mountPath"] for m in main["volumeMounts"]}
    assert "/tmp" in paths and builders.TRAINER_HOME not in paths


def tracked(tracking: dict[str, Any], **spec: Any) -> TrainingJob:
    """The default job with ``config.tracking``."""
    return job(config={"baseModel": "meta-llama/Llama-2-7b-hf", "strategy": "lora", "tracking": tracking}, **spec)


def tracker_env(tracking: dict[str, Any], replica: str = "Master", **spec: Any) -> dict[str, dict[str, Any]]:
    child = builders.build_pytorchjob(tracked(tracking, **spec), DATASET, CONFIG)
    return {e["name"]: e for e in container(child, replica)["env"]}


def test_tracker_credentials_come_from_secrets_in_every_replica_and_nowhere_else() -> None:
    tracking = {
        "mlflow": {"trackingUri": "https://mlflow.example.com", "credentialsSecret": {"name": "mlflow-basic"}},
        "tensorboard": {},
        "wandb": {"project": "llama", "apiKeySecret": {"name": "wandb", "key": "apiKey"}},
    }
    for replica in ("Master", "Worker"):
        env = tracker_env(tracking, replica, maxWorkers=2)
        assert env["MLFLOW_TRACKING_USERNAME"] == {
            "name": "MLFLOW_TRACKING_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": "mlflow-basic", "key": "username"}},
        }
        assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"] == {
            "secretKeyRef": {"name": "mlflow-basic", "key": "password"}
        }
        assert env["WANDB_API_KEY"] == {
            "name": "WANDB_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "apiKey"}},
        }
        assert "MLFLOW_TRACKING_TOKEN" not in env
    # The trainer gets the trackers' settings in its resolved job: Secret names, never values.
    config_map = builders.build_config_map(tracked(tracking), DATASET, CONFIG)
    resolved = ResolvedJob.model_validate(yaml.safe_load(config_map["data"]["job.yaml"]))
    assert resolved.config.tracking is not None and resolved.config.tracking.mlflow is not None
    assert resolved.config.tracking.mlflow.tracking_uri == "https://mlflow.example.com"


def test_an_mlflow_token_or_offline_wandb_get_only_what_they_need() -> None:
    env = tracker_env({"mlflow": {"trackingUri": "https://m.example.com", "tokenSecret": {"name": "mlflow-token"}}})
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "mlflow-token", "key": "token"}}
    assert not {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "WANDB_API_KEY"} & set(env)
    env = tracker_env({"wandb": {"project": "llama", "mode": "offline"}, "tensorboard": {"logDir": "tb"}})
    assert not {"WANDB_API_KEY", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_TOKEN"} & set(env)


def test_output_credentials_come_from_the_named_secret_under_the_trainers_own_names() -> None:
    output = {"uri": "s3://models/team-a", "credentialsSecret": {"name": "s3-upload", "sessionTokenKey": "token"}}
    child = builders.build_pytorchjob(job(output=output, maxWorkers=2), DATASET, CONFIG)
    for replica in ("Master", "Worker"):
        env = {e["name"]: e for e in container(child, replica)["env"]}
        assert env["TENSORONE_OUTPUT_ACCESS_KEY_ID"]["valueFrom"] == {
            "secretKeyRef": {"name": "s3-upload", "key": "AWS_ACCESS_KEY_ID"}
        }
        assert env["TENSORONE_OUTPUT_SECRET_ACCESS_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "s3-upload", "key": "AWS_SECRET_ACCESS_KEY"}
        }
        assert env["TENSORONE_OUTPUT_SESSION_TOKEN"]["valueFrom"] == {
            "secretKeyRef": {"name": "s3-upload", "key": "token"}
        }
        # AWS's own names stay free for the other AWS clients of the trainer (an MLflow store on S3).
        assert not {name for name in env if name.startswith("AWS_")}
    # The trainer reads where to upload from its resolved job: the Secret's name, never a value.
    config_map = builders.build_config_map(job(output=output), DATASET, CONFIG)
    resolved = ResolvedJob.model_validate(yaml.safe_load(config_map["data"]["job.yaml"]))
    assert resolved.output is not None and resolved.output.uri == "s3://models/team-a"
    assert "AWS_SECRET_ACCESS_KEY" in config_map["data"]["job.yaml"]  # the key's name only
    # Without a Secret the pod's own identity is used: no variable at all.
    names = {
        e["name"]
        for e in container(builders.build_pytorchjob(job(output={"uri": "s3://models"}), DATASET, CONFIG))["env"]
    }
    assert not {n for n in names if n.startswith("TENSORONE_OUTPUT_")}
