"""The pure live-status logic: report -> status fields, running time and cost, events, limits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tensorone_operator.catalog import job_resources
from tensorone_operator.config import OperatorConfig
from tensorone_operator.events import EventLimiter
from tensorone_operator.live_status import (
    KeptReport,
    curve_wire,
    downsample,
    extended,
    human_bytes,
    live_fields,
    newer,
    replica_failure,
    report_events,
    running_time,
    termination_refusal,
    termination_report,
    usage,
    with_live,
)
from tensorone_operator.observed import ObservedJob

from tensorone.api.admission import validate
from tensorone.api.report import (
    MAX_RATE,
    MAX_SECONDS,
    MAX_STEPS,
    CheckpointReport,
    ExportReport,
    InvalidReport,
    LossPoint,
    OutputReport,
    ProgressReport,
    TrainerState,
    parse_report,
    remaining_seconds,
)
from tensorone.api.timestamps import rfc3339
from tensorone.api.v1alpha1.trainingjob import MAX_EPOCHS, MAX_HISTORY_POINTS

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
STARTED = NOW - timedelta(seconds=100)


def checkpoint(id: str, step: int, reason: str = "step", loss: float | None = 1.0) -> CheckpointReport:
    return CheckpointReport(
        id=id, epoch=step // 10, step=step, loss=loss, created_at=STARTED, size_bytes=2_300_000_000, reason=reason
    )


def report(**fields: object) -> ProgressReport:
    base: dict[str, object] = {
        "state": TrainerState.running,
        "epoch": 2,
        "total_epochs": 3,
        "step": 40,
        "total_steps": 60,
        "loss": 0.342,
        "best_loss": 0.298,
        "learning_rate": 1.8e-4,
        "tokens_per_second": 1250.4,
        "memory_bytes": 38_200_000_000,
        "started_at": STARTED,
        "updated_at": NOW,
        "elapsed_seconds": 100.0,
        "step_seconds": 94.0,
    }
    base.update(fields)
    return ProgressReport.model_validate(base)


def test_live_fields_mirror_the_report_in_the_reference_shape() -> None:
    fields = live_fields(report(checkpoints=[checkpoint("ckpt-epoch-1", 20, "epoch")]), now=NOW, running_seconds=7200)
    assert fields["progress"] == {
        "currentEpoch": 2,
        "totalEpochs": 3,
        "currentStep": 40,
        "totalSteps": 60,
        "percentage": 66.7,
        "elapsedTime": 7200,
        "remainingTime": 50,  # 20 steps left at 40 steps per 100 s
    }
    assert fields["metrics"]["currentLoss"] == 0.342
    assert fields["metrics"]["throughput"] == "1250 tokens/sec"
    assert fields["metrics"]["memoryUsage"] == "38.2GB"
    assert fields["checkpoints"] == [
        {
            "id": "ckpt-epoch-1",
            "epoch": 2,
            "step": 20,
            "loss": 1.0,
            "createdAt": "2026-01-15T11:58:20Z",
            "size": "2.3GB",
            "reason": "epoch",
        }
    ]
    assert fields["estimatedCompletion"] == "2026-01-15T12:00:50Z"
    # Every field fits the CRD's status schema.
    job = {
        "apiVersion": "training.tensorone.ai/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "fits"},
        "spec": {"modelType": "custom", "datasetId": "d", "config": {"custom": {"image": "x"}}},
        "status": {"phase": "Running", **fields},
    }
    validate(job)


def test_remaining_time_counts_from_the_resume_checkpoint() -> None:
    resumed = report(step=50, resumed_from="ckpt-step-40", checkpoints=[checkpoint("ckpt-step-40", 40)])
    # 10 steps in 100 s since the resume: 10 steps left take 100 s.
    assert remaining_seconds(resumed) == 100.0
    assert remaining_seconds(report(step=0)) is None
    assert remaining_seconds(report(state=TrainerState.completed, step=60)) == 0.0


def test_a_nan_loss_is_absent_not_invalid_json() -> None:
    fields = live_fields(report(loss=float("nan"), state=TrainerState.diverged), now=NOW, running_seconds=1)
    assert "currentLoss" not in fields["metrics"]
    assert "estimatedCompletion" not in fields


def test_downsample_keeps_first_and_latest_and_bounds_the_size() -> None:
    points = [LossPoint(step=i, loss=10.0 / (i + 1)) for i in range(1, 10_001)]
    kept = downsample(points)
    assert len(kept) == MAX_HISTORY_POINTS
    assert kept[0]["step"] == 1 and kept[-1]["step"] == 10_000
    assert [p["step"] for p in kept] == sorted(p["step"] for p in kept)
    assert downsample(points[:5]) == [{"step": p.step, "loss": round(p.loss, 6)} for p in points[:5]]


def test_a_kept_report_holds_only_the_points_the_status_shows() -> None:
    curve = [LossPoint(step=i, loss=10.0 / i) for i in range(1, 1025)]
    evals = [LossPoint(step=i, loss=5.0 / i) for i in range(10, 1025, 10)]
    full = report(step=1024, loss_history=curve, eval_history=evals)
    kept = KeptReport.of(full, "2026-01-15T12:00:00Z")
    assert kept.report.loss_history == [] and kept.report.eval_history == []
    assert kept.report.model_copy(update={"loss_history": curve, "eval_history": evals}) == full
    assert len(kept.loss_curve) == MAX_HISTORY_POINTS and all(type(point) is tuple for point in kept.loss_curve)
    assert curve_wire(kept.loss_curve) == downsample(curve) and curve_wire(kept.eval_curve) == downsample(evals)
    # One more point (a termination message's last loss) keeps the bound, the first and the latest.
    longer = extended(kept.loss_curve, 1100, 0.5)
    assert len(longer) == MAX_HISTORY_POINTS and longer[0] == (1, 10.0) and longer[-1] == (1100, 0.5)


def test_running_time_adds_only_while_running() -> None:
    seconds, at = running_time(
        {"runningSeconds": 60.0, "measuredAt": "2026-01-15T11:59:00Z"}, was_running=True, now=NOW
    )
    assert seconds == 120.0 and at == NOW
    seconds, _ = running_time(
        {"runningSeconds": 60.0, "measuredAt": "2026-01-15T11:59:00Z"}, was_running=False, now=NOW
    )
    assert seconds == 60.0
    assert running_time(None, was_running=True, now=NOW) == (0.0, NOW)


def test_usage_prices_gpu_hours_and_defines_efficiency() -> None:
    fields = usage(running_seconds=7200, measured_at=NOW, gpus=4, hourly_cost=4 * 4.25, report=report())
    assert fields["gpuHours"] == 8.0
    assert fields["cost"] == 34.0
    assert fields["efficiency"] == 0.94
    assert "efficiency" not in usage(running_seconds=0, measured_at=NOW, gpus=0, hourly_cost=0, report=None)


def test_events_for_start_epoch_checkpoint_and_stop() -> None:
    first = report(step=1, epoch=1)
    assert [e[1] for e in report_events(None, first)] == ["TrainingStarted"]
    later = report(step=25, epoch=2, checkpoints=[checkpoint("ckpt-epoch-1", 20, "epoch")])
    assert [e[1] for e in report_events(first, later)] == ["EpochCompleted", "CheckpointSaved"]
    stopped = report(
        step=26,
        epoch=2,
        state=TrainerState.stopped,
        message="stopped by SIGTERM",
        checkpoints=[checkpoint("ckpt-epoch-1", 20, "epoch"), checkpoint("ckpt-step-26", 26, "stop")],
    )
    events = report_events(later, stopped)
    assert [e[1] for e in events] == ["CheckpointSaved"]  # "Stopped" is the phase change's Event
    assert "ckpt-step-26" in events[0][2]
    assert report_events(stopped, stopped) == []


def test_a_trainer_notice_is_one_warning_event() -> None:
    skipped = "resumed from ckpt-epoch-1; skipped damaged checkpoints: ckpt-epoch-2 (optimizer.pt: sha256 differs)"
    first = report(step=1, epoch=1, message=skipped)
    assert ("Warning", "TrainerNotice", skipped) in report_events(None, first)
    assert report_events(first, report(step=2, epoch=1, message=skipped)) == []
    assert report_events(first, report(step=2, epoch=1)) == []


def test_events_for_resume_and_divergence() -> None:
    resumed = report(started_at=NOW, step=27, resumed_from="ckpt-step-26", checkpoints=[checkpoint("ckpt-step-26", 26)])
    stopped = report(step=26, state=TrainerState.stopped, checkpoints=[checkpoint("ckpt-step-26", 26, "stop")])
    assert [e[1] for e in report_events(stopped, resumed)] == ["TrainingResumed"]
    diverged = report(
        started_at=NOW, step=30, state=TrainerState.diverged, reason="Diverged", message="loss is nan at step 30"
    )
    events = report_events(resumed, diverged)
    assert events[-1] == ("Warning", "Diverged", "training diverged: loss is nan at step 30")


def test_event_limiter_bounds_a_trainer_that_restarts_in_a_loop() -> None:
    limiter = EventLimiter(burst=10, window=60, repeat=10)
    job = ("ns", "job")
    news = ["TrainingStarted", "TrainingResumed"]
    posted = [t for t in range(300) if limiter.allow(job, news[t % 2], "Normal", float(t))]
    assert len(posted) <= 2 * 300 // 10
    diverged = [t for t in range(300) if limiter.allow(job, "Diverged", "Warning", float(t))]
    assert len(diverged) == 300 // 10


def test_event_limiter_bounds_bursts_but_never_drops_warnings() -> None:
    limiter = EventLimiter(burst=3, window=60, repeat=10)
    job = ("ns", "job")
    assert limiter.allow(job, "CheckpointSaved", "Normal", 0)
    assert not limiter.allow(job, "CheckpointSaved", "Normal", 1)  # repeated within 10 s
    assert limiter.allow(job, "EpochCompleted", "Normal", 2)
    assert limiter.allow(job, "CheckpointSaved", "Normal", 12)
    assert not limiter.allow(job, "EpochCompleted", "Normal", 13)  # burst of 3 used
    assert limiter.allow(job, "Diverged", "Warning", 14)
    assert limiter.allow(job, "EpochCompleted", "Normal", 75)  # the window moved on
    assert limiter.allow(("ns", "other"), "EpochCompleted", "Normal", 14)


def test_termination_report_from_current_or_last_state() -> None:
    text = report(state=TrainerState.stopped).termination_message()
    pod = {"status": {"containerStatuses": [{"name": "pytorch", "lastState": {"terminated": {"message": text}}}]}}
    found = termination_report(pod, now=NOW)
    assert found is not None and found.state == TrainerState.stopped
    garbage = {"status": {"containerStatuses": [{"name": "pytorch", "state": {"terminated": {"message": "oops"}}}]}}
    assert termination_report(garbage, now=NOW) is None


def test_termination_refusal_names_the_pod_and_the_problem_of_an_ended_containers_message() -> None:
    def pod(state: str, message: str) -> dict[str, Any]:
        statuses = [{"name": "pytorch", state: {"terminated": {"message": message}}}]
        return {"metadata": {"name": "llama-master-0"}, "status": {"containerStatuses": statuses}}

    bomb = report(epoch=1).to_json().replace('"epoch":1', '"epoch":6000000')
    assert termination_refusal(pod("state", bomb), now=NOW) == (
        "termination message of pod llama-master-0: report field epoch: Input should be less than or equal to 10000"
    )
    assert "Invalid JSON" in (termination_refusal(pod("state", "oops"), now=NOW) or "")
    assert termination_refusal(pod("state", report().termination_message()), now=NOW) is None
    assert termination_refusal(pod("state", ""), now=NOW) is None  # wrote nothing: nothing to refuse
    assert termination_refusal(pod("lastState", "oops"), now=NOW) is None  # an earlier run, judged when it ended


def test_a_termination_message_from_the_future_is_refused_and_not_taken() -> None:
    """A start in the future would outrank every later report of the job: the message is refused
    (naming the pod and the field) and gives no report."""
    future = report(started_at=datetime(9999, 1, 1, tzinfo=UTC)).termination_message()
    statuses = [{"name": "pytorch", "state": {"terminated": {"exitCode": 0, "message": future}}}]
    pod = {"metadata": {"name": "llama-master-0"}, "status": {"containerStatuses": statuses}}
    refusal = termination_refusal(pod, now=NOW) or ""
    assert refusal.startswith("termination message of pod llama-master-0: report field startedAt: 9999-01-01T00:00:00Z")
    assert "is in the future" in refusal
    assert termination_report(pod, now=NOW) is None


def test_a_replica_failure_is_a_permanent_exit_code_with_the_report_when_it_is_acceptable() -> None:
    def worker(code: int, message: str, **metadata: Any) -> dict[str, Any]:
        statuses = [{"name": "pytorch", "state": {"terminated": {"exitCode": code, "message": message}}}]
        labels = {"training.kubeflow.org/replica-type": "worker"}
        meta = {"name": "llama-worker-1", "labels": labels, **metadata}
        return {"metadata": meta, "status": {"containerStatuses": statuses}}

    told = report(state=TrainerState.failed, reason="DataError", message="bad rows").termination_message()
    failure = replica_failure(worker(3, told), now=NOW)
    assert failure is not None and (failure.replica, failure.pod, failure.exit_code) == ("Worker", "llama-worker-1", 3)
    assert failure.report is not None and failure.report.message == "bad rows"
    # A message out of bounds (here: from the future) is no report; the failure stays.
    future = report(state=TrainerState.failed, started_at=datetime(9999, 1, 1, tzinfo=UTC)).termination_message()
    assert (unbounded := replica_failure(worker(3, future), now=NOW)) is not None and unbounded.report is None
    assert replica_failure(worker(138, told), now=NOW) is None  # retried: the job goes on
    assert replica_failure(worker(0, told), now=NOW) is None
    assert replica_failure(worker(3, told, deletionTimestamp="2026-01-15T12:00:00Z"), now=NOW) is None


def test_newer_prefers_the_later_process_then_step() -> None:
    old = report(step=40)
    final = report(step=40, state=TrainerState.stopped, updated_at=NOW + timedelta(seconds=1))
    assert newer(old, final) is final
    restarted = report(started_at=NOW, step=1)
    assert newer(restarted, old) is restarted
    assert newer(None, old) is old


def test_human_bytes() -> None:
    assert human_bytes(512) == "512B"
    assert human_bytes(2_469_606_195) == "2.5GB"
    assert human_bytes(None) is None


def test_the_start_is_announced_once_training_runs() -> None:
    starting = report(state=TrainerState.starting, step=0, epoch=0, started_at=None)
    assert report_events(None, starting) == []
    # A short run whose first report the operator reads is already its last still announces its start.
    ended = report(step=9, epoch=1, state=TrainerState.completed, checkpoints=[checkpoint("ckpt-step-9", 9, "final")])
    assert [e[1] for e in report_events(None, ended)][:2] == ["TrainingStarted", "CheckpointSaved"]
    running = report(step=1, epoch=1)
    assert [e[1] for e in report_events(starting, running)] == ["TrainingStarted"]
    assert report_events(running, report(step=2, epoch=1)) == []
    # Seen starting, then already ended (the whole run fell between two polls): its start too.
    assert [e[1] for e in report_events(starting, ended)][:2] == ["TrainingStarted", "CheckpointSaved"]
    # A resumed process seen starting after the stop of the one before, then ended.
    stopped = report(step=4, state=TrainerState.stopped, started_at=NOW - timedelta(hours=1))
    resumed = ended.model_copy(update={"resumed_from": "ckpt-step-4"})
    assert report_events(stopped, starting) == []
    assert [e[1] for e in report_events(starting, resumed)][:1] == ["TrainingResumed"]
    assert [e[1] for e in report_events(stopped, resumed)][:1] == ["TrainingResumed"]
    assert "TrainingStarted" not in [e[1] for e in report_events(running, ended)]


def test_epochs_finished_between_two_polls_are_announced_in_one_event() -> None:
    checkpoints = [checkpoint("ckpt-epoch-1", 10, "epoch", loss=2.5), checkpoint("ckpt-epoch-2", 20, "epoch", loss=1.5)]
    events = report_events(report(step=3, epoch=1), report(step=25, epoch=3, checkpoints=checkpoints))
    epochs = [e[2] for e in events if e[1] == "EpochCompleted"]
    assert epochs == ["epochs 1-2/3 done, loss 1.5"]
    one = report_events(report(step=3, epoch=1), report(step=12, epoch=2, checkpoints=checkpoints[:1]))
    assert [e[2] for e in one if e[1] == "EpochCompleted"] == ["epoch 1/3 done, loss 2.5"]


def test_a_report_claiming_a_huge_epoch_gives_one_event() -> None:
    events = report_events(report(step=3, epoch=1), report(step=4, epoch=MAX_EPOCHS, total_epochs=MAX_EPOCHS))
    assert [e[2] for e in events if e[1] == "EpochCompleted"] == [f"epochs 1-{MAX_EPOCHS - 1}/{MAX_EPOCHS} done"]


def test_a_bounded_report_that_implies_centuries_left_is_capped() -> None:
    extreme = report(step=1, total_steps=MAX_STEPS, elapsed_seconds=MAX_SECONDS, tokens_per_second=MAX_RATE)
    fields = live_fields(extreme, now=NOW, running_seconds=MAX_SECONDS)
    assert fields["progress"]["remainingTime"] == MAX_SECONDS
    assert fields["estimatedCompletion"] == "2057-09-23T13:46:40Z"
    assert len(fields["metrics"]["throughput"]) <= 64


def described_output(**fields: object) -> OutputReport:
    base: dict[str, object] = {
        "path": "output",
        "kind": "adapter",
        "size_bytes": 12_300_000,
        "sha256": "ab" * 32,
        "base_model": "meta-llama/Llama-2-7b-hf",
        "checkpoint": "ckpt-step-40",
        "created_at": NOW,
        "merged": {"path": "output/merged", "kind": "merged", "size_bytes": 13_500_000_000, "sha256": "cd" * 32},
    }
    base.update(fields)
    return OutputReport.model_validate(base)


def test_the_output_best_checkpoint_and_perplexity_reach_the_status_and_fit_its_schema() -> None:
    fields = live_fields(
        report(
            state=TrainerState.completed,
            eval_loss=1.25,
            eval_perplexity=3.49,
            best_checkpoint="ckpt-step-20",
            output=described_output(),
        ),
        now=NOW,
        running_seconds=60,
    )
    assert fields["metrics"]["evalPerplexity"] == 3.49
    assert fields["bestCheckpoint"] == "ckpt-step-20"
    assert fields["output"] == {
        "path": "output",
        "kind": "adapter",
        "sizeBytes": 12_300_000,
        "size": "12.3MB",
        "sha256": "ab" * 32,
        "baseModel": "meta-llama/Llama-2-7b-hf",
        "checkpoint": "ckpt-step-40",
        "createdAt": "2026-01-15T12:00:00Z",
        "merged": {
            "path": "output/merged",
            "kind": "merged",
            "sizeBytes": 13_500_000_000,
            "size": "13.5GB",
            "sha256": "cd" * 32,
        },
    }
    validate(
        {
            "apiVersion": "training.tensorone.ai/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "fits"},
            "spec": {"modelType": "custom", "datasetId": "d", "config": {"custom": {"image": "x"}}},
            "status": {"phase": "Completed", **fields},
        }
    )


def test_an_output_report_out_of_bounds_is_refused_naming_the_field() -> None:
    for bad, field in (
        ({"sha256": "not-hex"}, "output.sha256"),
        ({"kind": "weights"}, "output.kind"),
        ({"path": "x" * 2000}, "output.path"),
        ({"checkpoint": "Bad Id"}, "output.checkpoint"),
        ({"size_bytes": -1}, "output.sizeBytes"),
    ):
        body = report(state=TrainerState.completed).to_wire() | {"output": described_output().to_wire() | to_wire(bad)}
        with pytest.raises(InvalidReport, match=f"report field {field}"):
            parse_report(json.dumps(body), now=NOW)
    too_perplexed = report(state=TrainerState.completed).to_wire() | {"evalPerplexity": 1e300}
    with pytest.raises(InvalidReport, match="report field evalPerplexity"):
        parse_report(json.dumps(too_perplexed), now=NOW)


def to_wire(fields: Mapping[str, object]) -> dict[str, object]:
    return {"sizeBytes" if key == "size_bytes" else key: value for key, value in fields.items()}


def test_an_early_stop_and_the_output_are_events() -> None:
    running = report(step=30)
    done = report(
        step=30,
        state=TrainerState.completed,
        reason="EarlyStopped",
        message="stopped early: evalLoss did not improve by more than 0 for 3 evaluations",
        output=described_output(),
    )
    events = report_events(running, done)
    assert ("Normal", "EarlyStopped", f"training stopped early: {done.message}") in events
    [(kind, _, text)] = [e for e in events if e[1] == "OutputWritten"]
    assert kind == "Normal"
    assert text == "final model (adapter, 12.3MB, sha256 abababababab) written to output from ckpt-step-40"
    # Said once: the next poll of the same ended trainer says nothing new.
    assert report_events(done, done) == []


def test_a_completed_job_the_trainer_stopped_early_says_so_in_its_message_and_conditions() -> None:
    body = {
        "apiVersion": "training.tensorone.ai/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j", "namespace": "n", "generation": 1},
        "spec": {"modelType": "llm", "datasetId": "d", "config": {"baseModel": "m", "strategy": "lora"}},
        "status": {},
    }
    completed = {
        "phase": "Completed",
        "message": "PyTorchJob j is successfully completed.",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "", "lastTransitionTime": "x"},
            {"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "", "lastTransitionTime": "x"},
        ],
    }
    job = ObservedJob.parse(body)
    config = OperatorConfig()
    resources = job_resources(job.spec, config)
    early = report(state=TrainerState.completed, reason="EarlyStopped", message="evalLoss did not improve")
    status = with_live(job, completed, KeptReport.of(early, rfc3339(NOW)), resources, config, now=NOW)
    assert status["message"] == "completed, stopped early: evalLoss did not improve"
    reasons = {c["type"]: c["reason"] for c in status["conditions"]}
    assert reasons["Ready"] == reasons["Succeeded"] == "EarlyStopped"

    plain = report(state=TrainerState.completed, message="trained 60 of 60 steps")
    status = with_live(job, completed, KeptReport.of(plain, rfc3339(NOW)), resources, config, now=NOW)
    assert status["message"] == completed["message"]
    assert {c["reason"] for c in status["conditions"]} == {"Succeeded"}


def test_the_tasks_evaluation_metrics_reach_the_status_in_its_schema() -> None:
    fields = live_fields(report(eval_metrics={"accuracy": 0.8125, "top5Accuracy": 1.0}), now=NOW, running_seconds=1)
    assert fields["metrics"]["evalMetrics"] == {"accuracy": 0.8125, "top5Accuracy": 1.0}
    assert "evalMetrics" not in live_fields(report(), now=NOW, running_seconds=1)["metrics"]
    validate(
        {
            "apiVersion": "training.tensorone.ai/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "fits"},
            "spec": {"modelType": "custom", "datasetId": "d", "config": {"custom": {"image": "x"}}},
            "status": {"phase": "Running", **fields},
        }
    )


def test_the_export_reaches_the_status_once_verified_and_a_failure_says_where_the_model_is() -> None:
    body = {
        "apiVersion": "training.tensorone.ai/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j", "namespace": "n", "generation": 1},
        "spec": {
            "modelType": "llm",
            "datasetId": "d",
            "config": {"baseModel": "m", "strategy": "lora"},
            "output": {"uri": "s3://models/team-a"},
        },
        "status": {},
    }
    completed = {
        "phase": "Completed",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "", "lastTransitionTime": "x"},
        ],
    }
    job = ObservedJob.parse(body)
    config = OperatorConfig()
    resources = job_resources(job.spec, config)
    uri = "s3://models/team-a/j"

    def status_of(export: dict[str, Any]) -> dict[str, Any]:
        done = report(
            state=TrainerState.completed, output=described_output(), export=ExportReport.model_validate(export)
        )
        return with_live(job, completed, KeptReport.of(done, rfc3339(NOW)), resources, config, now=NOW)

    def condition(status: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in status["conditions"] if c["type"] == "Exported")

    uploading = status_of({"uri": uri, "state": "uploading", "message": "uploading the output"})
    assert "exportUri" not in uploading["output"]
    assert (condition(uploading)["status"], condition(uploading)["reason"]) == ("False", "Exporting")

    exported = status_of({"uri": uri, "state": "exported", "message": "uploaded", "checkpoints": ["ckpt-step-40"]})
    assert exported["output"]["exportUri"] == uri
    assert exported["output"]["exportedCheckpoints"] == ["ckpt-step-40"]
    assert (condition(exported)["status"], condition(exported)["reason"]) == ("True", "Exported")

    failed = status_of(
        {"uri": uri, "state": "failed", "message": "upload to s3://models/team-a/j failed: NoSuchBucket"}
    )
    assert "exportUri" not in failed["output"]
    assert failed["phase"] == "Completed"
    assert {c["type"]: c["status"] for c in failed["conditions"]}["Ready"] == "True"
    assert (condition(failed)["status"], condition(failed)["reason"]) == ("False", "ExportFailed")
    assert "NoSuchBucket" in condition(failed)["message"]
    assert "the model is on the checkpoint claim j-checkpoints under output/" in condition(failed)["message"]
    for status in (uploading, exported, failed):
        validate(
            {
                **body,
                "status": {
                    **status,
                    "conditions": [{**c, "lastTransitionTime": rfc3339(NOW)} for c in status["conditions"]],
                },
            }
        )


def test_the_end_of_an_export_is_one_event() -> None:
    uri = "s3://models/team-a/j"
    uploading = report(state=TrainerState.completed, export=ExportReport(uri=uri, state="uploading"))
    exported = report(state=TrainerState.completed, export=ExportReport(uri=uri, state="exported", message="done"))
    failed = report(state=TrainerState.completed, export=ExportReport(uri=uri, state="failed", message="NoSuchBucket"))
    assert [e for e in report_events(None, uploading) if "Export" in e[1]] == []
    assert [e for e in report_events(uploading, exported) if "Export" in e[1]] == [("Normal", "Exported", "done")]
    assert report_events(exported, exported) == []
    [(kind, reason, text)] = [e for e in report_events(uploading, failed) if "Export" in e[1]]
    assert (kind, reason) == ("Warning", "ExportFailed")
    assert text.startswith("NoSuchBucket. The training is not affected: the model is on the checkpoint claim")
