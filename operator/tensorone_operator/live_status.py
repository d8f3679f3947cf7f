"""Pure live-status logic: the rank-0 trainer's progress report -> TrainingJob status fields and Events.

No I/O. ``live_fields`` turns a :class:`ProgressReport` (read from ``/progress`` while the pod runs,
or from its termination message once it has ended) into the status fields it owns: ``progress``,
``metrics``, ``checkpoints``, ``lossHistory``, ``evalLossHistory``, ``resumedFrom``,
``estimatedCompletion``, ``estimatedCost`` and ``lastReportTime``. ``usage`` brings
``resourceUsage`` up to date from running time and the catalog price. ``report_events`` says
what happened between two reports, for Kubernetes Events.

Definitions (also in docs/operator.md):

- ``progress.elapsedTime`` and ``resourceUsage.runningSeconds``: seconds the job spent in phase
  Running, summed over stops and resumes (the operator adds the time between two of its looks
  whenever the job was Running at the earlier one).
- ``resourceUsage.gpuHours`` = runningSeconds / 3600 x GPUs of the job; ``cost`` = gpuHours x the
  catalog's hourly price per GPU.
- ``resourceUsage.efficiency``: the share of the trainer's wall-clock time spent inside training
  steps (forward, backward, optimizer), as opposed to start-up, data loading between steps,
  evaluation and checkpointing: ``stepSeconds / elapsedSeconds`` of the current trainer process.
- ``remainingTime``: steps left divided by the step rate of the current trainer process (steps
  done since it started, or since the checkpoint it resumed from, per second of its wall-clock).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tensorone.api.exit_codes import failure_reason, follows_table, is_retryable, meaning
from tensorone.api.pods import REPLICA_TYPE_LABEL, TRAINER_CONTAINERS, checkpoint_claim_name, pod_rank
from tensorone.api.report import (
    REPORT_PORT_ENV,
    ArtifactReport,
    CheckpointReport,
    ExportReport,
    ExportState,
    InvalidReport,
    LossPoint,
    OutputReport,
    ProgressReport,
    TrainerState,
    parse_report,
    remaining_seconds,
)
from tensorone.api.timestamps import parse_time, rfc3339
from tensorone.api.v1alpha1 import ConditionType, Phase, Reason
from tensorone.api.v1alpha1.trainingjob import (
    MAX_HISTORY_POINTS,
    MAX_STATUS_CHECKPOINTS,
    Checkpoint,
    LossSample,
    Metrics,
    ModelArtifact,
    ModelOutput,
    Progress,
    ResourceUsage,
)
from tensorone_operator import catalog
from tensorone_operator.budget import budget_condition
from tensorone_operator.builders import MASTER_REPLICA, REPORT_PORT_NAME, WORKER_REPLICA
from tensorone_operator.catalog import JobResources
from tensorone_operator.config import OperatorConfig
from tensorone_operator.events import Event, EventType
from tensorone_operator.observed import ObservedJob
from tensorone_operator.status import set_condition

TOKENS_UNIT = "tokens/sec"
SAMPLES_UNIT = "samples/sec"


def human_bytes(size: int | float | None) -> str | None:
    """``2469606195`` -> ``2.3GB`` (decimal units, as the reference API shows sizes)."""
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return None  # unreachable: TB is the last unit


# A loss curve as the operator keeps it between polls: (step, loss) pairs, at most
# MAX_HISTORY_POINTS of them, the points the status shows. A report's own curve is up to 1024
# pydantic points of about 0.5 KB each, and a report is kept for every running job.
Curve = tuple[tuple[int, float], ...]


def _spread(count: int, limit: int) -> list[int]:
    """Indexes of at most ``limit`` of ``count`` points, spread evenly, first and latest always kept."""
    if count <= limit:
        return list(range(count))
    last = count - 1
    return sorted({round(i * last / (limit - 1)) for i in range(limit)})


def curve_of(points: Sequence[LossPoint], limit: int = MAX_HISTORY_POINTS) -> Curve:
    """The points of a report's curve the status shows, as a kept curve."""
    return tuple((points[i].step, points[i].loss) for i in _spread(len(points), limit))


