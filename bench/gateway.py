"""Benchmark: the REST gateway's requests per second and latency, in front of the emulator.

    python bench/gateway.py [--jobs 1000] [--lists 200] [--creates 200] [--clients 4]

One run, one emulator (tests/kube) holding ``--jobs`` TrainingJobs, the gateway as its own
process (``python -m tensorone.gateway``, uvicorn, as deployed), figures printed:

1. ``GET /v2/training/jobs`` (first page of 50, newest first): requests per second with
   ``--clients`` concurrent keep-alive clients, p50 and p99;
2. ``POST /v2/training/jobs`` (the reference's LLM body, a new name each): the same figures; every
   create runs the create-time checks (Dataset, GPU catalog, nodes) and the API server's validation;
3. where a list's time goes, in this process: the API server's list of every job (what the gateway
   asks for on each request), and the gateway's own filtering, sorting and rendering of one page.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

from tensorone.api.rest import job_details  # noqa: E402
from tensorone.client import Jobs, KubeApi  # noqa: E402
from tests.factories import dataset, gpu_node, training_job  # noqa: E402
from tests.gateway.process import GatewayProcess  # noqa: E402
from tests.kube.server import EmulatorServer  # noqa: E402

BODY: dict[str, Any] = json.loads((REPO / "tests" / "api" / "data" / "create-llm-lora.json").read_text())
HEADERS = {"Authorization": "Bearer bench-token"}


def measure(
    name: str, count: int, clients: int, request: Callable[[httpx.Client, int], httpx.Response], url: str
) -> None:
    """``count`` requests spread over ``clients`` threads; print rate, p50 and p99."""
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def worker(offset: int) -> None:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as http:
            for index in range(offset, count, clients):
                started = time.perf_counter()
                response = request(http, index)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code >= 400:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"{name}: {count / wall:.1f} requests/s with {clients} clients; "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        + (f"; {len(failures)} failed, first: {failures[0]}" if failures else "")
    )


def list_breakdown(cluster: EmulatorServer, rounds: int = 20) -> None:
    """The API server's list of every job vs the gateway's own work on one page."""
    kube = KubeApi(k8s.ApiClient(k8s.Configuration(host=cluster.url)))
    jobs = Jobs(kube, "default")
    fetch: list[float] = []
    whole: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        kube.list("trainingjobs", "default")
        fetch.append(time.perf_counter() - started)
        started = time.perf_counter()
        page, _ = jobs.list_objects(limit=50)
        [job_details(obj) for obj in page]
        whole.append(time.perf_counter() - started)
    fetched, total = statistics.median(fetch), statistics.median(whole)
    print(
        f"one list request's work (median of {rounds}): the API server's list of every job "
        f"{fetched * 1000:.1f} ms (HTTP, JSON); filter, sort and render one page of 50 "
        f"{(total - fetched) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="TrainingJobs in the emulator (default 1000)")
    parser.add_argument("--lists", type=int, default=200, help="list requests measured (default 200)")
    parser.add_argument("--creates", type=int, default=200, help="create requests measured (default 200)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    args = parser.parse_args()
    with EmulatorServer() as cluster, tempfile.TemporaryDirectory() as scratch:
        cluster.emulator.tokens.update({"": None, "bench-token": None})
        cluster.api.create(gpu_node())
        cluster.api.create(dataset("ds-1234567890abcdef"))
        cluster.api.create(dataset("chat"))
        started = time.perf_counter()
        for index in range(args.jobs):
            cluster.api.create(training_job(f"job-{index:05d}", datasetId="chat"))
        print(f"{args.jobs} TrainingJobs created in the emulator in {time.perf_counter() - started:.1f} s")
        list_breakdown(cluster)
        with GatewayProcess(cluster.url, log=Path(scratch) / "gateway.log") as gateway:
            measure(
                f"GET /v2/training/jobs ({args.jobs} jobs, page of 50)",
                args.lists,
                args.clients,
                lambda http, index: http.get("/v2/training/jobs"),
                gateway.url,
            )
            measure(
                "POST /v2/training/jobs",
                args.creates,
                args.clients,
                lambda http, index: http.post("/v2/training/jobs", json={**BODY, "name": f"bench-{index:05d}"}),
                gateway.url,
            )


if __name__ == "__main__":
    main()
