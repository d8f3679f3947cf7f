"""``t1`` through the gateway: ``$TENSORONE_BASE_URL`` sends it there, ``$TENSORONE_API_KEY`` is
the bearer key it sends (a Kubernetes credential the gateway passes on)."""

from __future__ import annotations

import pytest

from tensorone.cli import main
from tensorone.cli.exit_codes import NOT_ALLOWED
from tests.factories import training_job
from tests.gateway.process import ADMIN_TOKEN, GatewayProcess
from tests.kube.server import EmulatorServer


def test_t1_sends_the_api_key_from_the_environment(
    cluster: EmulatorServer,
    gateway: GatewayProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster.api.create(training_job("keyed"))
    monkeypatch.setenv("TENSORONE_BASE_URL", gateway.url)
    monkeypatch.setenv("TENSORONE_API_KEY", ADMIN_TOKEN)
    assert main(["list"]) == 0
    assert "keyed" in capsys.readouterr().out


def test_t1_without_a_key_is_refused_in_one_line_with_the_variable_in_the_hint(
    cluster: EmulatorServer,
    gateway: GatewayProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TENSORONE_BASE_URL", gateway.url)
    monkeypatch.delenv("TENSORONE_API_KEY", raising=False)
    assert main(["list"]) == NOT_ALLOWED
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("t1: UNAUTHENTICATED"), err
    assert "$TENSORONE_API_KEY" in err[1], err