def extended(curve: Curve, step: int, loss: float, limit: int = MAX_HISTORY_POINTS) -> Curve:
    """A kept curve with one more point, spread again within ``limit``."""
    longer = (*curve, (step, loss))
    return tuple(longer[i] for i in _spread(len(longer), limit))


def curve_wire(curve: Curve) -> list[dict[str, Any]]:
    """A kept curve as the status holds it (a diverged point, not finite, left out)."""
    samples = [LossSample(step=step, loss=finite) for step, loss in curve if (finite := _finite(loss)) is not None]
    return [sample.to_wire() for sample in samples]


def downsample(points: Sequence[LossPoint], limit: int = MAX_HISTORY_POINTS) -> list[dict[str, Any]]:
    """At most ``limit`` points spread evenly over the curve, first and latest always kept."""
    return curve_wire(curve_of(points, limit))


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: a diverged loss is shown as absent (the reason says why)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)


def _throughput(report: ProgressReport) -> dict[str, Any]:
    """The Metrics fields of the report's throughput (tokens per second, else samples)."""
    if report.tokens_per_second:
        value, unit = report.tokens_per_second, TOKENS_UNIT
    elif report.samples_per_second:
        value, unit = report.samples_per_second, SAMPLES_UNIT
    else:
        return {}
    return {"throughput": f"{value:.0f} {unit}", "throughput_value": round(value, 2), "throughput_unit": unit}


def live_fields(
    report: ProgressReport,
    *,
    now: datetime,
    running_seconds: float,
) -> dict[str, Any]:
    """The status fields the progress report owns, in their wire form (camelCase, as stored):
    assembled as the status models (Progress, Metrics, Checkpoint, LossSample)."""
    remaining = remaining_seconds(report)
    percentage = round(min(100.0, 100.0 * report.step / report.total_steps), 1) if report.total_steps > 0 else None
    progress = Progress(
        current_epoch=report.epoch,
        total_epochs=report.total_epochs,
        current_step=report.step,
        total_steps=report.total_steps,
        percentage=percentage,
        elapsed_time=int(running_seconds),
        remaining_time=None if remaining is None else round(remaining),
    )
    metrics = Metrics(
        current_loss=_finite(report.loss),
        best_loss=_finite(report.best_loss),
        eval_loss=_finite(report.eval_loss),
        best_eval_loss=_finite(report.best_eval_loss),
        eval_perplexity=report.eval_perplexity,
        learning_rate=report.learning_rate,
        memory_usage=human_bytes(report.memory_bytes),
        eval_metrics=dict(report.eval_metrics) or None,
        **_throughput(report),
    )
    checkpoints = [
        Checkpoint(
            id=c.id,
            epoch=c.epoch,
            step=c.step,
            loss=_finite(c.loss),
            created_at=parse_time(rfc3339(c.created_at)),  # second precision, as Kubernetes writes times
            size=human_bytes(c.size_bytes),
            reason=c.reason,
        )
        for c in report.checkpoints[-MAX_STATUS_CHECKPOINTS:]
    ]
    fields: dict[str, Any] = {
        "progress": progress.to_wire(),
        "metrics": metrics.to_wire(),
        "checkpoints": [checkpoint.to_wire() for checkpoint in checkpoints],
        "lossHistory": downsample(report.loss_history),
        "evalLossHistory": downsample(report.eval_history),
        "lastReportTime": rfc3339(now),
    }
    if report.resumed_from:
        fields["resumedFrom"] = report.resumed_from
    if report.best_checkpoint:
        fields["bestCheckpoint"] = report.best_checkpoint
    if report.output is not None:
        fields["output"] = output_status(report.output, report.export).to_wire()
    if remaining is not None and report.state in (TrainerState.running, TrainerState.starting):
        fields["estimatedCompletion"] = rfc3339(now + timedelta(seconds=remaining))
    return fields


def _artifact(report: ArtifactReport) -> dict[str, Any]:
    return {
        "path": report.path,
        "kind": report.kind,
        "size_bytes": report.size_bytes,
        "size": human_bytes(report.size_bytes),
        "sha256": report.sha256,
    }


