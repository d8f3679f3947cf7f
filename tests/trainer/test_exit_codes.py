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
from trainer.launch import _verdict, pod_exit_code


def test_the_docs_table_is_the_enum() -> None:
    text = (REPO / "docs" / "trainer.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \| ([^|]+) \|", text, flags=re.MULTILINE)
    documented = [(int(code), name, what.strip()) for code, name, what in rows]
    assert documented == [(code.value, code.name, MEANINGS[code]) for code in ExitCode]


def test_every_permanent_error_has_its_own_code_and_only_the_unexpected_and_a_pods_stop_are_retried() -> None:
    assert len({code.value for code in ExitCode}) == len(ExitCode)
    retried = {code for code in ExitCode if code != ExitCode.COMPLETED and is_retryable(code)}
    assert retried == {ExitCode.UNEXPECTED, ExitCode.TERMINATED}
    assert all(1 <= code.value <= 127 for code in ExitCode if code not in retried | {ExitCode.COMPLETED})
    assert ExitCode.UNEXPECTED == 138  # 128 + SIGUSR1: what Kubernetes users take for "retry me"
    assert ExitCode.TERMINATED == 128 + 15  # SIGTERM's, as a shell reports a process it ended
    assert failure_reason(ExitCode.TERMINATED) is None  # no failure: the pod comes back and resumes


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


def test_a_pods_launcher_exits_143_on_a_stop_here_or_on_a_peer_and_0_on_ctrl_c() -> None:
    terminated, unexpected = int(ExitCode.TERMINATED), int(ExitCode.UNEXPECTED)

    def exits(code: int, state: str | None, stopped_by: str | None, verdict: int = unexpected) -> int:
        return pod_exit_code(code, verdict=0 if code == 0 else verdict, state=state, stopped_by=stopped_by)

    assert exits(0, "completed", None) == 0
    assert exits(1, "stopped", "SIGTERM") == terminated  # torchrun exits 1 when it is signalled
    assert exits(0, "stopped", None) == terminated  # a peer's pod got the SIGTERM: every process stopped
    assert exits(1, "stopped", "SIGINT") == 0  # a person at a terminal
    assert exits(1, "completed", "SIGTERM") == 0  # the run ended as the signal came
    assert exits(1, "failed", "SIGTERM", verdict=int(ExitCode.DATA)) == ExitCode.DATA
    assert exits(1, "failed", None) == unexpected
    assert exits(0, None, None) == 0  # outside a pod: no termination message
