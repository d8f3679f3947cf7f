"""Benchmark: the operator's memory with thousands of TrainingJobs and large Datasets, over time.

    python bench/operator_memory.py                    # 5,000 jobs, 500 Datasets of 1 MB, an hour of traffic
    python bench/operator_memory.py --quick            # 500 jobs, 50 Datasets, 3 minutes of traffic
    python bench/operator_memory.py --quick --tracemalloc 10   # where the operator's memory is

One emulator (tests/kube) and the operator as deployed (``python -m tensorone_operator``, a separate
process, default configuration but for the report port):

1. set-up: ``--datasets`` Datasets of about 1 MB of inline records each, a few small Datasets
   (uri source) for most jobs, and ``--jobs`` CPU TrainingJobs (``--inline-share`` of them on the
   large Datasets, so their records are copied into ConfigMaps); once the operator has made each
   job's children, the bench plays the Training Operator and the kubelet: every child Running
   and its Master pod running at 127.0.0.1, serving /progress from the bench's report server;
2. traffic for ``--duration`` seconds: the operator polls every job's /progress each
   ``progressPollSeconds`` (5 s); the report server answers as a trainer does, with a step that
   advances every ``--step-seconds`` (so each job's status changes), a loss curve of up to 200
   points and the latest checkpoints; the bench also moves ``--child-moves`` children a second
   (Restarting on, then off), as the Training Operator does when a pod restarts.

The operator's RSS is sampled every ``--sample`` seconds and printed as it goes (seconds since the
start, phase, RSS in MB); then the peak (VmHWM), the RSS when the traffic started and when it
ended, and the slope over the traffic (MB per hour). Target: under 300 MB, flat.

The emulator keeps a bounded history (as etcd compacts) and does not validate writes against the
CRDs: its CEL evaluation in Python (20-50 ms a write) would otherwise set the pace of every write.
``--tracemalloc N`` runs the operator under tracemalloc (N frames; it slows the operator and
inflates its RSS) and writes the top allocations to ``--tracemalloc-out`` every ``--sample``
seconds. ``--memray FILE`` runs it under memray instead (installed beside the project, not a
dependency), which also sees native allocations (C and Rust extensions): ``memray summary FILE``.
Not a timed test: run it by hand; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tensorone_operator.builders import CONTAINER_NAME  # noqa: E402

from tensorone.api.report import parse_report  # noqa: E402
from tensorone.api.v1alpha1.trainingjob import MAX_HISTORY_POINTS  # noqa: E402
from tests import factories  # noqa: E402
from tests.factories import API, PYTORCHJOB, dataset, training_job  # noqa: E402
from tests.kube.emulator import FaithfulEmulator  # noqa: E402
from tests.kube.loopback import free_port  # noqa: E402
from tests.kube.server import ApiClient, ApiStatusError, EmulatorServer  # noqa: E402
from tests.kube.training_operator import ReplicaStatus, move_child  # noqa: E402

NAMESPACE = "bench"
SMALL_DATASETS = 10
RECORD_TEXT = 990  # characters of each of 1000 records: a Dataset of about 1 MB
HISTORY_POINTS = 200  # what the trainer's report carries of its loss curve
STARTED = datetime(2026, 1, 1, tzinfo=UTC)

# The operator under tracemalloc (started after the imports, which it would slow tenfold): a thread
# writes the top allocations to a file now and then.
TRACED_OPERATOR = """
import sys, threading, time, tracemalloc
from tensorone_operator.__main__ import main

def dump(path, every):
    while True:
        time.sleep(every)
        snapshot = tracemalloc.take_snapshot()
        total = sum(stat.size for stat in snapshot.statistics("filename"))
        lines = [f"traced {total / 2**20:.1f} MiB", "", "by line:"]
        lines += [str(stat) for stat in snapshot.statistics("lineno")[:25]]
        lines += ["", "by file:"]
        lines += [str(stat) for stat in snapshot.statistics("filename")[:25]]
        lines += ["", "by traceback:"]
        for stat in snapshot.statistics("traceback")[:10]:
            lines += [f"{stat.size / 2**20:.1f} MiB in {stat.count} blocks", *stat.traceback.format(), ""]
        with open(path, "w") as out:
            out.write("\\n".join(lines))