def output_status(report: OutputReport, export: ExportReport | None = None) -> ModelOutput:
    """status.output from the trainer's description of the final model, with where it was exported
    once the export is verified."""
    done = export is not None and export.state == ExportState.exported
    return ModelOutput(
        **_artifact(report),
        base_model=report.base_model,
        checkpoint=report.checkpoint,
        created_at=parse_time(rfc3339(report.created_at)),
        merged=ModelArtifact(**_artifact(report.merged)) if report.merged is not None else None,
        export_uri=export.uri if done and export is not None else None,
        exported_checkpoints=list(export.checkpoints) or None if done and export is not None else None,
    )


_EXPORT_CONDITIONS = {
    ExportState.uploading: ("False", Reason.Exporting),
    ExportState.exported: ("True", Reason.Exported),
    ExportState.failed: ("False", Reason.ExportFailed),
}


def export_condition(job: ObservedJob, export: ExportReport) -> tuple[str, str, str]:
    """Condition Exported (status, reason, message) from the trainer's report of its upload; a
    failure says where the model is: on the checkpoint claim, under output/."""
    status, reason = _EXPORT_CONDITIONS[ExportState(export.state)]
    message = export.message or str(export.state)
    if export.state == ExportState.failed:
        claim = checkpoint_claim_name(job.name, job.spec)
        message = (
            f"{message}. The training is not affected: the model is on the checkpoint claim {claim} under output/ "
            f"(t1 checkpoints {job.name} lists it)"
        )
    return status, reason, message


def running_time(usage: Mapping[str, Any] | None, *, was_running: bool, now: datetime) -> tuple[float, datetime]:
    """Seconds the job has been running, brought up to ``now``: the time since the last
    measurement counts when the job was Running then."""
    usage = usage or {}
    seconds = float(usage.get("runningSeconds") or 0.0)
    measured = parse_time(usage.get("measuredAt"))
    if was_running and measured is not None and now > measured:
        seconds += (now - measured).total_seconds()
    return seconds, now


def usage(
    *,
    running_seconds: float,
    measured_at: datetime,
    gpus: int,
    hourly_cost: float,
    report: ProgressReport | None,
) -> dict[str, Any]:
    """``status.resourceUsage`` from running time, the job's GPUs and its price an hour (wire form)."""
    gpu_hours = running_seconds / 3600.0 * gpus
    efficiency = None
    if report is not None and report.elapsed_seconds > 0:
        efficiency = round(max(0.0, min(1.0, report.step_seconds / report.elapsed_seconds)), 3)
    return ResourceUsage(
        running_seconds=round(running_seconds, 1),
        measured_at=parse_time(rfc3339(measured_at)),
        gpu_hours=round(gpu_hours, 4),
        cost=round(running_seconds / 3600.0 * hourly_cost, 2),
        efficiency=efficiency,
    ).to_wire()


def _packed(curve: Curve) -> array[float]:
    """A kept curve as a flat array of step, loss, step, loss ... (16 bytes a point)."""
    return array("d", [value for point in curve for value in point])


def _unpacked(packed: array[float]) -> Curve:
    return tuple((int(packed[i]), packed[i + 1]) for i in range(0, len(packed), 2))


@dataclass(frozen=True)
class KeptReport:
    """The newest report of a job as kept between polls: the report without its curves, when the
    operator read it (RFC 3339), and the curves as the status shows them.

    A report is kept for every running job, as long as the job runs: it is kept compact (about
    3 KB, against 14 KB as models and tuples), the report as its JSON and each curve as a flat
    array, and read back when it is used (a few times a poll)."""

    report_json: bytes
    read_at: str
    # The creationTimestamp of the pod that made the report (the API server's clock, not the pod's).
    pod_created: str | None = None
    loss_points: array[float] = field(default_factory=lambda: array("d"))
    eval_points: array[float] = field(default_factory=lambda: array("d"))

    @classmethod
    def of(
        cls,
        report: ProgressReport,
        read_at: str,
        *,
        pod_created: str | None = None,
        loss_curve: Curve | None = None,
        eval_curve: Curve | None = None,
    ) -> KeptReport:
        """Keep ``report``, its curves cut to what the status shows (or the curves given)."""
        bare = report.model_copy(update={"loss_history": [], "eval_history": []})
        return cls(
            report_json=bare.model_dump_json().encode(),
            read_at=read_at,
            pod_created=pod_created,
            loss_points=_packed(curve_of(report.loss_history) if loss_curve is None else loss_curve),
            eval_points=_packed(curve_of(report.eval_history) if eval_curve is None else eval_curve),
        )

    @property
    def report(self) -> ProgressReport:
        """The report, without its curves (a new object at every call)."""
        return ProgressReport.model_validate_json(self.report_json)

    @property
    def loss_curve(self) -> Curve:
        return _unpacked(self.loss_points)

    @property
    def eval_curve(self) -> Curve:
        return _unpacked(self.eval_points)


