"""When a status is worth writing: a change of phase, condition or checkpoints at once; progress
alone within the operator's budget of progress writes; the clock alone every 30 s."""

from __future__ import annotations

from typing import Any

from tensorone_operator.config import OperatorConfig
from tensorone_operator.events import Events
from tensorone_operator.kube import KubeApi
from tensorone_operator.metrics import PhaseBook
from tensorone_operator.observed import ObservedJob
from tensorone_operator.status_writer import StatusWriter
from tensorone_operator.trainer_reports import TrainerReports

from tests.factories import training_job
from tests.kube.server import EmulatorServer

RUNNING: dict[str, Any] = {
    "phase": "Running",
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Running",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ],
    "progress": {"currentStep": 100, "totalSteps": 1000, "percentage": 10.0, "elapsedTime": 600},
    "metrics": {"currentLoss": 1.5},
    "checkpoints": [{"id": "ckpt-step-100", "epoch": 0, "step": 100, "createdAt": "2026-01-01T00:10:00Z"}],
    "resourceUsage": {"gpuHours": 0.1},
}


def writer(api: KubeApi, running_jobs: int, writes_per_second: float) -> StatusWriter:
    phases = PhaseBook()
    for index in range(running_jobs):
        phases.record("default", f"job-{index}", "Running")
    return StatusWriter(
        api, TrainerReports(), Events(lambda *_: None), phases, progress_writes_per_second=writes_per_second
    )


def changed(**fields: Any) -> dict[str, Any]:
    return {**RUNNING, **fields}


async def just_written(cluster: EmulatorServer, status: StatusWriter) -> ObservedJob:
    """The job in the emulator with the RUNNING status, just written by ``status``."""
    created = cluster.api.create(training_job())
    job = ObservedJob.parse(created)
    await status.write(job, dict(RUNNING))
    return ObservedJob.parse(cluster.api.get(training_job()["apiVersion"], "TrainingJob", "llama"))


async def test_few_running_jobs_have_their_progress_written_at_every_poll(cluster: EmulatorServer) -> None:
    api = KubeApi(cluster.url, {}, False)
    try:
        status = writer(api, running_jobs=50, writes_per_second=100)
        assert status.progress_interval() == 0.5
        # A poll every 5 s (the default) finds the job's share of the budget free.
        assert status.progress_interval() < OperatorConfig().progress_poll_seconds
    finally:
        await api.close()


async def test_many_running_jobs_share_the_budget_of_progress_writes(cluster: EmulatorServer) -> None:
    api = KubeApi(cluster.url, {}, False)
    try:
        status = writer(api, running_jobs=5000, writes_per_second=100)
        assert status.progress_interval() == 50.0
        job = await just_written(cluster, status)
        assert job.status["progress"]["currentStep"] == 100
        # Progress alone waits for the job's share of the budget ...
        assert not status.due(job, changed(progress={**RUNNING["progress"], "currentStep": 101}))
        assert not status.due(job, changed(metrics={"currentLoss": 1.4}))
        # ... a change of phase, condition or checkpoints does not.
        assert status.due(job, changed(phase="Failed"))
        assert status.due(
            job, changed(conditions=[{**RUNNING["conditions"][0], "status": "False", "reason": "Restarting"}])
        )
        assert status.due(
            job,
            changed(
                checkpoints=[*RUNNING["checkpoints"], {**RUNNING["checkpoints"][0], "id": "ckpt-step-200", "step": 200}]
            ),
        )
        # A job whose status this operator has not written yet (just started) is written at once.
        assert writer(api, running_jobs=5000, writes_per_second=100).due(
            job, changed(progress={**RUNNING["progress"], "currentStep": 101})
        )
    finally:
        await api.close()


async def test_a_status_that_moved_with_the_clock_alone_waits_30_seconds(cluster: EmulatorServer) -> None:
    api = KubeApi(cluster.url, {}, False)
    try:
        status = writer(api, running_jobs=1, writes_per_second=100)
        job = await just_written(cluster, status)
        assert not status.due(job, changed(resourceUsage={"gpuHours": 0.2}))
        assert not status.due(job, RUNNING)
    finally:
        await api.close()
