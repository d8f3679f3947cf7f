"""The newest progress report of each job's rank-0 trainer, and what changed since the last one mirrored.

Reports come from three places: ``GET /progress`` on the rank-0 pod while it runs (polled with this
class's own HTTP session, apart from the API client's), or instead the report the trainer posted
to Kubeflow Trainer, which a TrainJob carries in ``status.trainerStatus``
(tensorone.api.trainer_status); and the pod's termination message once it has ended (from the pod
watch). The newest of them is kept with the time it was read; what it
says happened since the report last mirrored into the status becomes Events. The first pod of any
replica to fail with a permanent exit code is kept too, with its termination message: it explains
a job that a Worker failed; it never becomes the job's report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import aiohttp

from tensorone.api.report import MAX_REPORT_BYTES, MAX_REPORT_CHECKPOINTS, InvalidReport, ProgressReport, parse_report
from tensorone.api.timestamps import now, utc_now
from tensorone.api.trainer_status import report_of
from tensorone.api.v1alpha1 import Reason
from tensorone_operator.events import Event, EventType
from tensorone_operator.live_status import (
    KeptReport,
    ReplicaFailure,
    extended,
    from_newer_pod,
    from_older_pod,
    master_pod_view,
    newer,
    replica_failure,
    report_baseline,
    report_events,
)

logger = logging.getLogger("tensorone_operator")

JobKey = tuple[str, str]
# A /progress answer takes milliseconds; a pod that does not answer in this time is skipped, and
# refused after this many such polls running.
PROGRESS_TIMEOUT_SECONDS = 2.0
TIMEOUTS_REFUSED = 3
# What a /progress answer may say about itself in a refusal's message.
_QUOTED = 200


async def _report_body(response: aiohttp.ClientResponse) -> bytes | None:
    """The body of a /progress answer, read up to MAX_REPORT_BYTES; None for an answer that is no
    report yet (the server starting). Raises InvalidReport for a redirect (never followed: it
    could point the operator at another tenant's trainer) and for a body over the limit."""
    if 300 <= response.status < 400:
        location = response.headers.get("Location", "")[:_QUOTED]
        raise InvalidReport(
            f"/progress answered HTTP {response.status} redirecting to {location!r}; redirects are not followed"
        )
    if response.status != 200:
        return None
    if response.content_length is not None and response.content_length > MAX_REPORT_BYTES:
        raise InvalidReport(_too_large(f"{response.content_length} bytes"))
    body = bytearray()
    while len(body) <= MAX_REPORT_BYTES:
        chunk = await response.content.read(MAX_REPORT_BYTES + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    raise InvalidReport(_too_large(f"more than {MAX_REPORT_BYTES} bytes"))


def _problem(message: str) -> str:
    """The gist of an HTTP parser's complaint, without the bytes it quotes from the answer."""
    return message.split(":", 1)[0].split("\n", 1)[0][:_QUOTED]


def _too_large(size: str) -> str:
    return f"report of {size} is over the limit of {MAX_REPORT_BYTES} bytes"


class TrainerReports:
    """Where each job's rank-0 trainer serves /progress, and the newest report it gave."""

    def __init__(self) -> None:
        # Each job's rank-0 pod (where to poll it), the newest report seen with when it was read,
        # and the report last mirrored into the status (for Events; as the JSON its KeptReport
        # holds, not as a model: a few KB less for each running job).
        self._pods: dict[JobKey, dict[str, Any]] = {}
        self._reports: dict[JobKey, KeptReport] = {}
        self._mirrored: dict[JobKey, bytes] = {}
        self._http: aiohttp.ClientSession | None = None
        # Why the last /progress answer was refused, the refusal last announced by an Event, and
        # how many polls running timed out.
        self._refused: dict[JobKey, str] = {}
        self._announced: dict[JobKey, str | None] = {}
        self._timeouts: dict[JobKey, int] = {}
        # The exit code of each job's rank-0 pod that failed last, and the first pod of the job to
        # fail with a permanent exit code.
        self._exit_codes: dict[JobKey, int] = {}
        self._failures: dict[JobKey, ReplicaFailure] = {}
        # The trainerStatus last read of each job (the same one is not read twice).
        self._posted: dict[JobKey, Mapping[str, Any]] = {}

    def forget(self, key: JobKey) -> None:
        """Drop what is kept about a deleted job."""
        kept_per_job = (
            self._pods,
            self._reports,
            self._mirrored,
            self._refused,
            self._announced,
            self._timeouts,
            self._exit_codes,
            self._failures,
            self._posted,
        )
        for kept in kept_per_job:
            kept.pop(key, None)

    async def close(self) -> None:
        """Close the polls' connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    def latest(self, key: JobKey) -> KeptReport | None:
        """The newest report of the job and when it was read (RFC 3339), if any."""
        return self._reports.get(key)

    def exit_code(self, key: JobKey) -> int | None:
        """The exit code of the job's rank-0 pod that failed last, if one did."""
        return self._exit_codes.get(key)

    def failure(self, key: JobKey) -> ReplicaFailure | None:
        """The first pod of the job that failed with a permanent exit code, if one did."""
        return self._failures.get(key)

    def pod(self, key: JobKey) -> dict[str, Any] | None:
        """What is kept of the job's rank-0 pod (for diagnostics)."""
        return self._pods.get(key)

    def pod_changed(self, key: JobKey, pod: Mapping[str, Any], *, deleted: bool) -> bool:
        """A watch event of a job's pod: remember where its rank-0 trainer serves /progress, and
        take the report it left in its termination message (also from the last state of a pod
        being deleted, as on a stop), or refuse that message when it is no acceptable report; and
        keep the job's first pod of any replica that failed with a permanent exit code. Whether
        that is news (a report newer than the one kept, a new refusal, or the first such failure)."""
        moment = now()
        failure = replica_failure(pod, now=moment)
        failed = failure is not None and self._failures.setdefault(key, failure) is failure
        view = master_pod_view(pod, now=moment)
        if view is None:
            return failed
        final, refusal = view.pop("report"), view.pop("refusal")
        exit_code = view.pop("exitCode")
        if exit_code is not None:
            self._exit_codes[key] = exit_code
        elif view["running"]:
            # The rank-0 trainer runs again (a resume, a restart): the last exit code explains nothing now.
            self._exit_codes.pop(key, None)
        # A resumed job's new pod has the same name as the one that went, and the watch events of
        # two objects come in no set order: an old pod never displaces a running new one.
        kept = self._pods.get(key)
        if deleted:
            if kept is not None and kept.get("uid") == view["uid"]:
                self._pods.pop(key, None)
        elif kept is None or kept.get("uid") == view["uid"] or view["running"] or not kept.get("running"):
            self._pods[key] = view
        refused = refusal is not None and self._refused.get(key) != refusal
        if refused:
            self._refuse(key, str(refusal))
        remembered = final is not None and self._remember(key, final, pod_created=view["created"])
        if remembered and refusal is None:
            self._refused.pop(key, None)  # a later report was accepted: ReportValid is True again
        return remembered or refused or failed

    def _remember(self, key: JobKey, report: ProgressReport, *, pod_created: str | None) -> bool:
        """Keep ``report`` of the pod created at ``pod_created`` if it is newer than the one kept
        (a later pod's report is, whatever its own times say); whether it was."""
        kept = self._reports.get(key)
        kept_report = kept.report if kept else None
        if kept is not None and kept_report is not None:
            if from_older_pod(pod_created, kept.pod_created):
                return False
            if not from_newer_pod(pod_created, kept.pod_created) and newer(kept_report, report) is kept_report:
                return False
        if (
            kept is not None
            and kept_report is not None
            and not report.loss_history
            and kept_report.started_at == report.started_at
        ):
            # A termination message carries no curves: keep the ones this process reported.
            curve = kept.loss_curve
            if report.loss is not None and math.isfinite(report.loss) and (not curve or curve[-1][0] < report.step):
                curve = extended(curve, report.step, report.loss)
            fresh = KeptReport.of(
                report, utc_now(), pod_created=pod_created, loss_curve=curve, eval_curve=kept.eval_curve
            )
        else:
            fresh = KeptReport.of(report, utc_now(), pod_created=pod_created)
        self._reports[key] = fresh
        return True

    def refusal(self, key: JobKey) -> str | None:
        """Why the job's last /progress answer was refused (None when it was accepted)."""
        return self._refused.get(key)

    async def poll(self, key: JobKey) -> None:
        """GET /progress from the job's rank-0 pod (its IP and report port). Quiet while the pod
        cannot be reached (it may be starting or gone: the termination message covers the end);
        an answer that is no acceptable report (not HTTP, a redirect, too large, not JSON, out of
        bounds, or too slow several times running) is refused and the reason kept for the status."""
        pod = self._pods.get(key)
        if not pod or not pod.get("running") or not pod.get("podIP") or not pod.get("reportPort"):
            return
        if self._http is None or self._http.closed:
            # No decompression: a small gzip body could otherwise unpack into gigabytes.
            timeout = aiohttp.ClientTimeout(total=PROGRESS_TIMEOUT_SECONDS)
            self._http = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        url = f"http://{pod['podIP']}:{pod['reportPort']}/progress"
        try:
            async with self._http.get(url, allow_redirects=False) as response:
                body = await _report_body(response)
            report = None if body is None else parse_report(body, now=now())
        except TimeoutError:
            self._timed_out(key)
            return
        except InvalidReport as exc:
            self._refuse(key, str(exc))
            return
        except aiohttp.ClientResponseError as exc:  # the pod answered, but not in HTTP a reader can hold
            self._refuse(key, f"/progress answered with no valid HTTP response ({_problem(exc.message)})")
            return
        except (aiohttp.ClientError, OSError) as exc:
            logger.debug("progress of %s/%s not read from %s: %s", *key, url, exc)
            return
        self._timeouts.pop(key, None)
        if report is not None:
            self._refused.pop(key, None)
            self._remember(key, report, pod_created=pod.get("created"))

    def trainer_status(self, key: JobKey, status: Mapping[str, Any] | None) -> None:
        """Read the report a job's trainer posted, as its TrainJob carries it (``status.trainerStatus``):
        kept when it is newer than the report kept, refused with the reason when it is no acceptable
        report. No pod is contacted; nothing posted yet (``status`` empty) is nothing to read."""
        if not status or status == self._posted.get(key):
            return
        self._posted[key] = status
        try:
            report = report_of(status, now=now())
        except InvalidReport as exc:
            self._refuse(key, f"TrainJob status.trainerStatus: {exc}")
            return
        self._timeouts.pop(key, None)
        self._refused.pop(key, None)
        self._remember_posted(key, report)

    def _remember_posted(self, key: JobKey, report: ProgressReport) -> None:
        """Keep a posted ``report`` if it is newer than the one kept (a tie goes to the kept one: a
        termination message tells more). A post names the newest checkpoint alone and has no
        curves: the checkpoints kept so far are listed with it, and the curves of the report kept
        (up to the posted step) go on with the posted points."""
        kept = self._reports.get(key)
        kept_report = kept.report if kept else None
        if kept_report is not None and newer(report, kept_report) is not report:
            return
        checkpoints = list(kept_report.checkpoints) if kept_report is not None else []
        listed = {c.id for c in checkpoints}
        checkpoints += [c for c in report.checkpoints if c.id not in listed]
        loss_curve = tuple(p for p in kept.loss_curve if p[0] < report.step) if kept else ()
        if report.loss is not None and math.isfinite(report.loss):
            loss_curve = extended(loss_curve, report.step, report.loss)
        eval_curve = kept.eval_curve if kept else ()
        if report.eval_history:
            point = report.eval_history[-1]
            eval_curve = extended(tuple(p for p in eval_curve if p[0] < point.step), point.step, point.loss)
        merged = report.model_copy(update={"checkpoints": checkpoints[-MAX_REPORT_CHECKPOINTS:], "eval_history": []})
        self._reports[key] = KeptReport.of(
            merged,
            utc_now(),
            pod_created=kept.pod_created if kept else None,
            loss_curve=loss_curve,
            eval_curve=eval_curve,
        )

    def _refuse(self, key: JobKey, reason: str) -> None:
        self._timeouts.pop(key, None)
        if self._refused.get(key) != reason:
            logger.info("progress report of %s/%s refused: %s", *key, reason)
        self._refused[key] = reason

    def _timed_out(self, key: JobKey) -> None:
        """A poll that did not finish in time: refused once it happens TIMEOUTS_REFUSED times running
        (one slow answer of a busy trainer is no fault)."""
        count = self._timeouts.get(key, 0) + 1
        self._timeouts[key] = count
        if count >= TIMEOUTS_REFUSED:
            self._refuse(key, f"/progress gave no complete answer within {PROGRESS_TIMEOUT_SECONDS} s")
            self._timeouts[key] = count

    def news(self, key: JobKey, stored: Mapping[str, Any]) -> list[Event]:
        """What the newest report says happened since the one last mirrored into the status
        (after an operator restart: since what the stored status shows), and a warning for a
        refusal not yet announced; marks them mirrored."""
        refusal = self._refused.get(key)
        warnings: list[Event] = []
        if refusal is not None and self._announced.get(key) != refusal:
            warnings.append((EventType.Warning, Reason.ReportRefused, f"progress report refused: {refusal}"))
        self._announced[key] = refusal
        kept = self._reports.get(key)
        if kept is None:
            return warnings
        return warnings + self._report_news(key, stored, kept)

    def _report_news(self, key: JobKey, stored: Mapping[str, Any], kept: KeptReport) -> list[Event]:
        mirrored = self._mirrored.get(key)
        if mirrored == kept.report_json:
            return []
        report = kept.report
        previous = report_baseline(stored, report) if mirrored is None else ProgressReport.model_validate_json(mirrored)
        self._mirrored[key] = kept.report_json
        return report_events(previous, report)
