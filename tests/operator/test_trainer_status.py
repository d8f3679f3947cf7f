"""A TrainJob's status.trainerStatus as the operator reads it: which jobs read it instead of polling
their pod, how a posted report joins what the termination messages said, and how a hostile one is
refused with the reason while the job keeps its report."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tensorone_operator.builders import CONTAINER_NAME, MASTER_REPLICA
from tensorone_operator.children import child_state
from tensorone_operator.config import TrainJobProgress
from tensorone_operator.live_status import REPLICA_TYPE_LABEL, live_fields, report_events
from tensorone_operator.trainer_reports import TrainerReports
from tensorone_operator.trainjob import child_view, posted_status

from tensorone.api.report import CheckpointReport, ProgressReport, TrainerState
from tensorone.api.trainer_status import trainer_status_of

KEY = ("team-a", "job")
NOW = datetime.now(UTC).replace(microsecond=0)
STARTED = NOW - timedelta(minutes=5, microseconds=-250_000)
RESUMED = NOW - timedelta(minutes=2, microseconds=-500_000)


def checkpoint(step: int, reason: str = "step") -> CheckpointReport:
    return CheckpointReport(
        id=f"ckpt-step-{step}", epoch=0, step=step, loss=1.0, created_at=STARTED, size_bytes=10, reason=reason
    )


def report(step: int, **fields: Any) -> ProgressReport:
    values: dict[str, Any] = {
        "state": TrainerState.running,
        "step": step,
        "total_steps": 100,
        "epoch": 1,
        "total_epochs": 1,
        "loss": 2.0 - step / 100,
        "started_at": STARTED,
        "updated_at": STARTED + timedelta(seconds=step),
        "elapsed_seconds": float(step),
        "start_step": 0,
    }
    return ProgressReport(**{**values, **fields})


def posted(step: int, **fields: Any) -> dict[str, Any]:
    """What the trainer posts at ``step`` (the TrainJob's trainerStatus)."""
    return trainer_status_of(report(step, **fields), now=NOW)


def train_job(trainer_status: dict[str, Any] | None) -> dict[str, Any]:
    status: dict[str, Any] = {"jobsStatus": [{"name": "node", "ready": 1, "active": 1}]}
    if trainer_status is not None:
        status["trainerStatus"] = trainer_status
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "job", "namespace": "team-a"},
        "spec": {"runtimeRef": {"name": "tensorone-trainer-normal"}},
        "status": status,
    }


FOREIGN = {"metrics": [{"name": "loss", "value": "0.5"}], "lastUpdatedTime": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("progress", "child", "read"),
    [
        (TrainJobProgress.auto, train_job(posted(5)), "posted"),
        (TrainJobProgress.auto, train_job(None), "poll"),  # nothing posted yet
        (TrainJobProgress.auto, train_job(FOREIGN), "poll"),  # a status another library posted
        (TrainJobProgress.trainer_status, train_job(posted(5)), "posted"),
        (TrainJobProgress.trainer_status, train_job(None), "nothing"),  # never a poll
        (TrainJobProgress.trainer_status, train_job(FOREIGN), "foreign"),  # read, and refused
        (TrainJobProgress.poll, train_job(posted(5)), "poll"),
        (TrainJobProgress.auto, {"kind": "PyTorchJob", "status": {"trainerStatus": posted(5)}}, "poll"),
    ],
)
def test_which_jobs_read_the_trainer_status_instead_of_polling(
    progress: TrainJobProgress, child: dict[str, Any], read: str
) -> None:
    found = posted_status(child_view(child), progress)  # as the index keeps it
    expected = {"posted": posted(5), "poll": None, "nothing": {}, "foreign": FOREIGN}[read]
    assert found == expected


def test_a_post_alone_does_not_count_as_a_move_of_the_child() -> None:
    before, after = child_view(train_job(posted(5))), child_view(train_job(posted(6)))
    assert child_state(before) == child_state(after)  # no reconcile per post: the follow loop reads it
    assert child_state(before) != child_state(child_view(train_job(None) | {"status": {}}))


def ended_pod(report: ProgressReport, *, created: str) -> dict[str, Any]:
    """The rank-0 pod of a TrainJob whose trainer ended, leaving ``report`` as its termination message."""
    terminated = {"exitCode": 0, "message": report.termination_message()}
    return {
        "metadata": {
            "name": "job-node-0-0",
            "uid": f"pod-{created}",
            "creationTimestamp": created,
            "labels": {REPLICA_TYPE_LABEL: MASTER_REPLICA.lower()},
        },
        "spec": {"containers": [{"name": CONTAINER_NAME}]},
        "status": {"containerStatuses": [{"name": CONTAINER_NAME, "state": {"terminated": terminated}}]},
    }


