"""Exit codes: one table in code (tensorone.api.exit_codes.ExitCode), the same in docs/trainer.md, a
distinct code below 128 for each kind of permanent error, and a retryable one for the unexpected;
the launcher turns torchrun's failure into the trainer's own code."""

from __future__ import annotations

import re
from pathlib import Path

from tensorone.api.exit_codes import MEANINGS, ExitCode, exit_code_for, failure_reason, is_retryable, meaning
from tensorone.api.v1alpha1 import Reason
from tensorone.errors import ConfigurationError, NotImplementedByTrainer
from tests.trainer.conftest import REPO
from trainer.launch import _verdict


def test_the_docs_table_is_the_enum() -> None:
    text = (REPO / "docs" / "trainer.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \| ([^|]+) \|", text, flags=re.MULTILINE)
    documented = [(int(code), name, what.strip()) for code, name, what in rows]
    assert documented == [(code.value, code.name, MEANINGS[code]) for code in ExitCode]


def test_every_permanent_error_has_its_own_code_and_only_the_unexpected_is_retried() -> None:
    assert len({code.value for code in ExitCode}) == len(ExitCode)
    retried = {code for code in ExitCode if code != ExitCode.COMPLETED and is_retryable(code)}
    assert retried == {ExitCode.UNEXPECTED}
    assert all(1 <= code.value <= 127 for code in ExitCode if code not in retried | {ExitCode.COMPLETED})
    assert ExitCode.UNEXPECTED == 138  # 128 + SIGUSR1: what Kubernetes users take for "retry me"


def test_each_permanent_code_names_its_reason() -> None:
    assert failure_reason(ExitCode.CHECKPOINT) == Reason.CHECKPOINT_NOT_FOUND
    assert failure_reason(ExitCode.CONFIGURATION) == Reason.CONFIGURATION_ERROR
    assert failure_reason(ExitCode.UNEXPECTED) is None and failure_reason(77) is None
    assert (meaning(ExitCode.DATA) or "").startswith("data error: ") and meaning(77) is None


def test_the_launcher_exits_with_a_permanent_code_else_the_retryable_one(tmp_path: Path) -> None:
    assert _verdict(tmp_path) == ExitCode.UNEXPECTED  # torchrun failed and no process left a code
    (tmp_path / "0").write_text("0")  # stopped by torchrun when its peer failed
    (tmp_path / "1").write_text(str(int(ExitCode.UNEXPECTED)))
    assert _verdict(tmp_path) == ExitCode.UNEXPECTED
    (tmp_path / "2").write_text(str(int(ExitCode.CHECKPOINT)))
    assert _verdict(tmp_path) == ExitCode.CHECKPOINT


def test_what_the_trainer_has_no_code_for_is_not_implemented() -> None:
    # Every model type of the API trains now; the code stays for what a trainer image lacks.
    error = NotImplementedByTrainer("modelType audio is not implemented by this trainer yet", field="modelType")
    assert exit_code_for(error) == ExitCode.NOT_IMPLEMENTED == 6
    assert exit_code_for(ConfigurationError("bad", field="x")) == ExitCode.CONFIGURATION