path, every, frames = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
tracemalloc.start(frames)
threading.Thread(target=dump, args=(path, every), daemon=True).start()
sys.exit(main(sys.argv[4:]))
"""


# -- the trainers' report server (its own process) ----------------------------------------------


def report_at(step: int, step_seconds: float) -> bytes:
    """A running trainer's /progress answer at ``step``, as the trainer writes it."""
    first = max(1, step - HISTORY_POINTS + 1)
    history = [{"step": s, "loss": round(3.0 / math.sqrt(s), 6)} for s in range(first, step + 1)]
    checkpoints = [
        {
            "id": f"ckpt-step-{s}",
            "epoch": s // 1000,
            "step": s,
            "loss": round(3.0 / math.sqrt(s), 6),
            "createdAt": (STARTED + timedelta(seconds=s * step_seconds)).isoformat(),
            "sizeBytes": 350_000_000,
            "reason": "step",
        }
        for s in range(max(100, step - step % 100 - 200), step + 1, 100)
        if s > 0
    ]
    now = STARTED + timedelta(seconds=step * step_seconds)
    report = {
        "state": "running",
        "epoch": step // 1000 + 1,
        "totalEpochs": 1000,
        "step": step,
        "totalSteps": 1_000_000,
        "loss": history[-1]["loss"],
        "bestLoss": history[-1]["loss"],
        "learningRate": 2e-4,
        "tokensPerSecond": 3400.0,
        "samplesPerSecond": 12.5,
        "memoryBytes": 40_000_000_000,
        "startedAt": STARTED.isoformat(),
        "updatedAt": now.isoformat(),
        "elapsedSeconds": step * step_seconds,
        "stepSeconds": step_seconds,
        "checkpoints": checkpoints,
        "lossHistory": history,
    }
    return json.dumps(report).encode()


def serve_reports(port: int, step_seconds: float) -> None:
    """Answer GET /progress for every job with the step the wall clock has reached."""
    import aiohttp.web

    started = time.monotonic()
    cache: dict[int, bytes] = {}

    async def progress(_: aiohttp.web.Request) -> aiohttp.web.Response:
        step = 1 + int((time.monotonic() - started) / step_seconds)
        if step not in cache:
            cache.clear()
            cache[step] = report_at(step, step_seconds)
        return aiohttp.web.Response(body=cache[step], content_type="application/json")

    app = aiohttp.web.Application()
    app.router.add_get("/progress", progress)
    aiohttp.web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the operator and its RSS --------------------------------------------------------------------