# Curves stay in the status when a report has none (a termination message carries no curves).
_CURVES = ("lossHistory", "evalLossHistory")


def with_live(
    job: ObservedJob,
    status: Mapping[str, Any],
    kept: KeptReport | None,
    resources: JobResources | None,
    config: OperatorConfig,
    *,
    now: datetime,
    refusal: str | None = None,
    exit_code: int | None = None,
    failure: ReplicaFailure | None = None,
    preemptions: int = 0,
) -> dict[str, Any]:
    """``status`` with the live fields: the newest progress report mirrored, running time,
    GPU-hours and cost brought up to ``now`` (with the job's ``preemptions`` so far), a trainer's
    failure reason on a Failed job (from the rank-0 report with the rank-0 pod's ``exit_code``,
    else from the replica's ``failure``), and condition ReportValid once a report was refused
    (``refusal``: why the last one was). ``resources`` None (an unknown GPU type: the job never
    runs) leaves ``status`` as it is."""
    result = dict(status)
    if resources is None:
        return result
    _report_validity(result, refusal, generation=job.generation, now=now)
    report = kept.report if kept else None
    was_running = job.phase == Phase.Running
    if was_running or result.get("phase") == Phase.Running:
        seconds, measured = running_time(job.status.get("resourceUsage"), was_running=was_running, now=now)
        result["resourceUsage"] = usage(
            running_seconds=seconds,
            measured_at=measured,
            gpus=resources.gpus,
            hourly_cost=resources.hourly_cost(),
            report=report,
        )
    if preemptions:
        result["resourceUsage"] = {**(result.get("resourceUsage") or {}), "preemptions": preemptions}
    budget = budget_condition(job.spec, result, config.currency)
    if budget is not None:
        result["conditions"] = set_condition(
            list(result.get("conditions") or []),
            ConditionType.WithinBudget,
            "True" if budget[0] else "False",
            budget[1],
            budget[2],
            generation=job.generation,
            now=rfc3339(now),
        )
    remaining = None if kept is None else _mirror(result, kept, now=now)
    if report is not None and report.export is not None:
        result["conditions"] = set_condition(
            list(result.get("conditions") or []),
            ConditionType.Exported,
            *export_condition(job, report.export),
            generation=job.generation,
            now=rfc3339(now),
        )
    if remaining is not None:
        spent = float((result.get("resourceUsage") or {}).get("cost") or 0.0)
        result["estimatedCost"] = catalog.estimated_cost(
            resources,
            config,
            max_runtime_seconds=job.spec.max_runtime_seconds,
            spent=spent,
            remaining_seconds=float(remaining),
        )
    if result.get("phase") == Phase.Failed and not _ended_by_operator(result):
        # Exit codes that follow the table name the failure (tensorone.api.exit_codes); others mean nothing to us.
        tabled = follows_table(job.spec)
        explained = _failure(report, exit_code=exit_code, failure=failure if tabled else None, tabled=tabled)
        if explained is not None:
            _set_failure(result, *explained, generation=job.generation, now=now)
    if result.get("phase") == Phase.Completed and report is not None and _stopped_early(report):
        _set_early_stopped(result, report, generation=job.generation, now=now)
    return result


def _stopped_early(report: ProgressReport) -> bool:
    return report.state == TrainerState.completed and report.reason == Reason.EarlyStopped


