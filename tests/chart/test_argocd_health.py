"""The Argo CD health check of TrainingJob, run in a Lua 5.1 runtime (Argo CD's gopher-lua speaks
Lua 5.1) on sample objects that are valid against the generated CRD."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from tensorone.api.admission import validate
from tensorone.api.crd import CRD_DIR
from tensorone.api.v1alpha1 import ConditionType, Phase, Reason
from tests.chart.conftest import REPO_ROOT

ARGOCD = REPO_ROOT / "argocd"
CHECK_DIR = ARGOCD / "resource_customizations" / "training.tensorone.ai" / "TrainingJob"
HEALTH_LUA = CHECK_DIR / "health.lua"
CASES = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())["tests"]
ARGO_HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def _to_lua(runtime: Any, value: Any) -> Any:
    """Python data -> Lua tables the way Argo CD hands an object to a script (lists 1-indexed)."""
    if isinstance(value, dict):
        return runtime.table_from({key: _to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, item) for item in value])
    return value


def health_of(obj: dict[str, Any]) -> dict[str, str]:
    """Run health.lua on ``obj`` in a fresh Lua 5.1 runtime; the {status, message} it returns."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(HEALTH_LUA.read_text())
    return {"status": result["status"], "message": result["message"]}


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / "training.tensorone.ai_trainingjobs.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("case", CASES, ids=lambda case: Path(case["inputPath"]).stem)
def test_health_of_sample_status(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())
    assert health_of(obj) == case["healthStatus"]


@pytest.mark.parametrize("case", CASES, ids=lambda case: Path(case["inputPath"]).stem)
def test_samples_are_valid_trainingjobs(case: dict[str, Any]) -> None:
    """The samples are objects the API server would store: valid against the CRD (schema and CEL)."""
    obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())
    validate(obj)  # raises ValidationFailed naming every bad field


def test_every_phase_is_covered() -> None:
    phases = {
        (yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text()).get("status") or {}).get("phase") for case in CASES
    }
    crd_phases = set(_crd_schema()["properties"]["status"]["properties"]["phase"]["enum"])
    assert crd_phases == set(Phase)
    assert crd_phases <= phases
    assert {case["healthStatus"]["status"] for case in CASES} <= ARGO_HEALTH_STATUSES


def test_stalled_wins_over_running_but_not_over_a_finished_job() -> None:
    running = yaml.safe_load((CHECK_DIR / "testdata" / "running.yaml").read_text())
    stalled = {
        "type": ConditionType.Stalled.value,
        "status": "True",
        "reason": Reason.CONFIGURATION_ERROR.value,
        "message": "bad",
        "lastTransitionTime": "2026-11-21T10:00:00Z",
    }
    running["status"]["conditions"].append(stalled)
    assert health_of(running)["status"] == "Degraded"
    completed = copy.deepcopy(running)
    completed["status"]["phase"] = Phase.Completed.value
    assert health_of(completed)["status"] == "Healthy"
    stalled["status"] = "False"
    assert health_of(running)["status"] == "Healthy"


def test_an_unknown_phase_is_progressing_not_an_error() -> None:
    obj = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "phase": "Preempted"}}
    assert health_of(obj) == {"status": "Progressing", "message": "Phase Preempted"}


def test_argocd_cm_patch_carries_the_same_script() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"]["name"] == "argocd-cm"
    script = patch["data"]["resource.customizations.health.training.tensorone.ai_TrainingJob"]
    assert script == HEALTH_LUA.read_text(), "argocd/argocd-cm-patch.yaml drifted from health.lua"


def test_an_empty_message_falls_back_to_a_description() -> None:
    obj = {
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "phase": Phase.Stopped.value, "message": ""},
    }
    assert health_of(obj) == {"status": "Suspended", "message": "Stopped by spec.suspend; set it to false to resume"}