def proc_status_mb(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status (VmRSS, VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssCurve:
    """Samples a process's RSS every ``every`` seconds in a thread, printing each sample."""

    def __init__(self, pid: int, every: float) -> None:
        self.pid, self.every = pid, every
        self.started = time.monotonic()
        self.phase = "set-up"
        self.samples: list[tuple[float, str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssCurve:
        print(f"{'seconds':>8}  {'phase':<8}  {'RSS MB':>7}", flush=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> float:
        rss = proc_status_mb(self.pid, "VmRSS")
        moment = time.monotonic() - self.started
        self.samples.append((moment, self.phase, rss))
        print(f"{moment:8.0f}  {self.phase:<8}  {rss:7.1f}", flush=True)
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def follow_rounds(metrics_port: int) -> tuple[float, float]:
    """The follow loop's rounds so far, from the operator's /metrics: their count and total seconds."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("tensorone_operator_follow_round_seconds_"):
            name, value = line.split()
            values[name.rsplit("_", 1)[1]] = float(value)
    return values.get("count", 0.0), values.get("sum", 0.0)


def start_operator(
    env: dict[str, str],
    log: Path,
    tracemalloc: int,
    traced_out: Path,
    every: float,
    *,
    metrics_port: int,
    memray: Path | None = None,
) -> subprocess.Popen[bytes]:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    options = ["--liveness", liveness, "--metrics-port", str(metrics_port)]
    if tracemalloc:
        argv = [sys.executable, "-c", TRACED_OPERATOR, str(traced_out), str(every), str(tracemalloc)]
    elif memray is not None:
        # Every allocation, Python's and native (C and Rust extensions), for `memray summary FILE`.
        argv = [sys.executable, "-m", "memray", "run", "--trace-python-allocators", "-f", "-o", str(memray)]
        argv += ["-m", "tensorone_operator"]
    else:
        argv = [sys.executable, "-m", "tensorone_operator"]
    with log.open("a") as stderr:
        process = subprocess.Popen([*argv, *options], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(liveness, timeout=2):
                return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the operator did not start; its log:\n{log.read_text()[-3000:]}")


# -- the cluster's side: Datasets, jobs, the Training Operator and the kubelet -------------------


def large_dataset(name: str) -> dict[str, Any]:
    """A Dataset of 1000 inline records, about 1 MB."""
    records = [{"text": f"{index:04d} " + "x" * (RECORD_TEXT - 5)} for index in range(1000)]
    return dataset(name, NAMESPACE, records=records)


def in_parallel(work: Callable[[int], None], count: int, threads: int = 4) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(work, range(count)):
            pass


def job_names(count: int) -> list[str]:
    return [f"job-{index:05d}" for index in range(count)]


def wait_until(what: str, check: Callable[[], int], goal: int, timeout: float) -> None:
    """Poll ``check`` (a count) until it reaches ``goal``."""
    deadline = time.monotonic() + timeout
    count = check()
    while count < goal:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {count} of {goal} after {timeout:.0f} s")
        time.sleep(2)
        count = check()


def with_children(api: ApiClient) -> int:
    return sum(1 for job in api.list(API, "TrainingJob", NAMESPACE) if (job.get("status") or {}).get("childName"))


def running(api: ApiClient) -> int:
    return sum(
        1 for job in api.list(API, "TrainingJob", NAMESPACE) if (job.get("status") or {}).get("phase") == "Running"
    )


def start_master_pod(api: ApiClient, name: str) -> None:
    """Play the Training Operator and the kubelet for one job: its child Running, its Master pod
    running at 127.0.0.1 (the report port comes from the child's pod template)."""
    child = api.get(PYTORCHJOB, "PyTorchJob", name, NAMESPACE)
    template = child["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    labels = {
        **(template.get("metadata", {}).get("labels") or {}),
        "training.kubeflow.org/job-name": name,
        "training.kubeflow.org/replica-type": "master",
        "training.kubeflow.org/replica-index": "0",
        "training.kubeflow.org/job-role": "master",
    }
    pod_name = f"{name}-master-0"
    api.create(factories.pod(pod_name, child, spec={**template["spec"], "nodeName": "bench-node"}, labels=labels))
    container = next(c for c in template["spec"]["containers"] if c["name"] == CONTAINER_NAME)
    status = factories.running_pod_status(container, pod_ip="127.0.0.1", started_at=factories.now())
    api.patch("v1", "Pod", pod_name, {"status": status}, NAMESPACE, subresource="status")
    move_child(api, name, NAMESPACE, "Running", replicas={"Master": ReplicaStatus(active=1)})


def move_children(api: ApiClient, names: list[str], per_second: float, until: float) -> tuple[int, int]:
    """Restarting on, then off, for random children, ``per_second`` moves a second; returns the
    count, and how many of them the emulator did not take (a request that timed out or failed: the
    traffic goes on, the operator is what is measured)."""
    moves, failed, restarting = 0, 0, set[str]()
    rng = random.Random(7)
    while time.monotonic() < until and per_second > 0:
        tick = time.monotonic()
        for _ in range(max(1, round(per_second))):
            name = rng.choice(names)
            states = ("Running",) if name in restarting else ("Running", "Restarting")
            try:
                move_child(api, name, NAMESPACE, *states, replicas={"Master": ReplicaStatus(active=1)})
            except (OSError, ApiStatusError) as error:
                failed += 1
                print(f"  a child move was not taken: {type(error).__name__}: {error}", flush=True)
            else:
                restarting.symmetric_difference_update({name})
            moves += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    if per_second <= 0:
        time.sleep(max(0.0, until - time.monotonic()))
    return moves, failed


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return float("nan")
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_r = sum(r for _, r in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    return 3600 * sum((t - mean_t) * (r - mean_r) for t, r in samples) / spread if spread else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 jobs, 50 Datasets, 3 minutes of traffic")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--datasets", type=int, help="Datasets of about 1 MB of inline records")
    parser.add_argument("--inline-share", type=float, default=0.01, help="share of jobs on the large Datasets")
    parser.add_argument("--duration", type=float, help="seconds of traffic")
    parser.add_argument("--step-seconds", type=float, default=10.0, help="the trainers' seconds per step")
    parser.add_argument("--child-moves", type=float, default=2.0, help="child status changes a second")
    parser.add_argument("--sample", type=float, help="seconds between RSS samples")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--tracemalloc-out", type=Path, default=Path("operator-tracemalloc.txt"))
    parser.add_argument("--memray", type=Path, metavar="FILE", help="run the operator under memray (when installed)")
    args = parser.parse_args()
    jobs = args.jobs or (500 if args.quick else 5000)
    datasets = args.datasets if args.datasets is not None else (50 if args.quick else 500)
    duration = args.duration or (180.0 if args.quick else 3600.0)
    every = args.sample or (10.0 if args.quick else 60.0)

    report_port = free_port()
    parse_report(report_at(250, args.step_seconds), now=datetime.now(UTC))  # the answer is one the operator accepts
    reports = multiprocessing.get_context("spawn").Process(
        target=serve_reports, args=(report_port, args.step_seconds), daemon=True
    )
    reports.start()
    emulator = FaithfulEmulator(validate_writes=False, event_window=20_000)
    with EmulatorServer(emulator) as cluster, tempfile.TemporaryDirectory() as workdir:
        api = cluster.api
        kubeconfig = cluster.write_kubeconfig(Path(workdir) / "kubeconfig")
        config_path = Path(workdir) / "config.yaml"
        config_path.write_text(f"reportPort: {report_port}\n")
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "TENSORONE_OPERATOR_CONFIG": str(config_path),
            "TENSORONE_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO), str(REPO / "operator"), os.environ.get("PYTHONPATH")])
            ),
        }
        log = Path(workdir) / "operator.log"
        memray = args.memray.resolve() if args.memray else None
        metrics_port = free_port()
        operator = start_operator(
            env, log, args.tracemalloc, args.tracemalloc_out.resolve(), every, metrics_port=metrics_port, memray=memray
        )
        names = job_names(jobs)
        inline_jobs = round(jobs * args.inline_share) if datasets else 0
        try:
            with RssCurve(operator.pid, every) as curve:
                set_up_started = time.monotonic()

                def create_dataset(index: int) -> None:
                    api.create(large_dataset(f"large-{index:04d}"))

                in_parallel(create_dataset, datasets)
                for index in range(SMALL_DATASETS):
                    source = {"uri": f"https://data.example.com/chat-{index}.jsonl"}
                    api.create(dataset(f"small-{index}", NAMESPACE, source=source))

                def create_job(index: int) -> None:
                    data = f"large-{index % datasets:04d}" if index < inline_jobs else f"small-{index % SMALL_DATASETS}"
                    api.create(training_job(names[index], NAMESPACE, datasetId=data))

                in_parallel(create_job, jobs)
                wait_until("jobs with children", lambda: with_children(api), jobs, timeout=120 + jobs)
                in_parallel(lambda i: start_master_pod(api, names[i]), jobs)
                wait_until("jobs Running", lambda: running(api), jobs, timeout=120 + jobs)
                set_up_seconds = time.monotonic() - set_up_started
                curve.phase = "traffic"
                start_rss = curve.sample()
                traffic_started = time.monotonic()
                start_cpu, start_rounds = cpu_seconds(operator.pid), follow_rounds(metrics_port)
                moves, failed_moves = move_children(api, names, args.child_moves, traffic_started + duration)
                end_rss = curve.sample()
                cpu = cpu_seconds(operator.pid) - start_cpu
                end_rounds = follow_rounds(metrics_port)
                rounds = end_rounds[0] - start_rounds[0]
                round_seconds = (end_rounds[1] - start_rounds[1]) / rounds if rounds else float("nan")
            peak = proc_status_mb(operator.pid, "VmHWM")
        finally:
            stop_started = time.monotonic()
            operator.terminate()
            try:
                operator.wait(timeout=120)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
            stop_seconds = time.monotonic() - stop_started
            reports.terminate()
        writes = sum(
            1 for job in api.list(API, "TrainingJob", NAMESPACE) if (job.get("status") or {}).get("lossHistory")
        )
        traffic = [(t, rss) for t, phase, rss in curve.samples if phase == "traffic"]
        print()
        print(
            f"jobs {jobs} ({inline_jobs} on the large Datasets), Datasets {datasets} x ~1 MB + {SMALL_DATASETS} small"
        )
        print(
            f"set-up {set_up_seconds:.0f} s; traffic {duration:.0f} s: polls every 5 s, a step every {args.step_seconds:g} s, {moves} child moves ({failed_moves} not taken)"
        )
        print(f"jobs whose status shows the trainer's loss curve: {writes} of {jobs}")
        print(f"operator RSS at the start of the traffic {start_rss:7.1f} MB, at its end {end_rss:7.1f} MB")
        print(
            f"operator RSS during the traffic: max {max(r for _, r in traffic):7.1f} MB, slope {slope_mb_per_hour(traffic):+.1f} MB/h"
        )
        filled = [(t, rss) for t, rss in traffic if t - traffic[0][0] >= MAX_HISTORY_POINTS * args.step_seconds]
        if len(filled) >= 2:
            print(
                f"  once the status curves are full ({MAX_HISTORY_POINTS * args.step_seconds:.0f} s in): "
                f"{filled[0][1]:.1f} -> {filled[-1][1]:.1f} MB, max {max(r for _, r in filled):.1f} MB, "
                f"slope {slope_mb_per_hour(filled):+.1f} MB/h"
            )
        print(f"operator peak RSS (VmHWM)                {peak:7.1f} MB  (target < 300 MB, flat)")
        print(
            f"operator CPU during the traffic: {cpu:.0f} s ({cpu / duration:.0%} of a core); "
            f"a follow round took {round_seconds:.1f} s on average (every job is polled once a round)"
        )
        stopped = "killed after" if operator.returncode == -9 else "ended in"
        print(f"operator on SIGTERM: {stopped} {stop_seconds:.0f} s")
        if args.tracemalloc:
            print(f"tracemalloc top allocations: {args.tracemalloc_out}")
        errors = [line for line in log.read_text().splitlines() if "Traceback" in line or " ERROR " in line]
        if errors:
            print(f"the operator logged {len(errors)} errors; the first: {errors[0][:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