def _set_early_stopped(
    result: dict[str, Any], report: ProgressReport, *, generation: int | None, now: datetime
) -> None:
    """A job the trainer ended on a plateau: its message, and reason EarlyStopped on Succeeded and Ready."""
    message = f"completed, stopped early: {report.message or 'the evaluation metric stopped improving'}"
    result["message"] = message[:4096]
    conditions = list(result.get("conditions") or [])
    for kind in (ConditionType.Ready, ConditionType.Succeeded):
        conditions = set_condition(
            conditions, kind, "True", Reason.EarlyStopped, message, generation=generation, now=rfc3339(now)
        )
    result["conditions"] = conditions


def _report_validity(result: dict[str, Any], refusal: str | None, *, generation: int | None, now: datetime) -> None:
    """Condition ReportValid: False with why the last report was refused; True again once a later
    one is accepted (absent while no report was ever refused)."""
    conditions = list(result.get("conditions") or [])
    if refusal is not None:
        value, reason, message = "False", Reason.ReportRefused, f"the progress report was refused: {refusal}"
    elif any(c.get("type") == ConditionType.ReportValid for c in conditions):
        value, reason, message = "True", Reason.ReportAccepted, "the last progress report was accepted"
    else:
        return
    result["conditions"] = set_condition(
        conditions, ConditionType.ReportValid, value, reason, message, generation=generation, now=rfc3339(now)
    )


def _mirror(result: dict[str, Any], kept: KeptReport, *, now: datetime) -> int | None:
    """Write the kept report's fields into ``result``; the remaining seconds it estimates, if any."""
    running_seconds = float((result.get("resourceUsage") or {}).get("runningSeconds") or 0.0)
    fields = live_fields(kept.report, now=now, running_seconds=running_seconds)
    fields["lossHistory"] = curve_wire(kept.loss_curve)
    fields["evalLossHistory"] = curve_wire(kept.eval_curve)
    fields["lastReportTime"] = kept.read_at
    fields.setdefault("estimatedCompletion", None)  # no longer running: no estimate
    for name, value in fields.items():
        if value not in (None, []):
            result[name] = value
        elif name not in _CURVES:
            result.pop(name, None)
    remaining: int | None = (fields.get("progress") or {}).get("remainingTime")
    return remaining


def _ended_by_operator(status: Mapping[str, Any]) -> bool:
    """Whether the operator ended the job itself (its reason is kept, not the trainer's)."""
    return any(
        c.get("type") == ConditionType.Failed and c.get("reason") == Reason.RestartLimitExceeded
        for c in status.get("conditions") or []
    )


# The states of a trainer that tells of its failure.
_FAILED = (TrainerState.failed, TrainerState.diverged)


def _told(report: ProgressReport) -> str:
    """The reason a failed or diverged trainer gives for its end."""
    return report.reason or (Reason.Diverged if report.state == TrainerState.diverged else Reason.TrainingFailed)


def _failure(
    report: ProgressReport | None, *, exit_code: int | None, failure: ReplicaFailure | None, tabled: bool
) -> tuple[str, str] | None:
    """The reason and message of a Failed job: the rank-0 report's when it tells of a failure (the
    condition's reason is the one the exit-code table gives the code when ``tabled``, the pods
    follow the table, else the trainer's), else the failed replica's; None when neither says
    anything."""
    # A rank-0 failure that was retried did not end the job: a permanent one elsewhere did.
    retried = exit_code is not None and is_retryable(exit_code)
    if report is not None and report.state in _FAILED and not (retried and failure is not None):
        reason = (failure_reason(exit_code) if tabled and exit_code is not None else None) or _told(report)
        message = f"the trainer ended: {_told(report)}: {report.message or report.state}"
        if exit_code is not None:
            message += f" (exit code {exit_code})"
        return reason, message
    if failure is not None:
        return _replica_failure(failure)
    return None


def _replica_failure(failure: ReplicaFailure) -> tuple[str, str]:
    """The reason and message of a job failed by the pod of ``failure``: the replica, the exit code
    and its meaning, and what the pod's trainer told in its termination message."""
    code, where = failure.exit_code, f"{failure.replica} pod" if failure.replica else "pod"
    message = f"the trainer in {where} {failure.pod} ended with exit code {code} ({meaning(code)})"
    report = failure.report
    if report is not None and report.state in _FAILED:
        message += f": {_told(report)}: {report.message or report.state}"
    return failure_reason(code) or Reason.TrainingFailed, message


