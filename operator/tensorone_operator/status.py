"""Pure status logic: the TrainingJob, its child PyTorchJob and what the checks found -> status.

``status_from`` computes the whole desired ``status`` (the reconciler patches it only when it
differs from what is stored). The rank-0 trainer's progress report is merged into the same dict
afterwards (``live_status.with_live``): progress, metrics and checkpoints are not touched here and
are carried over.

Phases, precisely (first rule that applies):

- ``Cancelled``: ``spec.cancel`` is true. Terminal.
- ``Completed`` / ``Failed``: the status already says so (terminal phases never change), or the
  child has condition Succeeded / Failed True (Failed carries the child's reason, for example
  ``BackoffLimitExceeded`` or ``DeadlineExceeded``).
- ``Pending``: a check failed (condition DatasetReady, ResourcesAvailable or ConfigurationValid
  False with the error code as reason), or the child does not exist yet, or it exists but is
  neither suspended nor running (pods being scheduled, images pulled).
- ``Stopping`` / ``Stopped``: ``spec.suspend`` is true; Stopped once the child reports Suspended
  True and no replica is active any more, Stopping until then.
- ``Queued``: ``spec.suspend`` is false but the child is suspended (Suspended True) by its own
  ``runPolicy.suspend``: a queue such as Kueue holds it until it is admitted (the message names
  Kueue's LocalQueue and the position when Kueue publishes it). A job whose Workload Kueue evicted
  by preemption is ``Stopping`` (reason Preempted) while its pods go, then ``Queued`` (reason
  Preempted) until Kueue admits it again. A child the operator
  has just unsuspended (a resume) that still reports Suspended is ``Pending`` (reason Resuming).
- ``Running``: the child has Running True, or Restarting True (a pod failed or was preempted and is
  being recreated; the Training Operator then drops its Running condition until the pods run
  again). The job's Running condition stays True through a restart and its Restarting condition
  shows the restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tensorone.api.v1alpha1 import (
    CHECK_CONDITIONS,
    CHILD_CONDITIONS,
    TERMINAL_PHASES,
    ConditionType,
    Phase,
    Reason,
    TrainingJobSpec,
)
from tensorone_operator.events import Event, EventType
from tensorone_operator.kueue import QueueState
from tensorone_operator.observed import ObservedJob


@dataclass(frozen=True)
class Problem:
    """A failed check: which condition it sets, the error code (its reason) and the message.

    ``waiting`` problems resolve by themselves (a Dataset applied later, a GPU node joining) and
    and hold the job in Reconciling; the others need a change (of the job, the operator's
    configuration, or the object in the way) and stall it. Both are checked again on every tick.
    """

    condition: ConditionType
    code: Reason
    message: str
    waiting: bool


@dataclass(frozen=True)
class Ended:
    """Why the operator ended a job Failed (not its child): the reason and the message."""

    reason: Reason
    message: str


def child_condition(child: Mapping[str, Any] | None, condition_type: str) -> dict[str, Any] | None:
    """The child's condition of that type (the Training Operator keeps one per type)."""
    for condition in ((child or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type:
            return dict(condition)
    return None


def _is_true(child: Mapping[str, Any] | None, condition_type: str) -> bool:
    condition = child_condition(child, condition_type)
    return bool(condition and condition.get("status") == "True")


def active_replicas(child: Mapping[str, Any] | None) -> int:
    """Pods of the child that are still running, from its replicaStatuses."""
    statuses = ((child or {}).get("status") or {}).get("replicaStatuses") or {}
    return sum(int((replica or {}).get("active") or 0) for replica in statuses.values())


def suspend_asked(child: Mapping[str, Any] | None) -> bool:
    """Whether the child's own spec asks it to be suspended (runPolicy.suspend)."""
    return bool((((child or {}).get("spec") or {}).get("runPolicy") or {}).get("suspend"))


def resumed(job: ObservedJob, *, hold: bool) -> bool:
    """Whether the spec resumes a job it stopped: spec.suspend is false again (and the operator
    holds no budget) while the status still says Stopping or Stopped for that stop, not for a
    spec.maxCost hold (whose end goes on with the run it paused)."""
    if job.spec.suspend or hold or job.phase not in (Phase.Stopping, Phase.Stopped):
        return False
    ready = next((c for c in job.status.get("conditions") or [] if c.get("type") == ConditionType.Ready), None)
    return ready is not None and ready.get("reason") in (Reason.Stopping, Reason.Stopped)


def condition_is(status: Mapping[str, Any], condition_type: str, value: str) -> bool:
    """Whether a TrainingJob status has that condition with that status (True/False/Unknown)."""
    return any(c.get("type") == condition_type and c.get("status") == value for c in status.get("conditions") or [])


def set_condition(
    conditions: list[dict[str, Any]],
    condition_type: str,
    status: str,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """The list with that condition set; lastTransitionTime only moves when the status changes."""
    result = [dict(c) for c in conditions if c.get("type") != condition_type]
    previous = next((c for c in conditions if c.get("type") == condition_type), None)
    transition = previous["lastTransitionTime"] if previous and previous.get("status") == status else now
    condition = {
        "type": condition_type,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": transition,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    result.append(condition)
    order = {name: index for index, name in enumerate(CONDITION_ORDER)}
    return sorted(result, key=lambda c: order.get(c["type"], len(order)))


CONDITION_ORDER = (
    ConditionType.Ready,
    ConditionType.Reconciling,
    ConditionType.Stalled,
    *CHECK_CONDITIONS,
    *CHILD_CONDITIONS,
)


def _phase_from_child(
    spec: TrainingJobSpec, child: Mapping[str, Any], *, over_budget: bool = False, queue: QueueState | None = None
) -> tuple[Phase, str, str]:
    """(phase, reason, message) while the child exists and the job is not terminal; ``over_budget``:
    the operator holds the job for having spent its spec.maxCost; ``queue``: Kueue's word on a job
    that names a queue, while Kueue holds its child."""
    if _is_true(child, ConditionType.Succeeded):
        condition = child_condition(child, ConditionType.Succeeded) or {}
        return Phase.Completed, Reason.Succeeded, condition.get("message") or "training completed"
    if _is_true(child, ConditionType.Failed):
        condition = child_condition(child, ConditionType.Failed) or {}
        return Phase.Failed, condition.get("reason") or Reason.Failed, condition.get("message") or "training failed"
    suspended = _is_true(child, ConditionType.Suspended)
    if spec.suspend:
        if suspended and active_replicas(child) == 0:
            return (
                Phase.Stopped,
                Reason.Stopped,
                "stopped: the trainer saved a checkpoint; set spec.suspend=false to resume",
            )
        return Phase.Stopping, Reason.Stopping, "stopping: the pods got SIGTERM and save a checkpoint"
    if over_budget:
        if suspended and active_replicas(child) == 0:
            return (
                Phase.Stopped,
                Reason.BudgetExceeded,
                "stopped: spec.maxCost is spent and the trainer saved a checkpoint; raise spec.maxCost to resume",
            )
        return (
            Phase.Stopping,
            Reason.BudgetExceeded,
            "stopping: spec.maxCost is spent; the pods got SIGTERM and save a checkpoint",
        )
    # The operator unsuspends the child on resume; a child still suspended by its own spec is
    # held by a queue (Kueue suspends the jobs it has not admitted, and those it preempts).
    held = _held_by_queue(child, queue, suspended=suspended)
    if held is not None:
        return held
    if suspended:
        return Phase.Pending, Reason.Resuming, "resuming: the PyTorchJob is unsuspended; its pods are starting"
    if _is_true(child, ConditionType.Running):
        return Phase.Running, Reason.Running, "training is running"
    if _is_true(child, ConditionType.Restarting):
        return Phase.Running, Reason.Restarting, "restarting: a failed or preempted pod is being recreated"
    return Phase.Pending, Reason.Starting, "the PyTorchJob is created; its pods are being scheduled"


def _held_by_queue(
    child: Mapping[str, Any], queue: QueueState | None, *, suspended: bool
) -> tuple[Phase, str, str] | None:
    """(phase, reason, message) of a job whose child a queue keeps suspended (None for any other
    child, the operator's stop ruled out before): Queued, with Kueue's
    queue and position when the job names one. A child Kueue suspended to give its quota to a
    workload of higher priority is a stop with checkpoint (Stopping while its pods go), then Queued
    until Kueue admits it again, when its new pods resume from the latest checkpoint (no failure,
    no restart)."""
    preempted = queue is not None and queue.preemption is not None
    if not (suspend_asked(child) and (suspended or preempted)):
        return None
    if queue is None:
        kind = child.get("kind") or "child"
        return Phase.Queued, Reason.Queued, f"queued: the {kind} is suspended until a queue admits it"
    if queue.preemption is None:
        return Phase.Queued, Reason.Queued, f"queued in {queue.describe()}: suspended until Kueue admits it"
    cause = f"preempted by Kueue: {queue.preemption}"
    if not (suspended and active_replicas(child) == 0):
        return Phase.Stopping, Reason.Preempted, f"{cause}; the pods got SIGTERM and save a checkpoint"
    return (
        Phase.Queued,
        Reason.Preempted,
        f"{cause}; the trainer saved a checkpoint and resumes from it when Kueue admits the job again; "
        f"queued in {queue.describe()}",
    )


def status_from(
    job: ObservedJob,
    child: Mapping[str, Any] | None,
    *,
    now: str,
    problem: Problem | None = None,
    ended: Ended | None = None,
    extra: Mapping[str, Any] | None = None,
    over_budget: bool = False,
    queue: QueueState | None = None,
) -> dict[str, Any]:
    """The TrainingJob's desired status from the child and the checks (pure). ``ended``: the
    operator itself ends the job Failed (its child is being deleted); ``over_budget``: it holds
    the job for having spent its spec.maxCost; ``queue``: Kueue's word on a job that names a queue.

    ``extra`` holds fields the reconciler computed once (childName, resourceAllocation,
    estimatedCost); fields this function does not own (progress, metrics, checkpoints) are kept
    from the current status.
    """
    current: dict[str, Any] = dict(job.status)
    generation = job.generation
    status: dict[str, Any] = {**current, **(extra or {})}
    status["observedGeneration"] = generation
    conditions = Conditions(list(current.get("conditions") or []), generation=generation, now=now)
    phase = current.get("phase")
    if job.spec.cancel:
        phase, message = _cancelled(conditions, child, current)
    elif phase in TERMINAL_PHASES:
        return {**status, "conditions": conditions.items}
    elif ended is not None:
        phase, message = _ended(conditions, ended)
    elif problem is not None:
        phase, message = _held(conditions, problem)
    else:
        phase, message = _progressing(conditions, job.spec, child, over_budget=over_budget, queue=queue)
        if phase == Phase.Running and not status.get("startedAt"):
            status["startedAt"] = ((child or {}).get("status") or {}).get("startTime") or now
    status["phase"] = phase
    status["message"] = message
    if phase in TERMINAL_PHASES and not status.get("completedAt"):
        status["completedAt"] = ((child or {}).get("status") or {}).get("completionTime") or now
    status["conditions"] = conditions.items
    return status


class Conditions:
    """A status's conditions being set, with the generation and time they are set at."""

    def __init__(self, items: list[dict[str, Any]], *, generation: int | None, now: str) -> None:
        self.items = items
        self.generation = generation
        self.now = now

    def set(self, kind: str, value: bool, reason: str, message: str) -> None:
        """Set condition ``kind`` True or False."""
        self.items = set_condition(
            self.items,
            kind,
            "True" if value else "False",
            reason,
            message,
            generation=self.generation,
            now=self.now,
        )


def _cancelled(
    conditions: Conditions, child: Mapping[str, Any] | None, current: Mapping[str, Any]
) -> tuple[Phase, str]:
    """Conditions of a cancelled job; its phase and message."""
    phase, reason, message = (
        Phase.Cancelled,
        Reason.Cancelled,
        "cancelled: the pods are deleted, checkpoints are kept",
    )
    conditions.set(ConditionType.Ready, False, reason, message)
    conditions.set(ConditionType.Reconciling, False, reason, message)
    if child_condition(child, ConditionType.Running) or _is_true({"status": current}, ConditionType.Running):
        conditions.set(ConditionType.Running, False, reason, message)
    return phase, message


def _ended(conditions: Conditions, ended: Ended) -> tuple[Phase, str]:
    """Conditions of a job the operator ended Failed; its phase and message."""
    conditions.set(ConditionType.Failed, True, ended.reason, ended.message)
    for kind in (ConditionType.Ready, ConditionType.Reconciling):
        conditions.set(kind, False, ended.reason, ended.message)
    for kind in (ConditionType.Running, ConditionType.Restarting):
        if any(c.get("type") == kind for c in conditions.items):
            conditions.set(kind, False, ended.reason, ended.message)
    return Phase.Failed, ended.message


def _held(conditions: Conditions, problem: Problem) -> tuple[Phase, str]:
    """Conditions of a job held by a failed check; its phase and message. The GPU nodes are
    checked last: a job waiting on them passed the other checks (a stale DatasetReady False goes)."""
    if problem.condition == ConditionType.ResourcesAvailable:
        for kind in (ConditionType.ConfigurationValid, ConditionType.DatasetReady):
            conditions.set(kind, True, Reason.Checked, "")
    conditions.set(problem.condition, False, problem.code, problem.message)
    conditions.set(ConditionType.Ready, False, problem.code, problem.message)
    conditions.set(ConditionType.Reconciling, problem.waiting, problem.code, problem.message)
    conditions.set(ConditionType.Stalled, not problem.waiting, problem.code, problem.message)
    return Phase.Pending, problem.message


def _progressing(
    conditions: Conditions,
    spec: TrainingJobSpec,
    child: Mapping[str, Any] | None,
    *,
    over_budget: bool,
    queue: QueueState | None = None,
) -> tuple[Phase, str]:
    """Conditions of a job whose checks passed, from its child; its phase and message."""
    for kind in CHECK_CONDITIONS:
        conditions.set(kind, True, Reason.Checked, "")
    conditions.set(ConditionType.Stalled, False, Reason.Reconciled, "")
    reason: str
    if child is None:
        phase, reason, message = Phase.Pending, Reason.Creating, "creating the PyTorchJob"
    else:
        phase, reason, message = _phase_from_child(spec, child, over_budget=over_budget, queue=queue)
        _mirror_child_conditions(conditions, child)
    conditions.set(ConditionType.Ready, phase in {Phase.Running, Phase.Completed}, reason, message)
    settled = phase in {*TERMINAL_PHASES, Phase.Running, Phase.Stopped, Phase.Queued}
    conditions.set(ConditionType.Reconciling, not settled, reason, message)
    return phase, message


def _mirror_child_conditions(conditions: Conditions, child: Mapping[str, Any]) -> None:
    """The child's conditions on the job. The Training Operator keeps one of Running and
    Restarting (setting either drops the other): the job keeps both, Running True through a restart
    and Restarting False once the pods run again."""
    for kind in CHILD_CONDITIONS:
        mirrored = child_condition(child, kind)
        if mirrored is not None:
            conditions.set(
                kind, mirrored.get("status") == "True", mirrored.get("reason") or kind, mirrored.get("message") or ""
            )
    running, restarting = (
        child_condition(child, ConditionType.Running),
        child_condition(child, ConditionType.Restarting),
    )
    if restarting is not None and running is None and restarting.get("status") == "True":
        conditions.set(ConditionType.Running, True, Reason.Restarting, restarting.get("message") or "")
    was_restarting = any(c.get("type") == ConditionType.Restarting for c in conditions.items)
    if running is not None and restarting is None and running.get("status") == "True" and was_restarting:
        conditions.set(ConditionType.Restarting, False, Reason.Running, running.get("message") or "")


def dataset_status(dataset: Mapping[str, Any], *, claim_exists: bool | None, now: str) -> dict[str, Any]:
    """A Dataset's status: Ready when its source is usable as far as the operator can tell.

    A ``pvc`` source is Ready when the claim exists (``claim_exists``); ``inline`` records are
    counted; ``uri`` and ``huggingFace`` sources are fetched by the trainer, so they are Ready as
    declared (reason Declared) and a bad one fails the job with the trainer's DATA_ERROR.
    """
    spec = dataset.get("spec") or {}
    source = spec.get("source") or {}
    current: dict[str, Any] = dict(dataset.get("status") or {})
    generation = (dataset.get("metadata") or {}).get("generation")
    status: dict[str, Any] = {**current, "observedGeneration": generation}
    if "pvc" in source:
        claim = source["pvc"].get("claimName")
        ready, reason = bool(claim_exists), Reason.ClaimBound if claim_exists else Reason.CLAIM_NOT_FOUND
        message = (
            f"claim {claim!r} holds the data"
            if claim_exists
            else f"spec.source.pvc.claimName: claim {claim!r} does not exist"
        )
    elif "inline" in source:
        records = len((source["inline"] or {}).get("records") or [])
        ready, reason, message = True, Reason.Inline, f"{records} records in the manifest"
        status["records"] = records
    else:
        ready, reason, message = True, Reason.Declared, "fetched by the trainer when a job starts"
    status["conditions"] = set_condition(
        list(current.get("conditions") or []),
        ConditionType.Ready,
        "True" if ready else "False",
        reason,
        message,
        generation=generation,
        now=now,
    )
    return status


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == ConditionType.Ready), None)
    return None if ready is None else ready.get("reason")


def transitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """(event type, reason, message) for what changed between two statuses: phase changes and
    conditions that turned False with an error code. These become Kubernetes Events."""
    events: list[Event] = []
    old_conditions = {c["type"]: c for c in old.get("conditions") or []}
    for condition in new.get("conditions") or []:
        if condition["type"] not in CHECK_CONDITIONS:
            continue
        before = old_conditions.get(condition["type"])
        changed = before is None or (before.get("status"), before.get("reason")) != (
            condition["status"],
            condition["reason"],
        )
        if changed and condition["status"] == "False":
            events.append((EventType.Warning, condition["reason"], condition["message"]))
    # Pending is where every job starts: only moves out of it (and back after a check) are news.
    if old.get("phase") != new.get("phase") and new.get("phase") not in {None, Phase.Pending}:
        kind = EventType.Warning if new["phase"] == Phase.Failed else EventType.Normal
        # A preemption is told once, under its own reason, as the job starts to stop for it.
        preempted = _ready_reason(new) == Reason.Preempted and _ready_reason(old) != Reason.Preempted
        events.append((kind, Reason.Preempted if preempted else str(new["phase"]), str(new.get("message") or "")))
    elif old.get("phase") == new.get("phase") == Phase.Failed:
        # The trainer's explanation (its termination message, its exit code) often arrives after the
        # PyTorchJob said Failed: it gets an Event of its own, under its reason.
        before = old_conditions.get(ConditionType.Failed) or {}
        after = next((c for c in new.get("conditions") or [] if c["type"] == ConditionType.Failed), None)
        if after is not None and before.get("reason") != after.get("reason"):
            events.append((EventType.Warning, str(after["reason"]), str(after.get("message") or "")))
    return events
