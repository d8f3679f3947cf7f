"""Benchmark: how fast the operator turns TrainingJobs into PyTorchJobs.

    python bench/operator_reconcile.py [--jobs 500]

One run, one emulator (tests/kube), figures printed:

1. the emulator's raw create rate: the same TrainingJobs created with no operator running
   (validated against the CRDs, as every write is), then deleted; measured before and after the
   operator phase, and the higher one is the reference (a shared machine's load drifts);
2. the operator (``python -m tensorone_operator``, a separate process, as deployed) started against
   the emulator; the jobs created again at full speed; a watch records when each job's status
   first shows its child (``status.childName`` is written only after the PyTorchJob exists) and a
   phase;
3. jobs reconciled per second (jobs / time from the first create to the last job done), p50 and
   p99 of create -> child-created-and-status-set, and the operator's peak RSS (VmHWM);
4. the same number of jobs created while no operator runs, then drained by a restarted operator
   (which resumes the earlier jobs too): jobs per second from its start, free of the create
   loop's pace.

Targets: reconcile rate >= 25% of the raw create rate, p99 < 2 s, RSS < 250 MB.
Not a timed test: run it by hand; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.factories import API, dataset, gpu_node, training_job  # noqa: E402
from tests.kube.emulator import FaithfulEmulator  # noqa: E402
from tests.kube.server import EmulatorServer  # noqa: E402
from tests.operator.process import OperatorProcess  # noqa: E402


def create_jobs(cluster: EmulatorServer, namespace: str, count: int) -> dict[str, float]:
    """Create ``count`` TrainingJobs one after the other; return name -> monotonic create time."""
    created: dict[str, float] = {}
    for index in range(count):
        name = f"job-{index:04d}"
        cluster.api.create(training_job(name=name, namespace=namespace, gpuType="a100", gpusPerWorker=2))
        created[name] = time.monotonic()
    return created


def raw_create_rate(cluster: EmulatorServer, count: int) -> float:
    """Jobs created per second with no operator running (then deleted again)."""
    started = time.monotonic()
    create_jobs(cluster, "raw", count)
    rate = count / (time.monotonic() - started)
    for index in range(count):
        cluster.api.delete(API, "TrainingJob", f"job-{index:04d}", "raw")
    return rate


def watch_done(
    cluster: EmulatorServer, namespace: str, count: int, done: dict[str, float], stop: threading.Event
) -> None:
    """Record when each job's status first has childName and a phase (from a watch stream)."""
    url = f"{cluster.url}/apis/{API}/namespaces/{namespace}/trainingjobs?watch=true&timeoutSeconds=600"
    with urllib.request.urlopen(url, timeout=700) as stream:
        for line in stream:
            if stop.is_set():
                return
            if not line.strip():
                continue
            obj = json.loads(line)["object"]
            status = obj.get("status") or {}
            name = obj["metadata"]["name"]
            if status.get("childName") and status.get("phase") and name not in done:
                done[name] = time.monotonic()
                if len(done) >= count:
                    return


def watch_in_background(
    cluster: EmulatorServer, namespace: str, count: int, done: dict[str, float]
) -> threading.Thread:
    """Start recording done times of a namespace's jobs; returns once the watch is open."""
    watcher = threading.Thread(
        target=watch_done, args=(cluster, namespace, count, done, threading.Event()), daemon=True
    )
    watcher.start()
    time.sleep(0.3)  # the watch is open
    return watcher


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument(
        "--no-validation",
        action="store_true",
        help="serve writes without CRD validation, to see the operator's own capacity (the emulator's CEL "
        "evaluation in Python costs 20-50 ms a write and is otherwise the bottleneck)",
    )
    args = parser.parse_args()
    count = args.jobs

    emulator = FaithfulEmulator(validate_writes=not args.no_validation)
    with EmulatorServer(emulator) as cluster, tempfile.TemporaryDirectory() as workdir:
        cluster.api.create(gpu_node())
        for namespace in ("raw", "bench"):
            cluster.api.create(dataset(namespace=namespace))

        # 1. Raw create rate, no operator (measured again after the operator ran, because a
        # shared machine's load drifts; the ratio is taken against the higher of the two).
        raw_rates = [raw_create_rate(cluster, count)]

        # 2. The operator as a process, as deployed; the jobs created while it runs.
        operator = OperatorProcess(cluster.url, Path(workdir), {"progressPollSeconds": 5}, log_level="WARNING")
        done: dict[str, float] = {}
        with operator:
            watcher = watch_in_background(cluster, "bench", count, done)
            created = create_jobs(cluster, "bench", count)
            create_seconds = max(created.values()) - min(created.values())
            watcher.join(timeout=300)
            rss = operator.peak_rss_mb()

        # 3. A backlog: jobs created while no operator runs, drained by a restarted operator
        # (which also resumes the jobs of step 2). Throughput without the create loop's pace.
        cluster.api.create(dataset(namespace="backlog"))
        create_jobs(cluster, "backlog", count)
        drained: dict[str, float] = {}
        watcher = watch_in_background(cluster, "backlog", count, drained)
        restarted = time.monotonic()
        with operator:  # the same process settings, started again
            watcher.join(timeout=300)
            rss = max(rss, operator.peak_rss_mb())
        drain_rate = len(drained) / (max(drained.values(), default=restarted) - restarted)
        raw_rates.append(raw_create_rate(cluster, count))
        raw_rate = max(raw_rates)

        if len(done) < count or len(drained) < count:
            print(f"only {len(done)} and {len(drained)} of {count} jobs were reconciled; the log:", file=sys.stderr)
            print(operator.log(), file=sys.stderr)
            return 1
        latencies = sorted(done[name] - created[name] for name in created)
        elapsed = max(done.values()) - min(created.values())
        rate = count / elapsed
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, round(0.99 * len(latencies)) - 1)]
        print(f"jobs                              {count}  (CRD validation of writes: {not args.no_validation})")
        print(
            f"emulator raw create rate          {raw_rate:8.1f} jobs/s  (before / after: {raw_rates[0]:.1f} / {raw_rates[1]:.1f})"
        )
        print(f"create rate with operator running {count / create_seconds:8.1f} jobs/s")
        print(
            f"reconcile rate                    {rate:8.1f} jobs/s  ({100 * rate / raw_rate:.0f}% of raw; target >= 25%)"
        )
        print(
            f"backlog drain rate                {drain_rate:8.1f} jobs/s  ({100 * drain_rate / raw_rate:.0f}% of raw; "
            "a restarted operator, from its start)"
        )
        print(f"create -> child + status  p50     {p50:8.3f} s")
        print(f"create -> child + status  p99     {p99:8.3f} s  (target < 2 s)")
        in_order = [done[name] - created[name] for name in sorted(created, key=created.__getitem__)]
        quarter = max(1, len(in_order) // 4)
        medians = [statistics.median(in_order[i : i + quarter]) for i in range(0, len(in_order), quarter)][:4]
        print(f"  median by creation quarter      {'  '.join(f'{m:.3f}' for m in medians)} s")
        print(f"  max                             {latencies[-1]:8.3f} s")
        print(f"operator peak RSS                 {rss:8.1f} MB  (target < 250 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