def _set_failure(result: dict[str, Any], reason: str, message: str, *, generation: int | None, now: datetime) -> None:
    """A Failed job's message and Failed condition."""
    result["message"] = message[:4096]
    result["conditions"] = set_condition(
        list(result.get("conditions") or []),
        ConditionType.Failed,
        "True",
        reason,
        message[:32768],
        generation=generation,
        now=rfc3339(now),
    )


# Events ---------------------------------------------------------------------------------------

# Completed, Stopped and Failed are posted as phase changes (status.transitions, with the trainer's
# reason in the message); a divergence also gets an Event of its own.
_ENDINGS: dict[TrainerState, Event] = {
    TrainerState.diverged: (EventType.Warning, Reason.Diverged, "training diverged"),
}


def report_events(previous: ProgressReport | None, current: ProgressReport) -> list[Event]:
    """What happened between two reports of a job (``previous`` None: the first one seen)."""
    events: list[Event] = []
    # A process reports no start time until it trains: "starting" then "running" is one process.
    new_process = previous is None or (previous.started_at is not None and previous.started_at != current.started_at)
    # Its start is announced with the first report seen past "starting", whatever that report
    # says: a whole (short) process, or all of it after "starting", can fall between two polls or
    # come before the first one, and its final report still says it ran.
    seen_training = previous is not None and not new_process and previous.state != TrainerState.starting
    if current.state != TrainerState.starting and not seen_training:
        if current.resumed_from:
            events.append((EventType.Normal, Reason.TrainingResumed, f"training resumed from {current.resumed_from}"))
        else:
            events.append(
                (EventType.Normal, Reason.TrainingStarted, f"training started: {current.total_steps} steps planned")
            )
    if previous is not None and not new_process:
        events.extend(_epochs_completed(previous, current))
    known = {c.id for c in previous.checkpoints} if previous is not None else set()
    for checkpoint in current.checkpoints:
        if checkpoint.id not in known and (previous is not None or checkpoint.reason in ("stop", "final")):
            loss = _finite(checkpoint.loss)
            events.append(
                (
                    EventType.Normal,
                    Reason.CheckpointSaved,
                    f"checkpoint {checkpoint.id} saved at step {checkpoint.step} ({checkpoint.reason}"
                    + (f", loss {loss:.4g}" if loss is not None else "")
                    + ")",
                )
            )
    # While it trains, the trainer's message says what it had to do differently (a damaged
    # checkpoint skipped for an older one, an attention fallback): said once, as a warning.
    told_before = previous is not None and not new_process and previous.message == current.message
    if current.state == TrainerState.running and current.message and not told_before:
        events.append((EventType.Warning, Reason.TrainerNotice, current.message))
    ended = previous is None or previous.state != current.state or new_process
    if ended and current.state in _ENDINGS:
        kind, reason, text = _ENDINGS[current.state]
        detail = current.message or current.reason
        events.append((kind, reason, f"{text}: {detail}" if detail else text))
    if ended and _stopped_early(current):
        events.append((EventType.Normal, Reason.EarlyStopped, f"training stopped early: {current.message or ''}"))
    if current.output is not None and (previous is None or previous.output != current.output):
        out = current.output
        events.append(
            (
                EventType.Normal,
                Reason.OutputWritten,
                f"final model ({out.kind}, {human_bytes(out.size_bytes)}, sha256 {out.sha256[:12]}) written to "
                f"{out.path}" + (f" from {out.checkpoint}" if out.checkpoint else ""),
            )
        )
    events.extend(_export_events(previous, current))
    return events


def _export_events(previous: ProgressReport | None, current: ProgressReport) -> list[Event]:
    """Exported or ExportFailed once the trainer's upload ends (not while it uploads)."""
    export = current.export
    if export is None or export.state == ExportState.uploading:
        return []
    if previous is not None and previous.export is not None and previous.export.state == export.state:
        return []
    if export.state == ExportState.exported:
        return [(EventType.Normal, Reason.Exported, export.message or f"exported to {export.uri}")]
    return [
        (
            EventType.Warning,
            Reason.ExportFailed,
            f"{export.message or 'the upload failed'}. The training is not affected: the model is on the checkpoint "
            "claim under output/",
        )
    ]


