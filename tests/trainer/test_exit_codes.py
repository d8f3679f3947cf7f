"""Exit codes: one table in code (trainer.exit_codes.ExitCode), the same in docs/trainer.md, and a
distinct code for each kind of permanent error."""

from __future__ import annotations

import re
from pathlib import Path

from tests.trainer.conftest import REPO, make_job
from trainer.exit_codes import ExitCode
from trainer.run import RunOptions, run


def test_the_docs_table_is_the_enum() -> None:
    text = (REPO / "docs" / "trainer.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", text, flags=re.MULTILINE)
    assert [(int(code), name) for code, name in rows] == [(code.value, code.name) for code in ExitCode]


def test_every_permanent_error_has_its_own_code() -> None:
    assert len({code.value for code in ExitCode}) == len(ExitCode)
    assert all(1 <= code.value <= 127 for code in ExitCode if code != ExitCode.COMPLETED)


def test_a_model_type_without_a_task_is_not_implemented(tmp_path: Path) -> None:
    job = make_job(tmp_path, model_type="vision")
    result = run(job, RunOptions(serve_reports=False))
    assert result.exit_code == ExitCode.NOT_IMPLEMENTED == 6
    assert result.report is not None and result.report.reason == "NotImplementedByTrainer"
    assert (result.report.message or "").startswith("modelType: modelType vision is not implemented")
