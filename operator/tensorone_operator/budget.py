"""Spending against ``spec.maxCost`` (pure): whether a job is over it, its condition, its Events.

The cost is ``status.resourceUsage.cost`` (running time x GPUs x the catalog's price, see
live_status). A job over its budget is held: its PyTorchJob is suspended, so the pods get SIGTERM
and the trainer saves a checkpoint, and the job shows phase Stopped with reason BudgetExceeded. The
hold is the operator's, not the spec's (the operator never writes a spec): raising ``maxCost``
above what was spent lifts it and the job resumes from its latest checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorone.api.v1alpha1 import ConditionType, Reason, TrainingJobSpec
from tensorone_operator.events import Event, EventType

# The shares of spec.maxCost at which an Event says how much is spent.
ALERT_PERCENTS = (50, 80, 100)


def spent(status: Mapping[str, Any]) -> float:
    """What a job has cost so far, from its status."""
    return float((status.get("resourceUsage") or {}).get("cost") or 0.0)


def over_budget(spec: TrainingJobSpec, status: Mapping[str, Any]) -> bool:
    """Whether the job has spent its spec.maxCost (False without one)."""
    return spec.max_cost is not None and spent(status) >= spec.max_cost


def budget_condition(spec: TrainingJobSpec, status: Mapping[str, Any], currency: str) -> tuple[bool, str, str] | None:
    """Condition WithinBudget as (value, reason, message), None without a spec.maxCost. The
    message names the cap, not the spending: a message that moved with the cost would make every
    poll a status write."""
    if spec.max_cost is None:
        return None
    cap = f"spec.maxCost ({spec.max_cost:g} {currency})"
    if over_budget(spec, status):
        message = f"{cap} is spent: the job is stopped with a checkpoint; raise spec.maxCost to resume it"
        return False, Reason.BudgetExceeded, message
    return True, Reason.BudgetAvailable, f"spending is under {cap}"


def budget_events(spec: TrainingJobSpec, old: Mapping[str, Any], new: Mapping[str, Any], currency: str) -> list[Event]:
    """Warnings about spending between two statuses: the job's condition WithinBudget turning
    False (the cap is spent, or was lowered under the spending), else the spending crossing 50 %
    or 80 % of spec.maxCost (one Event, for the highest share crossed). Raising maxCost crosses
    nothing: the next warnings come at the shares of the new cap."""
    if spec.max_cost is None:
        return []
    after = spent(new)
    amount, cap = f"{after:.2f} {currency}", f"spec.maxCost ({spec.max_cost:g} {currency})"
    if _within(old) is not False and _within(new) is False:
        message = f"spent {amount}, all of {cap}: the job is stopped with a checkpoint; raise spec.maxCost to resume"
        return [(EventType.Warning, Reason.BudgetExceeded, message)]
    before = spent(old)
    crossed = [percent for percent in ALERT_PERCENTS[:-1] if before < spec.max_cost * percent / 100 <= after]
    if not crossed:
        return []
    return [(EventType.Warning, Reason.BudgetWarning, f"spent {amount}, {crossed[-1]}% of {cap}")]


def _within(status: Mapping[str, Any]) -> bool | None:
    """Condition WithinBudget of a status: True, False, or None while it has none."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == ConditionType.WithinBudget:
            return bool(condition.get("status") == "True")
    return None