def _epochs_completed(previous: ProgressReport, current: ProgressReport) -> list[Event]:
    """One Event for the epochs finished since the last report (a fast epoch can fall between two
    polls): never one per epoch, since the epoch numbers come from the trainer, untrusted."""
    first, last = max(previous.epoch, 1), current.epoch - 1
    if last < first:
        return []
    loss = _finite(next((c.loss for c in current.checkpoints if c.reason == "epoch" and c.epoch == last), None))
    epochs = f"epoch {last}" if first == last else f"epochs {first}-{last}"
    text = f"{epochs}/{current.total_epochs} done" + (f", loss {loss:.4g}" if loss is not None else "")
    return [(EventType.Normal, Reason.EpochCompleted, text)]


# Reading reports ------------------------------------------------------------------------------


def report_from_text(text: str | None, *, now: datetime) -> ProgressReport | None:
    """A report from a termination message; None when absent or not a report within the bounds
    (a custom image may write anything to its termination log)."""
    if not text:
        return None
    try:
        return parse_report(text, now=now)
    except InvalidReport:
        return None


def failed_exit_code(pod: Mapping[str, Any]) -> int | None:
    """The exit code of a pod whose ``pytorch`` container ended with a failure; None otherwise."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") not in TRAINER_CONTAINERS:
            continue
        code = ((container.get("state") or {}).get("terminated") or {}).get("exitCode")
        if isinstance(code, int) and code != 0:
            return code
    return None


def _termination_messages(pod: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The non-empty termination messages of a pod's ``pytorch`` container with the state that
    holds each (``state``, the current one, first; then ``lastState``)."""
    messages = []
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") not in TRAINER_CONTAINERS:
            continue
        for state in ("state", "lastState"):
            message = ((container.get(state) or {}).get("terminated") or {}).get("message")
            if message:
                messages.append((state, str(message)))
    return messages


def termination_report(pod: Mapping[str, Any], *, now: datetime) -> ProgressReport | None:
    """The report a pod's ``pytorch`` container left in its termination message (current or last
    state, the newest first), read at ``now``."""
    for _, message in _termination_messages(pod):
        report = report_from_text(message, now=now)
        if report is not None:
            return report
    return None


def termination_refusal(pod: Mapping[str, Any], *, now: datetime) -> str | None:
    """Why the termination message of a pod's ended ``pytorch`` container, read at ``now``, is no
    acceptable report; None when it is one, when it is empty (a pod that wrote nothing is not
    refused), or when the container runs (a message of an earlier run was judged when that run
    ended)."""
    messages = _termination_messages(pod)
    if not messages or messages[0][0] != "state":
        return None
    try:
        parse_report(messages[0][1], now=now)
    except InvalidReport as exc:
        return f"termination message of pod {(pod.get('metadata') or {}).get('name')}: {exc}"
    return None


def from_older_pod(report_pod: str | None, kept_pod: str | None) -> bool:
    """Whether a report of the pod created at ``report_pod`` comes from an earlier pod than the kept
    report's (created at ``kept_pod``). Pods are ordered by the API server's clock, before any
    time a report gives: a pod whose clock ran ahead must not outrank the pods after it. Unknown
    or equal creation times (within a second) leave the order to :func:`newer`."""
    report_time, kept_time = parse_time(report_pod), parse_time(kept_pod)
    return report_time is not None and kept_time is not None and report_time < kept_time


def from_newer_pod(report_pod: str | None, kept_pod: str | None) -> bool:
    """Whether a report comes from a later pod than the kept report's (see :func:`from_older_pod`)."""
    return from_older_pod(kept_pod, report_pod)


def newer(first: ProgressReport | None, second: ProgressReport | None) -> ProgressReport | None:
    """The more recent of two reports of one pod (by process start, then step, then update time)."""
    if first is None or second is None:
        return first or second
    epoch = datetime.min.replace(tzinfo=UTC)

    def key(report: ProgressReport) -> tuple[datetime, int, datetime]:
        return (
            parse_time(report.started_at) or epoch,
            report.step,
            parse_time(report.updated_at) or epoch,
        )

    return second if key(second) >= key(first) else first


