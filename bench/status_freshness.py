"""Live-status freshness and reporting overhead.

    python bench/status_freshness.py            # operator default poll (5 s), 75 s of training; ~3 min
    python bench/status_freshness.py --quick    # 1 s poll, 15 s of training, fewer blocks; ~1 min

Part 1, freshness, over a real run: the emulator (tests/kube), the operator as a separate process
(``python -m tensorone_operator``, as deployed, with ``progressPollSeconds`` set), and LocalNode
running the real trainer for the example tiny Llama LoRA job. The trainer's metrics log (beside
the checkpoints) stamps every step with the wall-clock time it was recorded; a watch on the
TrainingJob stamps every status change with its arrival time. The lag of a step is the time from
its record to the first status whose ``progress.currentStep`` reaches it. After ``--seconds`` of
training the job is stopped (``spec.suspend``). Steps recorded less than the target (interval +
1 s) before the stop are left out of the live figures, as the stop could delay them (the operator
stops polling a pod being deleted; the termination message brings the last step, printed apart).
The operator talks to the emulator through a counting pass-through, so the status writes it sent
are counted as well as those that changed something (the API server, like the emulator, stores no
version for a write that changes nothing, so a watch alone cannot see a needless write).
Targets: p99 lag < poll interval + 1 s; status writes only when something changed.

Part 2, the trainer's step time with reporting on and off (target: overhead < 1%). Two methods:

- cost accounting, the figure to quote (its noise is far below the 1% to resolve): the time of a
  ``Reporter.step`` call (tracker update plus the metrics-log line, with a full 200-point curve;
  the mean over 20,000 calls in a loop, and the mean of the calls made between real steps in the
  A/B below, the dearer one used), and the CPU time the process spends serving one
  ``GET /progress`` of a full report (this process's CPU time while a separate process polls it),
  against the median step time of the example model. Overhead = call / step + serve / interval.
- a direct A/B in one process, as a check: real LoRA steps of the example model
  (examples/models/tiny-llama, rank 16 on every linear layer, batch 8, max length 64, AdamW; made
  with transformers and peft on padded batches), in blocks of 10 alternating between off and on
  (``Reporter.step`` after every step, and a separate process polling ``/progress`` at the poll
  interval). Printed: the ratio of the median step times on/off, beside the noise floor (the off
  steps of even pairs against those of odd pairs). On a shared 2-core machine the floor is about
  1-5%, wider than 1%: the A/B bounds the overhead; the accounting measures it.

A program, not a test: it prints figures and always exits 0 unless it cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tensorone.reporting.client import CheckpointReport, Reporter  # noqa: E402
from tests.factories import API, RECORDS, TINY_MODEL, tiny_dataset, tiny_training_job  # noqa: E402
from tests.kube.node import LocalNode  # noqa: E402
from tests.kube.server import EmulatorServer  # noqa: E402
from tests.operator.process import OperatorProcess  # noqa: E402

JOB = "freshness"


# Part 1 ------------------------------------------------------------------------------------------


class CountingProxy:
    """An HTTP pass-through to the emulator (watches streamed) that records the operator's
    status writes to TrainingJobs: (wall-clock time, patch body)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self.status_writes: list[tuple[float, dict[str, Any]]] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="proxy", daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:

            async def forward(request: web.Request) -> web.StreamResponse:
                body = await request.read()
                if request.method == "PATCH" and "/trainingjobs/" in request.path and request.path.endswith("/status"):
                    self.status_writes.append((time.time(), json.loads(body or b"{}")))
                headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
                async with session.request(
                    request.method, self.upstream + request.path_qs, data=body, headers=headers
                ) as upstream:
                    response = web.StreamResponse(status=upstream.status)
                    response.content_type = upstream.content_type
                    await response.prepare(request)
                    # The operator closes its watches when it stops: nothing more to pass on.
                    with contextlib.suppress(ConnectionError):
                        async for chunk in upstream.content.iter_any():
                            await response.write(chunk)
                        await response.write_eof()
                    return response

            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()


@dataclass
class StatusLog:
    """Every status of the job as a watch delivered it: (arrival time, status)."""

    seen: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def follow(self, server: EmulatorServer) -> threading.Thread:
        def run() -> None:
            url = f"{server.url}/apis/{API}/namespaces/default/trainingjobs?watch=true&timeoutSeconds=900"
            with urllib.request.urlopen(url, timeout=950) as stream:
                for line in stream:
                    arrived = time.time()
                    if self.stop.is_set():
                        return
                    if line.strip():
                        obj = json.loads(line)["object"]
                        if obj["metadata"]["name"] == JOB:
                            self.seen.append((arrived, obj.get("status") or {}))

        thread = threading.Thread(target=run, name="status-watch", daemon=True)
        thread.start()
        return thread

    def latest(self) -> dict[str, Any]:
        return self.seen[-1][1] if self.seen else {}


