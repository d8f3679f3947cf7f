"""Pod failures of each job that the Training Operator restarts, counted against spec.maxRestarts.

Our trainer's replicas, and those of a custom image that follows its exit-code table, run under
``restartPolicy: ExitCode`` (builders.restart_policy): the Training Operator restarts a pod whose
container exited 128-255 by deleting it and creating it again, as often as it fails, because it
counts toward ``backoffLimit`` only the container restarts of running pods
(kubeflow/training-operator#2045). So the operator counts the failed pods it sees on the pod
watch, each once (by uid), and the reconciler ends the job when there are more than
``spec.maxRestarts``. The count is kept in ``status.restarts``, so a restarted operator goes on
from it (a failed pod still present when the operator restarts may then be counted twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorone.api.exit_codes import is_retryable
from tensorone_operator.live_status import failed_exit_code

JobKey = tuple[str, str]


class Restarts:
    """The restarted pod failures of each job: those stored in its status, plus those seen since."""

    def __init__(self) -> None:
        self._seen: dict[JobKey, set[str]] = {}
        self._stored: dict[JobKey, int] = {}

    def forget(self, key: JobKey) -> None:
        """Drop what is kept about a deleted job."""
        self._seen.pop(key, None)
        self._stored.pop(key, None)

    def pod_changed(self, key: JobKey, pod: Mapping[str, Any]) -> bool:
        """Count a pod of the job that failed with an exit code the Training Operator retries;
        whether it is a new one."""
        metadata = pod.get("metadata") or {}
        code = failed_exit_code(pod)
        uid = str(metadata.get("uid") or "")
        # A pod deleted on purpose (a stop, a cancel, the end of the job) and killed on its way is
        # no failure: the Training Operator deletes a failed pod only after it has ended.
        if code is None or not is_retryable(code) or not uid or metadata.get("deletionTimestamp"):
            return False
        seen = self._seen.setdefault(key, set())
        if uid in seen:
            return False
        seen.add(uid)
        return True

    def count(self, key: JobKey, status: Mapping[str, Any]) -> int:
        """The job's restarts so far: what its status held when the operator first looked (after an
        operator restart), plus the failed pods counted since."""
        stored = self._stored.setdefault(key, int(status.get("restarts") or 0))
        return stored + len(self._seen.get(key, ()))
