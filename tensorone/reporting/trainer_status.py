"""Post the report to Kubeflow Trainer's status endpoint, when the pod has one (tensorone.api.trainer_status).

Trainer v2.2 with its ``TrainJobStatus`` feature gate gives each trainer container
``KUBEFLOW_TRAINER_SERVER_URL`` (HTTPS), ``KUBEFLOW_TRAINER_SERVER_CA_CERT`` and
``KUBEFLOW_TRAINER_SERVER_TOKEN``; the rank-0 ``Reporter`` then posts its report there, so the
report reaches the TrainJob's ``status.trainerStatus`` and the operator need not reach the pod.

Posting never holds up training: a daemon thread posts the newest report (nothing is queued: each
post is built from the tracker when it is sent) at most every ``post_seconds`` and only when it
changed, each post bounded by ``TIMEOUT_SECONDS``; the final report is posted once at the end
within the same bound. The token file is read again for every post (the kubelet renews it) and
the server's certificate is checked against the CA file (read again too: the controller rotates
its certificate), never against the system's CAs. A failure is logged once, when it starts (and
again when the failure changes), and once when posting works again.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from tensorone.api.report import ProgressReport
from tensorone.api.trainer_status import CA_CERT_ENV, TOKEN_ENV, URL_ENV, trainer_status_of

log = logging.getLogger("tensorone.reporting")

# Kubeflow's SDK and its transformers callback post at most every 5 s; the controller's status
# server shares a small API budget (5 requests a second by default) among every TrainJob.
DEFAULT_POST_SECONDS = 5.0
POST_SECONDS_ENV = "TENSORONE_TRAINER_STATUS_SECONDS"
MIN_POST_SECONDS, MAX_POST_SECONDS = 1.0, 300.0
TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024  # the endpoint answers with the status it took, or a Status


class PostError(Exception):
    """A post the endpoint did not take; the message says why, without the token."""


def post_seconds() -> float:
    """``$TENSORONE_TRAINER_STATUS_SECONDS`` within 1-300 s, else 5 s."""
    try:
        seconds = float(os.environ.get(POST_SECONDS_ENV) or DEFAULT_POST_SECONDS)
    except ValueError:
        return DEFAULT_POST_SECONDS
    if not math.isfinite(seconds):
        return DEFAULT_POST_SECONDS
    return min(max(seconds, MIN_POST_SECONDS), MAX_POST_SECONDS)


class TrainerStatusPoster:
    """Posts the reports of ``report`` (a tracker's ``report``) to ``url`` from a daemon thread."""

    def __init__(
        self,
        report: Callable[[], ProgressReport],
        *,
        url: str,
        ca_file: str,
        token_file: str,
        post_seconds: float = DEFAULT_POST_SECONDS,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"{URL_ENV} must be an https URL, got {url[:200]!r}: the token is never sent in clear")
        self._report = report
        self._host, self._port = parts.hostname, parts.port or 443
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._ca_file, self._token_file = ca_file, token_file
        self.post_seconds = post_seconds
        self.timeout = timeout
        self._wake = threading.Event()
        self._final: ProgressReport | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="tensorone-trainer-status", daemon=True)
        self._last_posted: tuple[object, ...] | None = None
        self._failure: str | None = None
        self.posts = 0  # posts the endpoint took

    @classmethod
    def from_env(cls, report: Callable[[], ProgressReport]) -> TrainerStatusPoster | None:
        """A poster for this pod's endpoint, or None when the pod has none (or an unusable one: said once)."""
        url = os.environ.get(URL_ENV)
        if not url:
            return None
        ca_file, token_file = os.environ.get(CA_CERT_ENV), os.environ.get(TOKEN_ENV)
        if not ca_file or not token_file:
            log.warning(
                "%s is set without %s and %s: the trainer status is not posted", URL_ENV, CA_CERT_ENV, TOKEN_ENV
            )
            return None
        try:
            return cls(report, url=url, ca_file=ca_file, token_file=token_file, post_seconds=post_seconds())
        except ValueError as error:
            log.warning("the trainer status is not posted: %s", error)
            return None

    def start(self) -> None:
        self._thread.start()

    def finish(self, report: ProgressReport) -> None:
        """Post ``report``, the final one, next (in the background)."""
        self._final = report
        self._wake.set()

    def close(self, wait: float | None = None) -> None:
        """Stop posting, after the final report's post if one is due, waiting at most ``wait``
        seconds (the post's timeout by default)."""
        self._closing = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout + 1.0 if wait is None else wait)

    # The thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            final, closing = self._final, self._closing
            if final is not None:
                self._send(final)
                return
            if closing:
                return
            self._send(None)
            self._wake.wait(self.post_seconds)
            self._wake.clear()

    def _send(self, final: ProgressReport | None) -> None:
        """Post ``final``, else the tracker's report when it changed since the last post."""
        try:
            report = final if final is not None else self._report()
            news = (report.state, report.step, report.epoch, report.eval_loss, len(report.checkpoints), report.message)
            if final is None and news == self._last_posted:
                return
            self.post(report)
        except Exception as error:  # whatever goes wrong here (a token file that is no text, too), training goes on
            self._failed(f"{type(error).__name__}: {error}")
            return
        self._last_posted = news
        self.posts += 1
        if self._failure is not None:
            log.warning("the trainer status is posted again to %s", self._host)
            self._failure = None

    def _failed(self, why: str) -> None:
        if why != self._failure:
            log.warning("the trainer status could not be posted to %s (training goes on): %s", self._host, why[:500])
        self._failure = why

    def post(self, report: ProgressReport) -> None:
        """POST ``report`` as ``{"trainerStatus": ...}``; PostError when it is not taken."""
        token = Path(self._token_file).read_text().strip()
        context = ssl.create_default_context(cafile=self._ca_file)
        body = json.dumps({"trainerStatus": trainer_status_of(report, now=datetime.now(UTC))}).encode()
        connection = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=context)
        started = time.monotonic()
        try:
            connection.request(
                "POST",
                self._path,
                body=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            answer = response.read(MAX_ANSWER_BYTES)
        finally:
            connection.close()
        if response.status != 200:
            raise PostError(f"HTTP {response.status} {_message(answer)}".strip())
        log.debug("trainer status posted in %.3f s", time.monotonic() - started)


def _message(answer: bytes) -> str:
    """The message of a Kubernetes Status answer, if the answer is one."""
    try:
        status = json.loads(answer)
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return str(message)[:300] if message else ""
