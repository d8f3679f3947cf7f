"""The e2e suite's own manifests are valid for the CRDs, so a kind run never fails on a typo.
These run everywhere, with no cluster."""

from __future__ import annotations

from tensorone.api.admission import validate
from tests.e2e.test_kind import DATASET, training_job


def test_the_dataset_is_valid() -> None:
    validate({**DATASET, "metadata": {**DATASET["metadata"], "namespace": "e2e"}})


def test_the_training_jobs_are_valid_and_cpu_only() -> None:
    for job in (
        training_job("e2e-complete", epochs=2),
        training_job("e2e-stop-resume", epochs=200, checkpointSteps=5, keepCheckpoints=2),
    ):
        job["metadata"]["namespace"] = "e2e"
        stored = validate(job)
        assert "gpuType" not in stored["spec"]
