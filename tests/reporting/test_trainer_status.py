"""Posting the report to Kubeflow Trainer's status endpoint (played as Trainer v2.2 serves it: HTTPS
with its own CA, a token per TrainJob): the rank-0 Reporter's posts reach the TrainJob, the token
is read for every post, the certificate is checked against the given CA, and an endpoint that
refuses or never answers costs the training nothing but one log line."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tensorone.api.report import ProgressReport, TrainerState
from tensorone.api.trainer_status import CA_CERT_ENV, TOKEN_ENV, URL_ENV, status_path, token_audience
from tensorone.reporting.client import Reporter
from tensorone.reporting.trainer_status import POST_SECONDS_ENV, TrainerStatusPoster
from tests.kube.kubeflow_trainer import TRAINER_API
from tests.kube.loopback import LOOPBACK
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.kube.tokens import TokenIssuer
from tests.kube.trainer_status_server import CertificateAuthority, TrainerStatusServer

NAMESPACE, NAME = "team-a", "job"


@dataclass
class Pod:
    """What Trainer v2.2 gives the trainer container: the endpoint's URL, its CA and a token, as files."""

    endpoint: TrainerStatusServer
    api: Any
    tokens: TokenIssuer
    url: str
    ca_file: Path
    token_file: Path

    def issue(self, audience: str = token_audience(NAMESPACE, NAME)) -> None:
        """A new token in the token file (as the kubelet renews it)."""
        self.token_file.write_text(
            self.tokens.issue(namespace=NAMESPACE, pod=f"{NAME}-node-0-0", service_account="sa", audience=audience)
        )

    def trainer_status(self) -> dict[str, Any]:
        return dict(
            (self.api.get(TRAINER_API, "TrainJob", NAME, NAMESPACE).get("status") or {}).get("trainerStatus") or {}
        )

    def metric(self, name: str) -> str | None:
        return next((m["value"] for m in self.trainer_status().get("metrics") or [] if m["name"] == name), None)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """The API server, with the TrainJob whose status the trainer posts (one for the module: each
    test has an endpoint of its own and looks at what its own posts wrote)."""
    with EmulatorServer() as running:
        running.api.create(
            {
                "apiVersion": TRAINER_API,
                "kind": "TrainJob",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "spec": {"runtimeRef": {"name": "tensorone-trainer-normal"}},
            }
        )
        yield running


@pytest.fixture
def pod(server: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pod]:
    server.api.patch_status(TRAINER_API, "TrainJob", NAME, {"trainerStatus": None}, NAMESPACE)  # nothing posted yet
    tokens = TokenIssuer()
    endpoint = TrainerStatusServer(server.api, tokens, folder=tmp_path / "controller")
    try:
        mounted = tmp_path / "kubeflow-trainer"
        mounted.mkdir()
        (mounted / "ca.crt").write_text(endpoint.authority.ca_pem)
        found = Pod(
            endpoint,
            server.api,
            tokens,
            endpoint.base_url + status_path(NAMESPACE, NAME),
            mounted / "ca.crt",
            mounted / "token",
        )
        found.issue()
        monkeypatch.setenv(URL_ENV, found.url)
        monkeypatch.setenv(CA_CERT_ENV, str(found.ca_file))
        monkeypatch.setenv(TOKEN_ENV, str(found.token_file))
        monkeypatch.setenv(POST_SECONDS_ENV, "1")
        yield found
    finally:
        endpoint.close()


def test_the_rank0_reporter_posts_its_progress_then_its_final_report(pod: Pod) -> None:
    with Reporter(serve=False, termination_log=None):
        pass  # the other ranks serve nothing and post nothing
    assert pod.endpoint.taken == 0

    with Reporter(port=0, termination_log=None) as reporter:
        reporter.plan(total_epochs=1, total_steps=40)
        reporter.running()
        for step in range(1, 6):
            reporter.step(step, 2.0 - step / 10, epoch=1, learning_rate=1e-3, tokens=64, seconds=0.01)
        wait_for(lambda: pod.metric("current_step") == "5", "the running report posted")
        assert pod.metric("state") == "running" and pod.trainer_status()["progressPercentage"] == 12
        for step in range(6, 41):
            reporter.step(step, 2.0 - step / 100, epoch=1, learning_rate=1e-3, tokens=64, seconds=0.01)
    # Leaving the block finished the run: its final report is posted before the reporter closes.
    final = pod.trainer_status()
    assert final["progressPercentage"] == 100 and final["estimatedRemainingSeconds"] == 0
    assert pod.metric("state") == "completed" and pod.metric("current_step") == "40"
    assert pod.endpoint.refused == []


def changing_report() -> Any:
    """A report whose step moves at every call (so that every tick has something new to post)."""
    steps = iter(range(1, 10**6))
    return lambda: ProgressReport(state=TrainerState.running, step=next(steps), total_steps=10**6)


def poster(
    pod: Pod, *, ca_file: Path | None = None, url: str | None = None, timeout: float = 5.0
) -> TrainerStatusPoster:
    return TrainerStatusPoster(
        changing_report(),
        url=url or pod.url,
        ca_file=str(ca_file or pod.ca_file),
        token_file=str(pod.token_file),
        post_seconds=0.05,
        timeout=timeout,
    )


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tensorone.reporting" and r.levelno >= logging.WARNING]