def replica_of(labels: Mapping[str, str]) -> str:
    """A training pod's replica type: Master for rank 0, else Worker (a PyTorchJob's pods say
    theirs in a label; a TrainJob's are ranked by their completion index)."""
    label = str(labels.get(REPLICA_TYPE_LABEL, ""))
    if label:
        return next((known for known in (MASTER_REPLICA, WORKER_REPLICA) if known.lower() == label.lower()), label)
    return MASTER_REPLICA if pod_rank(labels) == 0 else WORKER_REPLICA


def _report_port(container: Mapping[str, Any]) -> int | None:
    """Where a trainer container serves its reports: its port named ``report`` (a PyTorchJob's
    pods), else the port its environment gives the trainer (a TrainJob's, whose runtime declares
    no port of ours)."""
    for port in container.get("ports") or []:
        if port.get("name") == REPORT_PORT_NAME:
            return int(port["containerPort"])
    for item in container.get("env") or []:
        if item.get("name") == REPORT_PORT_ENV and str(item.get("value") or "").isdigit():
            return int(item["value"])
    return None


def master_pod_view(pod: Mapping[str, Any], *, now: datetime) -> dict[str, Any] | None:
    """What the operator keeps of a job's rank-0 (Master) pod, seen at ``now``: where to poll it,
    the report it left in its termination message, and why that message was refused, if it was.
    None for other replicas."""
    metadata = pod.get("metadata") or {}
    if replica_of(metadata.get("labels") or {}) != MASTER_REPLICA:
        return None
    port = None
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") in TRAINER_CONTAINERS:
            port = _report_port(container)
    status = pod.get("status") or {}
    running = any(
        "running" in (c.get("state") or {})
        for c in status.get("containerStatuses") or []
        if c.get("name") in TRAINER_CONTAINERS
    )
    return {
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "created": metadata.get("creationTimestamp"),
        "podIP": status.get("podIP"),
        "reportPort": port,
        "running": running and not metadata.get("deletionTimestamp"),
        "report": termination_report(pod, now=now),
        "exitCode": failed_exit_code(pod),
        "refusal": termination_refusal(pod, now=now),
    }


@dataclass(frozen=True)
class ReplicaFailure:
    """A job's pod whose trainer ended with one of its permanent exit codes
    (tensorone.api.exit_codes): the replica type, the pod, the code, and the report its termination
    message left (None when it left none that is acceptable)."""

    replica: str
    pod: str
    exit_code: int
    report: ProgressReport | None


def replica_failure(pod: Mapping[str, Any], *, now: datetime) -> ReplicaFailure | None:
    """The permanent failure of a job's pod (any replica), its termination message read at ``now``;
    None for a pod that runs, succeeded, failed with a code that is retried or not in the table, or
    is being deleted (a pod killed on purpose is no failure)."""
    metadata = pod.get("metadata") or {}
    code = failed_exit_code(pod)
    if code is None or failure_reason(code) is None or metadata.get("deletionTimestamp"):
        return None
    replica = replica_of(metadata.get("labels") or {})
    # The message of the run that failed; a last state is an earlier run's.
    messages = _termination_messages(pod)
    report = report_from_text(messages[0][1], now=now) if messages and messages[0][0] == "state" else None
    return ReplicaFailure(replica=replica, pod=str(metadata.get("name")), exit_code=code, report=report)


def report_baseline(status: Mapping[str, Any], current: ProgressReport) -> ProgressReport | None:
    """What the stored status says had been reported, as a report to diff ``current`` against
    (after an operator restart), so only what is new since then becomes an Event."""
    if not status.get("lastReportTime"):
        return None
    progress = status.get("progress") or {}
    checkpoints = [
        CheckpointReport(
            id=c["id"],
            epoch=c.get("epoch") or 0,
            step=c.get("step") or 0,
            created_at=parse_time(c.get("createdAt")) or datetime.min.replace(tzinfo=UTC),
            size_bytes=0,
            reason=c.get("reason") or "step",
        )
        for c in status.get("checkpoints") or []
    ]
    return current.model_copy(
        update={
            "epoch": progress.get("currentEpoch") or 0,
            "step": progress.get("currentStep") or 0,
            "checkpoints": checkpoints,
            "resumed_from": status.get("resumedFrom"),
        }
    )
