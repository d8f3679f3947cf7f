"""The status Training Operator v1.9 writes on a PyTorchJob, defined once for both ways the tests
play it: ``LocalNode`` moves it as the pods it runs start and exit, and
``tests.operator.kit.play_training_operator`` moves it by hand.

The status (``kubeflow.org/v1`` JobStatus) keeps one condition per type; a condition's
``lastTransitionTime`` moves only when its status changes. Each move below sets the conditions of
one state, turns every other True condition False (Created stays), and stamps ``startTime`` at the
first Running and ``completionTime`` at Succeeded or Failed; ``move_child`` writes the move with
the replica counts its caller saw (``replicaStatuses``: active, succeeded and failed pods per
replica type):

- Created: the job is known (every move makes sure of it);
- Running: the pods run; Suspended, if it was True, turns False with reason PyTorchJobResumed;
- Restarting: a pod failed and the replicas are being recreated; the Running condition is removed
  (v1.9 keeps one of Running and Restarting: setting either drops the other);
- Suspended: ``runPolicy.suspend`` is true and the pods are gone; Running turns False;
- Succeeded, Failed: the job is over (Failed with the reason that ended it, such as
  ``BackoffLimitExceeded`` or ``DeadlineExceeded``); Running turns False with the same reason.

What happens when a replica's pod fails is decided by ``after_pod_failure``, as v1.9 decides it
from the replica's ``restartPolicy``, the container's exit code and ``runPolicy.backoffLimit``.

"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tests.factories import PYTORCHJOB, timestamp
from tests.kube.server import ApiClient


class JobConditionType(StrEnum):
    """The condition types of a PyTorchJob."""

    created = "Created"
    running = "Running"
    restarting = "Restarting"
    succeeded = "Succeeded"
    failed = "Failed"
    suspended = "Suspended"


class _WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class JobCondition(_WireModel):
    """One condition of a PyTorchJob (JobCondition)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_update_time: str | None = None
    last_transition_time: str | None = None


class ReplicaStatus(_WireModel):
    """The pods of one replica type, by state (ReplicaStatus)."""

    active: int = 0
    succeeded: int = 0
    failed: int = 0


