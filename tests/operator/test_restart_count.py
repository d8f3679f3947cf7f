"""Which pods count as restarts (pure: pods as the watch delivers them)."""

from __future__ import annotations

from typing import Any

from tensorone_operator.restarts import Restarts

KEY = ("default", "llama")


def ended(uid: str, code: int, *, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "llama-master-0", "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    terminated = {"exitCode": code}
    return {
        "metadata": metadata,
        "status": {"containerStatuses": [{"name": "pytorch", "state": {"terminated": terminated}}]},
    }


def test_each_retryable_failure_counts_once_and_nothing_else_does() -> None:
    restarts = Restarts()
    assert restarts.pod_changed(KEY, ended("a", 138))
    assert not restarts.pod_changed(KEY, ended("a", 138))  # the same pod seen again
    assert not restarts.pod_changed(KEY, ended("b", 5))  # permanent: the job fails, no restart
    assert not restarts.pod_changed(KEY, ended("c", 0))
    assert not restarts.pod_changed(KEY, ended("d", 137, deleting=True))  # killed while being stopped
    assert restarts.pod_changed(KEY, ended("e", 137))
    assert restarts.count(KEY, {}) == 2


def test_a_restarted_operator_goes_on_from_the_status() -> None:
    restarts = Restarts()
    assert restarts.count(KEY, {"restarts": 2}) == 2
    restarts.pod_changed(KEY, ended("f", 138))
    assert restarts.count(KEY, {"restarts": 2}) == 3
