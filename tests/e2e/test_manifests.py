"""The e2e suite's own manifests are valid for the CRDs, so a kind run never fails on a typo: the
TrainingJobs and Dataset for ours, Kueue's queues for Kueue's kinds, and the e2e values put each
job namespace on the backend its tests expect, with pods that fit the Kueue quota. These run
everywhere, with no cluster."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes.utils import parse_quantity
from tensorone_operator.builders import CHILD_KINDS, KUEUE_QUEUE_LABEL, build_child
from tensorone_operator.config import ChildBackend, parse_config

from tensorone.api.admission import validate
from tensorone.api.v1alpha1 import Dataset, TrainingJob
from tests.e2e.conftest import (
    E2E_VALUES,
    JOB_NAMESPACE,
    KUEUE_FOR_TRAINER_V2_2,
    KUEUE_QUEUES,
    KUEUE_REF,
    LOCAL_QUEUE,
    TRAINJOB_NAMESPACE,
    kueue_version,
)
from tests.e2e.test_kind import DATASET, queued_training_job, training_job
from tests.kube import kueue

VALUES = yaml.safe_load(E2E_VALUES.read_text())
QUEUES = list(yaml.safe_load_all(KUEUE_QUEUES.read_text()))


def test_the_dataset_is_valid() -> None:
    validate({**DATASET, "metadata": {**DATASET["metadata"], "namespace": "e2e"}})


def test_the_training_jobs_are_valid_and_cpu_only() -> None:
    for job, namespace in (
        (training_job("e2e-complete", epochs=2), JOB_NAMESPACE),
        (training_job("e2e-stop-resume", epochs=200, checkpointSteps=5, keepCheckpoints=2), JOB_NAMESPACE),
        (training_job("e2e-trainjob", epochs=2), TRAINJOB_NAMESPACE),
        (queued_training_job("e2e-queued", epochs=1), JOB_NAMESPACE),
        (queued_training_job("e2e-trainjob-queued", epochs=1), TRAINJOB_NAMESPACE),
    ):
        job["metadata"]["namespace"] = namespace
        stored = validate(job)
        assert "gpuType" not in stored["spec"]


def test_each_job_namespace_is_on_the_backend_its_tests_expect() -> None:
    config = parse_config(VALUES["operatorConfig"], source=str(E2E_VALUES))
    assert config.backend_for(JOB_NAMESPACE) == ChildBackend.pytorchjob
    assert config.backend_for(TRAINJOB_NAMESPACE) == ChildBackend.trainjob
    # The chart makes the training ServiceAccount in both.
    assert {JOB_NAMESPACE, TRAINJOB_NAMESPACE} <= set(VALUES["trainingServiceAccount"]["namespaces"])


def test_the_kueue_queues_are_valid_for_kueue_s_kinds() -> None:
    crds = kueue.crds()
    for obj in QUEUES:
        validate(obj, crds=crds)
    queues = {(q["metadata"]["namespace"], q["metadata"]["name"]) for q in QUEUES if q["kind"] == "LocalQueue"}
    assert queues == {(JOB_NAMESPACE, LOCAL_QUEUE), (TRAINJOB_NAMESPACE, LOCAL_QUEUE)}
    [cluster_queue] = [q for q in QUEUES if q["kind"] == "ClusterQueue"]
    assert {q["spec"]["clusterQueue"] for q in QUEUES if q["kind"] == "LocalQueue"} == {
        cluster_queue["metadata"]["name"]
    }


def _requests(child: dict[str, Any]) -> dict[str, float]:
    """What all the pods of a child request (requests, else limits), per resource, as Kueue sums a
    Workload's pod sets."""
    if child["kind"] == "TrainJob":
        trainer = child["spec"]["trainer"]
        pods = [(int(trainer["numNodes"]), trainer["resourcesPerNode"])]
    else:
        pods = [
            (int(spec.get("replicas", 1)), container.get("resources") or {})
            for spec in child["spec"]["pytorchReplicaSpecs"].values()
            for container in spec["template"]["spec"]["containers"]
        ]
    total: dict[str, float] = {}
    for count, resources in pods:
        for name, value in {**(resources.get("limits") or {}), **(resources.get("requests") or {})}.items():
            total[name] = total.get(name, 0.0) + count * float(parse_quantity(value))
    return total


def test_a_queued_job_s_pods_fit_the_cluster_queue_on_either_backend() -> None:
    """Kueue admits a Workload only when the ClusterQueue covers every resource its pods request
    and the quota holds them: a queued e2e job of each backend fits."""
    config = parse_config(VALUES["operatorConfig"], source=str(E2E_VALUES))
    [cluster_queue] = [q for q in QUEUES if q["kind"] == "ClusterQueue"]
    [group] = cluster_queue["spec"]["resourceGroups"]
    [flavor] = group["flavors"]
    quota = {r["name"]: float(parse_quantity(r["nominalQuota"])) for r in flavor["resources"]}
    assert set(quota) == set(group["coveredResources"])
    dataset = Dataset.model_validate(validate({**DATASET, "metadata": {**DATASET["metadata"], "namespace": "e2e"}}))
    for namespace in (JOB_NAMESPACE, TRAINJOB_NAMESPACE):
        manifest = queued_training_job("e2e-queued", epochs=1)
        manifest["metadata"]["namespace"] = namespace
        job = TrainingJob.model_validate(validate(manifest))
        child = build_child(job, dataset, config)
        assert child["kind"] == CHILD_KINDS[config.backend_for(namespace)].kind
        assert child["metadata"]["labels"][KUEUE_QUEUE_LABEL] == LOCAL_QUEUE
        needed = _requests(child)
        assert set(needed) <= set(quota), f"{child['kind']} requests what the ClusterQueue does not cover"
        assert all(value <= quota[name] for name, value in needed.items()), (needed, quota)


def test_the_trainjob_through_a_queue_runs_only_with_a_kueue_for_trainer_v2_2() -> None:
    assert kueue_version("v0.14.8") < KUEUE_FOR_TRAINER_V2_2 <= kueue_version("v0.17.0")
    assert kueue_version(KUEUE_REF) >= (0, 14, 8)  # the release the operator's Workload reads target