class PyTorchJobStatus(_WireModel):
    """A PyTorchJob's status, with the moves the Training Operator makes on it."""

    conditions: list[JobCondition] = Field(default_factory=list)
    replica_statuses: dict[str, ReplicaStatus] | None = None
    start_time: str | None = None
    completion_time: str | None = None

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> PyTorchJobStatus:
        """The status of a PyTorchJob as stored."""
        return cls.model_validate(job.get("status") or {})

    def to_wire(self) -> dict[str, Any]:
        """The status as written to the API: camelCase keys, no unset fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def condition(self, kind: str) -> JobCondition | None:
        """The condition of that type, if the job has one."""
        return next((c for c in self.conditions if c.type == kind), None)

    def is_true(self, kind: str) -> bool:
        """Whether the condition of that type is True."""
        found = self.condition(kind)
        return found is not None and found.status == "True"

    def set_condition(self, kind: str, true: bool, reason: str, message: str, now: str) -> None:
        """Set one condition; its lastTransitionTime moves only when its status changes."""
        status: Literal["True", "False"] = "True" if true else "False"
        previous = self.condition(kind)
        moved = previous is None or previous.status != status
        transition = now if moved or previous is None else previous.last_transition_time
        self.conditions = [c for c in self.conditions if c.type != kind]
        self.conditions.append(
            JobCondition(
                type=kind,
                status=status,
                reason=reason,
                message=message,
                last_update_time=now,
                last_transition_time=transition,
            )
        )

    def drop(self, kind: str) -> None:
        """Remove condition ``kind`` (what v1.9 does to Running when it sets Restarting, and back)."""
        self.conditions = [c for c in self.conditions if c.type != kind]

    def _settle(self, true: set[str], now: str) -> None:
        """Every True condition outside ``true`` (and Created) turned False, keeping its reason."""
        for found in list(self.conditions):
            if found.status == "True" and found.type not in true | {JobConditionType.created}:
                self.set_condition(found.type, False, found.reason, found.message, now)

    # The moves ---------------------------------------------------------------------------------

    def created(self, name: str, now: str) -> None:
        """Created True, once."""
        if self.condition(JobConditionType.created) is None:
            self.set_condition(
                JobConditionType.created, True, "PyTorchJobCreated", f"PyTorchJob {name} is created.", now
            )

    def running(self, name: str, now: str, *, reason: str | None = None, message: str | None = None) -> None:
        """The pods run: Running True (Suspended False, resumed, if it was True)."""
        if self.is_true(JobConditionType.suspended):
            resumed = f"PyTorchJob {name} is resumed."
            self.set_condition(JobConditionType.suspended, False, "PyTorchJobResumed", resumed, now)
        self.set_condition(
            JobConditionType.running,
            True,
            reason or "PyTorchJobRunning",
            message or f"PyTorchJob {name} is running.",
            now,
        )
        self.drop(JobConditionType.restarting)
        self.start_time = self.start_time or now
        self._settle({JobConditionType.running}, now)

    def restarting(self, name: str, now: str, *, reason: str | None = None, message: str | None = None) -> None:
        """A pod failed and the replicas are recreated: Restarting True in place of Running."""
        self.start_time = self.start_time or now
        self.drop(JobConditionType.running)
        self.set_condition(
            JobConditionType.restarting,
            True,
            reason or "PyTorchJobRestarting",
            message or f"PyTorchJob {name} is restarting.",
            now,
        )
        self._settle({JobConditionType.restarting}, now)

    def suspended(self, name: str, now: str, *, reason: str | None = None, message: str | None = None) -> None:
        """The pods are gone under ``runPolicy.suspend``: Suspended True, Running False."""
        reason, message = reason or "PyTorchJobSuspended", message or f"PyTorchJob {name} is suspended."
        if self.condition(JobConditionType.running) is not None:
            self.set_condition(JobConditionType.running, False, reason, message, now)
        self.set_condition(JobConditionType.suspended, True, reason, message, now)
        self._settle({JobConditionType.suspended}, now)

    def succeeded(self, name: str, now: str, *, reason: str | None = None, message: str | None = None) -> None:
        """The master replica exited 0: Succeeded True, Running False."""
        self._finish(
            JobConditionType.succeeded,
            reason or "PyTorchJobSucceeded",
            message or f"PyTorchJob {name} is successfully completed.",
            now,
        )

    def failed(self, name: str, now: str, *, reason: str | None = None, message: str | None = None) -> None:
        """A replica failed beyond ``backoffLimit``, or the job ran past its deadline: Failed True."""
        self._finish(
            JobConditionType.failed,
            reason or "PyTorchJobFailed",
            message or f"PyTorchJob {name} is failed.",
            now,
        )

    def _finish(self, kind: JobConditionType, reason: str, message: str, now: str) -> None:
        if self.condition(JobConditionType.running) is not None:
            self.set_condition(JobConditionType.running, False, reason, message, now)
        self.set_condition(kind, True, reason, message, now)
        self.completion_time = now
        self._settle({kind}, now)


# The move into each state: called with the status, the job's name, the time, and the optional
# reason and message.
MOVES: dict[str, Callable[..., None]] = {
    JobConditionType.running: PyTorchJobStatus.running,
    JobConditionType.restarting: PyTorchJobStatus.restarting,
    JobConditionType.suspended: PyTorchJobStatus.suspended,
    JobConditionType.succeeded: PyTorchJobStatus.succeeded,
    JobConditionType.failed: PyTorchJobStatus.failed,
}


def move_child(
    api: ApiClient,
    name: str,
    namespace: str,
    *states: str,
    replicas: Mapping[str, ReplicaStatus] | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any] | None:
    """Move the PyTorchJob ``name`` into ``states`` (condition types, in order; none: just
    Created) and write its status subresource, as the Training Operator does. ``replicas`` replaces
    the replica counts; ``reason`` and ``message`` replace those of the states' conditions.
    Returns the written PyTorchJob, or None when it does not exist (any more)."""
    current = api.find(PYTORCHJOB, "PyTorchJob", name, namespace)
    if current is None:
        return None
    status = PyTorchJobStatus.of(current)
    now = timestamp()
    status.created(name, now)
    for state in states:
        MOVES[state](status, name, now, reason=reason, message=message)
    if replicas is not None:
        status.replica_statuses = dict(replicas)
    return api.patch_status(PYTORCHJOB, "PyTorchJob", name, status.to_wire(), namespace)


# v1.9's IsRetryableExitCode (pkg/util/train/train_util.go): under restartPolicy ExitCode a pod
# whose container exited with a code from here up is restarted; 1-127 fail the job.
RETRYABLE_EXIT_CODES_FROM = 128


@dataclass(frozen=True)
class PodFailure:
    """What the Training Operator does after a replica's pod failed: restart it, or fail the job
    with ``reason`` and ``message`` (the condition it writes)."""

    restart: bool
    reason: str
    message: str


def after_pod_failure(
    name: str,
    replica_type: str,
    restart_policy: str,
    exit_code: int,
    *,
    restarts: int,
    backoff_limit: int | None,
) -> PodFailure:
    """v1.9's verdict on a failed pod of replica ``replica_type`` (``Master``, ``Worker``) of the
    PyTorchJob ``name`` that has been restarted ``restarts`` times.

    - ``ExitCode``: a code of 128 and up is restarted (the pod deleted and created again), however
      often: v1.9 counts toward ``backoffLimit`` only the container restarts of running pods, and a
      recreated pod has none (kubeflow/training-operator#2045); a code of 1-127 fails the job at
      once (common/pod.go ReconcilePods).
    - ``OnFailure``, ``Always``: restarted until ``backoffLimit`` restarts were made (none: no limit).
    - ``Never``: the job fails.
    """
    if restart_policy == "ExitCode":
        if exit_code >= RETRYABLE_EXIT_CODES_FROM:
            return PodFailure(True, "PyTorchJobRestarting", _restarting(name, replica_type))
        return PodFailure(
            False, "PyTorchJobFailed", f'job "{name}" is failing because "{replica_type}" replica(s) failed.'
        )
    if restart_policy in ("OnFailure", "Always"):
        if backoff_limit is None or restarts < backoff_limit:
            return PodFailure(True, "PyTorchJobRestarting", _restarting(name, replica_type))
        return PodFailure(
            False, "PyTorchJobFailed", f"Job {name} has failed because it has reached the specified backoff limit"
        )
    return PodFailure(
        False, "PyTorchJobFailed", f"PyTorchJob {name} is failed because 1 {replica_type} replica(s) failed."
    )


def _restarting(name: str, replica_type: str) -> str:
    return f"PyTorchJob {name} is restarting because 1 {replica_type} replica(s) failed."
