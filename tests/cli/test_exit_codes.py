"""The exit statuses of t1: one table in code (tensorone.cli.exit_codes), the same in its
docstring, in docs/cli.md and in the README; distinct, and none of a watched job's outcomes is the
status of a failure of t1 itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tensorone.cli import exit_codes
from tensorone.cli.exit_codes import JOB_CANCELLED, JOB_FAILED, JOB_STOPPED, OK, exit_code, final_phase_exit_code

REPO = Path(__file__).resolve().parents[2]
STATUSES = {name: value for name, value in vars(exit_codes).items() if name.isupper() and isinstance(value, int)}


def documented(text: str) -> list[int]:
    return [int(status) for status in re.findall(r"^\| (\d+) \|", text, flags=re.MULTILINE)]


@pytest.mark.parametrize("place", ["tensorone/cli/exit_codes.py", "docs/cli.md", "README.md"])
def test_every_table_is_the_code(place: str) -> None:
    assert documented((REPO / place).read_text()) == sorted(STATUSES.values())


def test_statuses_are_distinct_and_a_job_outcome_is_no_failure_of_t1() -> None:
    assert len(set(STATUSES.values())) == len(STATUSES)
    outcomes = {final_phase_exit_code(phase) for phase in ("Failed", "Cancelled", "Stopped")}
    assert outcomes == {JOB_FAILED, JOB_CANCELLED, JOB_STOPPED}
    assert final_phase_exit_code("Completed") == OK
    codes = ("CONFIGURATION_ERROR", "JOB_NOT_FOUND", "ALREADY_EXISTS", "FORBIDDEN", "CONNECTION_ERROR", "OTHER")
    assert not outcomes & {exit_code(code) for code in codes}