def test_posts_are_kept_with_their_curves_growing_and_the_newest_checkpoint_listed() -> None:
    reports = TrainerReports()
    reports.trainer_status(KEY, {})  # nothing posted yet: nothing to read, nothing refused
    assert reports.latest(KEY) is None and reports.refusal(KEY) is None
    reports.trainer_status(KEY, posted(10))
    reports.trainer_status(KEY, posted(20, checkpoints=[checkpoint(20)], eval_loss=1.7, eval_history=[]))
    kept = reports.latest(KEY)
    assert kept is not None and kept.report.step == 20
    assert kept.loss_curve == ((10, 1.9), (20, 1.8))
    assert [c.id for c in kept.report.checkpoints] == ["ckpt-step-20"]
    fields = live_fields(kept.report, now=NOW, running_seconds=20.0)
    assert fields["progress"]["currentStep"] == 20 and fields["progress"]["percentage"] == 20.0
    assert fields["progress"]["remainingTime"] == 80 and "estimatedCompletion" in fields
    assert fields["metrics"]["currentLoss"] == 1.8 and fields["checkpoints"][0]["id"] == "ckpt-step-20"
    assert reports.news(KEY, {})[0][1] == "TrainingStarted"


def test_a_stopped_runs_checkpoints_stay_listed_and_its_termination_message_is_never_replaced_by_a_post() -> None:
    reports = TrainerReports()
    reports.trainer_status(KEY, posted(30))
    stopped = report(
        35,
        state=TrainerState.stopped,
        checkpoints=[checkpoint(20), checkpoint(35, "stop")],
        updated_at=STARTED + timedelta(seconds=36),
    )
    # The stop's last post says the same as its termination message, and is read after it: the
    # termination message stays (a tie goes to it), with its whole list of checkpoints.
    assert reports.pod_changed(KEY, ended_pod(stopped, created="2026-01-01T00:00:00Z"), deleted=False)
    last_post = trainer_status_of(stopped, now=NOW)
    reports.trainer_status(KEY, last_post)
    kept = reports.latest(KEY)
    assert kept is not None and kept.report.state == TrainerState.stopped
    assert [c.id for c in kept.report.checkpoints] == ["ckpt-step-20", "ckpt-step-35"]
    previous = kept.report

    # The resumed process posts: its newest checkpoint joins the list, its curve goes on after the stopped run's.
    resumed = dict(started_at=RESUMED, resumed_from="ckpt-step-35", start_step=35)
    reports.trainer_status(KEY, posted(40, **resumed, updated_at=RESUMED + timedelta(seconds=5)))
    reports.trainer_status(
        KEY, posted(50, **resumed, updated_at=RESUMED + timedelta(seconds=10), checkpoints=[checkpoint(50)])
    )
    kept = reports.latest(KEY)
    assert kept is not None and kept.report.started_at == RESUMED
    assert [c.id for c in kept.report.checkpoints] == ["ckpt-step-20", "ckpt-step-35", "ckpt-step-50"]
    assert [step for step, _ in kept.loss_curve] == [30, 35, 40, 50]
    events = report_events(previous, kept.report)
    assert [reason for _, reason, _ in events] == ["TrainingResumed", "CheckpointSaved"]

    # Its end comes with its termination message, which lists the checkpoints it kept.
    ended = report(
        100,
        **resumed,
        state=TrainerState.completed,
        updated_at=RESUMED + timedelta(seconds=60),
        checkpoints=[checkpoint(50), checkpoint(100, "final")],
    )
    assert reports.pod_changed(KEY, ended_pod(ended, created="2026-01-01T00:10:00Z"), deleted=False)
    reports.trainer_status(KEY, trainer_status_of(ended, now=NOW))
    kept = reports.latest(KEY)
    assert kept is not None and kept.report.state == TrainerState.completed
    assert [c.id for c in kept.report.checkpoints] == ["ckpt-step-50", "ckpt-step-100"]
    assert kept.loss_curve[-1][0] == 100


def test_a_hostile_post_is_refused_and_the_report_kept_until_a_good_one_comes() -> None:
    reports = TrainerReports()
    reports.trainer_status(KEY, posted(10))
    hostile = copy.deepcopy(posted(11))
    for item in hostile["metrics"]:
        if item["name"] == "current_step":
            item["value"] = "1e99"
    reports.trainer_status(KEY, hostile)
    refusal = reports.refusal(KEY)
    assert refusal is not None and refusal.startswith(
        "TrainJob status.trainerStatus: trainerStatus metric current_step"
    )
    kept = reports.latest(KEY)
    assert kept is not None and kept.report.step == 10
    warning = reports.news(KEY, {})[0]
    assert warning[1] == "ReportRefused" and "current_step" in warning[2]
    reports.trainer_status(KEY, hostile)  # the same status again: not read again, not announced again
    assert [reason for _, reason, _ in reports.news(KEY, {})] == []
    reports.trainer_status(KEY, posted(12))
    assert reports.refusal(KEY) is None
    kept = reports.latest(KEY)
    assert kept is not None and kept.report.step == 12


def test_a_post_from_a_clock_far_ahead_is_refused() -> None:
    reports = TrainerReports()
    ahead = posted(10)
    ahead["lastUpdatedTime"] = (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reports.trainer_status(KEY, ahead)
    refusal = reports.refusal(KEY)
    assert refusal is not None and "is in the future" in refusal and reports.latest(KEY) is None