def wait_until(probe: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def freshness(poll: float, seconds: float, workdir: Path) -> dict[str, Any]:
    """Run the example job under the operator for ``seconds`` of training; lags and writes."""
    statuses = StatusLog()
    with EmulatorServer() as server, CountingProxy(server.url) as proxy, LocalNode(server, workdir / "node") as node:
        with OperatorProcess(proxy.url, workdir, {"progressPollSeconds": poll}, log_level="WARNING"):
            watcher = statuses.follow(server)
            time.sleep(0.3)  # the watch is open
            server.api.create(tiny_dataset())
            server.api.create(tiny_training_job(JOB, epochs=5000))  # longer than any run: stopped below
            wait_until(
                lambda: (statuses.latest().get("progress") or {}).get("currentStep", 0) >= 1,
                "the first step in the status",
                timeout=180,
            )
            time.sleep(seconds)
            stop_requested = time.time()
            server.api.patch(API, "TrainingJob", JOB, {"spec": {"suspend": True}})
            try:
                wait_until(lambda: statuses.latest().get("phase") == "Stopped", "Stopped", timeout=120)
                wait_until(
                    lambda: any(c.get("reason") == "stop" for c in statuses.latest().get("checkpoints", [])),
                    "the stop checkpoint in the status",
                    timeout=60,
                )
            except TimeoutError:
                status = statuses.latest()
                print(f"status: {json.dumps({k: status.get(k) for k in ('phase', 'progress', 'checkpoints')})}")
                print(f"trainer log: {node.pod_log('default', JOB)[-1500:]}")
                print(f"operator log: {(workdir / 'operator.log').read_text()[-1500:]}")
                raise
            statuses.stop.set()
            log = node.claim_dir("default", f"{JOB}-checkpoints") / "metrics.jsonl"
            records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        watcher.join(0.1)

    steps = [(r["step"], r["time"], r["seconds"]) for r in records if r.get("event") == "step"]
    shown = [(t, (s.get("progress") or {}).get("currentStep", 0)) for t, s in statuses.seen]

    def first_shown(step: int) -> float | None:
        return next((t for t, current in shown if current >= step), None)

    # A step recorded shortly before the stop may wait for the termination message instead of a
    # poll (the operator stops polling a pod being deleted): only steps recorded at least the
    # target (interval + 1 s) before the stop count as live, so the stop cannot delay them.
    cutoff = stop_requested - (poll + 1)
    live = [(step, t) for step, t, _ in steps if t < cutoff]
    lags = [seen - t for step, t in live if (seen := first_shown(step)) is not None]
    last_step, last_time, _ = steps[-1]
    final_seen = first_shown(last_step)

    # Status writes while training ran live: from the first step to the cut-off.
    window = (live[0][1], cutoff)
    changed, previous = 0, None
    for arrived, status in statuses.seen:
        if status != previous and window[0] <= arrived <= window[1]:
            changed += 1
        previous = status
    sent = [t for t, _ in proxy.status_writes if window[0] <= t <= window[1]]
    # Where a lag goes: the poll cadence (time between two status writes), and a write's way
    # through the API server to a watch (the write's arrival at the proxy to the watch event).
    intervals = [b - a for a, b in itertools.pairwise(sent)]
    delivery = []
    for arrived, _status in statuses.seen:
        before = [t for t in sent if t <= arrived]
        if before and window[0] <= arrived <= window[1]:
            delivery.append(arrived - before[-1])
    minutes = (window[1] - window[0]) / 60
    return {
        "poll": poll,
        "seconds": window[1] - window[0],
        "steps": len(live),
        "lags": lags,
        "missing": len(live) - len(lags),
        "final_lag": (final_seen - last_time) if final_seen is not None else None,
        "final_step": last_step,
        "writes_sent_per_minute": len(sent) / minutes,
        "writes_changed_per_minute": changed / minutes,
        "needless_writes": len(sent) - changed,
        "polls_per_minute": 60 / poll,
        "intervals": intervals,
        "delivery": delivery,
        "step_seconds": statistics.median(s for _, _, s in steps),
        "records": steps,
    }


def print_freshness(figures: dict[str, Any]) -> None:
    lags, poll = figures["lags"], figures["poll"]
    p99 = percentile(lags, 0.99)
    print(f"Part 1: step -> TrainingJob status lag (operator as a process, poll every {poll:g} s)")
    print(f"  live training       {figures['seconds']:7.1f} s, {figures['steps']} steps recorded")
    print(f"  lag p50             {statistics.median(lags):7.3f} s")
    print(f"  lag p99             {p99:7.3f} s   (target < interval + 1 s = {poll + 1:g} s: {verdict(p99 < poll + 1)})")
    print(f"  lag max             {max(lags):7.3f} s")
    if figures["missing"]:
        print(f"  steps never shown   {figures['missing']:7d}   (overtaken: a later step was shown first)")
    if figures["final_lag"] is not None:
        print(
            f"  after the stop      step {figures['final_step']} shown {figures['final_lag']:.3f} s after its record "
            "(the stop checkpoint, through the termination message)"
        )
    intervals, delivery = figures["intervals"], figures["delivery"]
    print(
        f"  write interval      p50 {statistics.median(intervals):.3f} s, p99 {percentile(intervals, 0.99):.3f} s, "
        f"max {max(intervals):.3f} s   (poll interval + one reconcile)"
    )
    print(
        f"  write -> watch      p50 {statistics.median(delivery):.3f} s, p99 {percentile(delivery, 0.99):.3f} s"
        "   (the emulator validates each write against the CRD schema and CEL rules)"
    )
    print(
        f"  status writes       {figures['writes_sent_per_minute']:7.1f} /min sent, "
        f"{figures['writes_changed_per_minute']:.1f} /min changed the status, "
        f"{figures['needless_writes']} changed nothing ({figures['polls_per_minute']:.0f} polls/min)"
    )


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


# Part 2 ------------------------------------------------------------------------------------------


def full_reporter(folder: Path) -> Reporter:
    """A serving Reporter whose report is as large as a long run's: a 200-point curve, 3 checkpoints."""
    reporter = Reporter(port=0, metrics_log=folder / "metrics.jsonl", termination_log=None).start()
    reporter.plan(total_epochs=100, total_steps=100_000)
    reporter.running()
    for step in range(1, 5001):
        reporter.step(step, 2.0 / step**0.1, epoch=1 + step // 1000, learning_rate=1e-4, tokens=4096, samples=8)
    for index in (1, 2, 3):
        reporter.checkpoint(
            CheckpointReport(
                id=f"ckpt-epoch-{index}", epoch=index, step=index * 1000, loss=1.0, created_at=_now(), size_bytes=1
            )
        )
    return reporter


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


POLLER = """
import sys, time, urllib.request
url, interval, count, flag = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
done = 0
while count == 0 or done < count:
    state = open(flag).read()
    if state == "stop":
        break
    if state == "on":
        urllib.request.urlopen(url, timeout=5).read()
        done += 1
    time.sleep(interval)
"""


def reporting_costs(folder: Path, polls: int) -> tuple[float, float]:
    """Seconds per ``Reporter.step`` call, and CPU seconds this process spends per ``GET /progress``."""
    reporter = full_reporter(folder)
    try:
        calls = 20_000
        started = time.perf_counter()
        for step in range(5001, 5001 + calls):
            reporter.step(step, 1.5, epoch=6, learning_rate=1e-4, tokens=4096, samples=8, seconds=0.05)
        per_step = (time.perf_counter() - started) / calls
        flag = folder / "poll-flag"
        flag.write_text("on")
        url = f"http://127.0.0.1:{reporter.port}/progress"
        cpu = time.process_time()
        # The client is another process: only the serving shows in this process's CPU time.
        subprocess.run([sys.executable, "-c", POLLER, url, "0", str(polls), str(flag)], check=True)
        per_poll = (time.process_time() - cpu) / polls
    finally:
        reporter.close()
    return per_step, per_poll


def example_step_maker() -> Callable[[], float]:
    """A function doing one real LoRA training step of the example model (batch 8, length <= 64)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(42)
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(TINY_MODEL),
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)
    texts = [f"{r['prompt']}{r['completion']}" for r in RECORDS]
    batches = []
    for start in range(0, len(texts) - 7, 8):
        encoded = tokenizer(texts[start : start + 8], padding=True, truncation=True, max_length=64, return_tensors="pt")
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        batches.append((encoded, labels))
    position = [0]

    def step() -> float:
        encoded, labels = batches[position[0] % len(batches)]
        position[0] += 1
        loss = model(**encoded, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return float(loss.item())

    return step


def ab_steps(folder: Path, pairs: int, block_steps: int, poll: float) -> dict[str, list[float]]:
    """Real steps in blocks, off and on in turn (off on, on off, off on, ...): the seconds of every
    step, by mode; the off steps also by the parity of their pair (for the noise floor); and the
    seconds of every ``Reporter.step`` call between real steps (``call``: caches cold, not a loop)."""
    step = example_step_maker()
    for _ in range(5):
        step()  # first-call costs
    reporter = full_reporter(folder)
    flag = folder / "ab-flag"
    flag.write_text("off")
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, f"http://127.0.0.1:{reporter.port}/progress", str(poll), "0", str(flag)]
    )
    times: dict[str, list[float]] = {"off": [], "on": [], "off-even": [], "off-odd": [], "call": []}
    done = 5001
    try:
        for pair in range(pairs):
            for reporting in (False, True) if pair % 2 == 0 else (True, False):
                flag.write_text("on" if reporting else "off")
                for _ in range(block_steps):
                    started = time.perf_counter()
                    loss = step()
                    if reporting:
                        done += 1
                        called = time.perf_counter()
                        reporter.step(
                            done, loss, epoch=6, learning_rate=0.01, tokens=400, samples=8, seconds=called - started
                        )
                        times["call"].append(time.perf_counter() - called)
                    seconds = time.perf_counter() - started
                    times["on" if reporting else "off"].append(seconds)
                    if not reporting:
                        times["off-even" if pair % 2 == 0 else "off-odd"].append(seconds)
    finally:
        flag.write_text("stop")
        poller.wait(timeout=30)
        reporter.close()
    return times


def print_overhead(
    per_step: float, per_poll: float, poll: float, ab: dict[str, list[float]], trainer_step: float | None
) -> None:
    step_time = statistics.median(ab["off"])
    in_situ = statistics.mean(ab["call"])
    call = max(per_step, in_situ)  # the dearer of the two measurements
    overhead = call / step_time + per_poll / poll
    print("Part 2: the trainer's step time with reporting on and off")
    print(
        f"  Reporter.step       {per_step * 1e6:7.1f} us per call in a loop, {in_situ * 1e6:.1f} us between real steps "
        "(tracker + metrics-log line; 200-point curve)"
    )
    print(f"  GET /progress       {per_poll * 1e3:7.2f} ms of CPU per poll, served by a daemon thread")
    print(f"  example step        {step_time * 1e3:7.1f} ms (tiny Llama LoRA, batch 8; median of the off steps)")
    if trainer_step is not None:
        print(
            f"  (the trainer's own  {trainer_step * 1e3:7.1f} ms per step in part 1, beside the operator and emulator)"
        )
    print(
        f"  overhead (costs)    {100 * overhead:7.3f} %  = {call * 1e6:.1f} us / {step_time * 1e3:.1f} ms"
        f" + {per_poll * 1e3:.2f} ms / {poll:g} s   (target < 1%: {verdict(overhead < 0.01)})"
    )
    median = statistics.median
    print(
        f"  direct A/B          on/off {median(ab['on']) / median(ab['off']):.4f}: median step time of "
        f"{len(ab['on'])} steps on against {len(ab['off'])} off (blocks of 10, alternating)"
    )
    print(
        f"  noise floor         off/off {median(ab['off-even']) / median(ab['off-odd']):.4f}: the off steps of even "
        "pairs against those of odd pairs; an A/B difference inside it is noise"
    )
    print(
        "  (the cost accounting is the figure to quote: on a shared machine the direct A/B's noise floor is\n"
        "   often wider than the 1% to resolve; it bounds the overhead, it does not measure it)"
    )


# Main --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s poll, 15 s of training, fewer A/B blocks")
    parser.add_argument("--poll", type=float, help="the operator's progressPollSeconds (default 5; quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds of live training in part 1 (default 75; quick 15)")
    parser.add_argument("--pairs", type=int, help="A/B block pairs in part 2 (default 60; quick 20)")
    args = parser.parse_args()
    poll = args.poll or (1.0 if args.quick else 5.0)
    seconds = args.seconds or (15.0 if args.quick else 75.0)
    pairs = args.pairs or (20 if args.quick else 60)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        figures = freshness(poll, seconds, work)
        print_freshness(figures)
        per_step, per_poll = reporting_costs(work, polls=200)
        ab = ab_steps(work, pairs=pairs, block_steps=10, poll=poll)
        print_overhead(per_step, per_poll, poll, ab, figures["step_seconds"])
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