def test_the_token_is_read_for_every_post_and_a_refusal_is_logged_once(
    pod: Pod, caplog: pytest.LogCaptureFixture
) -> None:
    pod.issue(audience=token_audience(NAMESPACE, "another-job"))  # a token that may not post this job's status
    posting = poster(pod)
    posting.start()
    try:
        wait_for(lambda: len(pod.endpoint.refused) >= 3, "several refused posts")
        assert {status for status, _ in pod.endpoint.refused} == {403} and posting.posts == 0
        pod.issue()  # renewed, for this job
        wait_for(lambda: posting.posts >= 2, "posts taken with the renewed token")
    finally:
        posting.close()
    said = warnings(caplog)
    assert len(said) == 2, said
    assert "could not be posted" in said[0] and "HTTP 403 Forbidden" in said[0] and "training goes on" in said[0]
    assert "posted again" in said[1]
    assert pod.token_file.read_text() not in "\n".join(said)


def test_the_certificate_is_checked_against_the_given_ca_only(
    pod: Pod, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = CertificateAuthority(tmp_path / "other")
    posting = poster(pod, ca_file=other.ca_file)
    posting.start()
    try:
        wait_for(lambda: warnings(caplog), "the failure logged")
        time.sleep(0.3)  # several more ticks: still one line
    finally:
        posting.close()
    assert pod.endpoint.taken == 0 and posting.posts == 0
    said = warnings(caplog)
    assert len(said) == 1 and "CERTIFICATE_VERIFY_FAILED" in said[0], said


def test_an_endpoint_that_never_answers_holds_up_neither_training_nor_the_end(
    pod: Pod, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_server((LOOPBACK, 0)) as silent:  # takes connections, never answers
        url = f"https://{LOOPBACK}:{silent.getsockname()[1]}{status_path(NAMESPACE, NAME)}"
        posting = poster(pod, url=url, timeout=0.5)
        posting.start()
        time.sleep(0.1)  # a post under way
        started = time.monotonic()
        posting.finish(ProgressReport(state=TrainerState.completed, step=5, total_steps=5))
        assert time.monotonic() - started < 0.05  # the final post goes in the background
        posting.close()  # waits for it: at most its timeout
        assert time.monotonic() - started < 0.5 * 2 + 1.5
    said = warnings(caplog)
    assert len(said) == 1 and "timed out" in said[0], said


def test_an_endpoint_without_tls_or_without_its_files_gets_no_post(
    pod: Pod, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:1" + status_path(NAMESPACE, NAME))
    assert TrainerStatusPoster.from_env(changing_report()) is None
    monkeypatch.setenv(URL_ENV, pod.url)
    monkeypatch.delenv(TOKEN_ENV)
    assert TrainerStatusPoster.from_env(changing_report()) is None
    said = warnings(caplog)
    assert "must be an https URL" in said[0] and "the token is never sent in clear" in said[0]
    assert TOKEN_ENV in said[1]
    monkeypatch.delenv(URL_ENV)
    assert TrainerStatusPoster.from_env(changing_report()) is None  # no endpoint: nothing to say
    assert len(warnings(caplog)) == 2
    assert pod.endpoint.taken == 0 and pod.endpoint.refused == []


def test_the_endpoint_takes_only_what_the_trainjob_schema_allows(pod: Pod) -> None:
    token = pod.token_file.read_text()
    path = status_path(NAMESPACE, NAME)
    good = {
        "progressPercentage": 5,
        "metrics": [{"name": "loss", "value": "1.5"}],
        "lastUpdatedTime": "2026-01-01T00:00:00Z",
    }
    assert pod.endpoint.post(path, f"Bearer {token}", json.dumps({"trainerStatus": good}).encode())[0] == 200
    for wrong in ({"progressPercentage": 101}, {"lastUpdatedTime": None}, {"metrics": [{"name": "loss", "value": ""}]}):
        status, answer = pod.endpoint.post(
            path, f"Bearer {token}", json.dumps({"trainerStatus": good | wrong}).encode()
        )
        assert status == 422, (wrong, answer)
    assert pod.endpoint.post(path, "Bearer not-a-token", b"{}")[0] == 403
    assert pod.endpoint.post(status_path(NAMESPACE, "other"), f"Bearer {token}", b"{}")[0] == 403  # another job's
    # Each post replaces what the last one set: an estimate the trainer no longer gives goes.
    pod.endpoint.post(
        path, f"Bearer {token}", json.dumps({"trainerStatus": good | {"estimatedRemainingSeconds": 9}}).encode()
    )
    pod.endpoint.post(path, f"Bearer {token}", json.dumps({"trainerStatus": good}).encode())
    assert "estimatedRemainingSeconds" not in pod.trainer_status() and pod.trainer_status()["progressPercentage"] == 5


def test_a_token_file_that_is_no_text_is_one_more_failure_not_the_end_of_posting(
    pod: Pod, caplog: pytest.LogCaptureFixture
) -> None:
    pod.token_file.write_bytes(b"\xff\xfe\x00")
    posting = poster(pod)
    posting.start()
    try:
        wait_for(lambda: warnings(caplog), "the failure logged")
        pod.issue()
        wait_for(lambda: posting.posts >= 1, "a post once the token is readable")
    finally:
        posting.close()
    said = warnings(caplog)
    assert "UnicodeDecodeError" in said[0] and "posted again" in said[-1], said
