"""Every request the running operator sends is one of ``tensorone_operator.access``, and every call
of that list is sent: the real operator (kopf and its own client) against an emulator that records
what it is asked, through a job's whole life, in cluster-wide and namespaced mode."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import aiohttp.web
import pytest
from tensorone_operator.access import API_CALLS, Caller, WatchMode, required_access
from tensorone_operator.config import OperatorConfig
from tensorone_operator.kueue import PENDING_WORKLOADS, VISIBILITY_GROUP

from tests.kube import kueue
from tests.kube.emulator import FaithfulEmulator
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import PYTORCHJOB, TJ, child_job, dataset, event_with, training_job
from tests.operator.runner import OperatorThread

# (apiGroup, resource[/subresource], verb)
Call = tuple[str, str, str]
RESOURCE_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?/(?P<resource>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<subresource>[^/]+))?)?$"
)
METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def api_call(method: str, path: str, watch: bool) -> Call | None:
    """The RBAC verb and resource of a request; None for discovery (granted to every account)."""
    match = RESOURCE_PATH.match(path)
    if match is None:
        return None
    if match["core"] is None and match["group"] is None:
        return None
    resource = match["resource"] + (f"/{match['subresource']}" if match["subresource"] else "")
    read = "watch" if watch else ("get" if match["name"] else "list")
    verb = read if method == "GET" else METHOD_VERBS[method]
    return (match["group"] or "", resource, verb)


class RecordingEmulator(FaithfulEmulator):
    """The emulator, noting the API call of every request the operator sends (kopf's and its own
    client's, told apart from the test's by their User-Agent)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.calls: set[Call] = set()
        self._calls_lock = threading.Lock()

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        agent = raw_request.headers.get("User-Agent", "")
        if agent.startswith("kopf/") or "aiohttp/" in agent:
            call = api_call(raw_request.method, raw_request.path, raw_request.query.get("watch") == "true")
            if call is not None:
                with self._calls_lock:
                    self.calls.add(call)
        return await super().__call__(raw_request)


def listed_calls(mode: WatchMode, check_gpu_nodes: bool) -> set[Call]:
    """The calls the list says an operator in this mode sends (admission's needs are no request)."""
    sent = [call for call in API_CALLS if call.caller is not Caller.ADMISSION and call.needed(mode, check_gpu_nodes)]
    return {(call.group, call.resource, verb) for call in sent for verb in call.verbs}


def live_a_job_through(api: Any, namespace: str, sent: Callable[[Call], bool]) -> None:
    """A job's whole life as far as the operator's calls go: its Dataset, its children, a stop that
    names a checkpoint (ConfigMap and child patched), its deletion (children cleaned up), and a GPU
    job the GPU check holds (a Warning Event)."""
    api.create(dataset(namespace=namespace))
    api.create(training_job(namespace=namespace))
    wait_for(lambda: child_job(api, namespace=namespace), "the child PyTorchJob")
    api.patch(TJ, "TrainingJob", "llama", {"spec": {"suspend": True, "resumeFrom": "ckpt-epoch-1"}}, namespace)
    wait_for(
        lambda: api.get(PYTORCHJOB, "PyTorchJob", "llama", namespace)["spec"]["runPolicy"]["suspend"] is True,
        "the child suspended",
    )
    api.delete(TJ, "TrainingJob", "llama", namespace)
    wait_for(lambda: api.find(TJ, "TrainingJob", "llama", namespace) is None, "the job deleted")
    api.create(training_job("on-gpu", namespace=namespace, gpuType="l4"))
    wait_for(lambda: event_with(api, "INSUFFICIENT_RESOURCES", "Warning", "on-gpu", namespace))
    # A job that names a Kueue queue: its Workload read (and its position asked), then
    # deactivated by a stop.
    api.create(training_job("queued", namespace=namespace, labels={kueue.QUEUE_LABEL: "team"}))
    child = wait_for(lambda: api.find(PYTORCHJOB, "PyTorchJob", "queued", namespace), "the queued child")
    meta = child["metadata"]
    name = kueue.workload_name("PyTorchJob", "kubeflow.org", "queued", meta["uid"])
    workload: dict[str, Any] = {
        "apiVersion": kueue.API,
        "kind": "Workload",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {kueue.JOB_UID_LABEL: meta["uid"]},
        },
        "spec": {
            "queueName": "team",
            "podSets": [{"name": "master", "count": 1, "template": {"spec": {"containers": [{"name": "c"}]}}}],
        },
    }
    api.create(workload)
    # The position is asked of the visibility API (which the emulator does not serve: a 404).
    wait_for(lambda: sent((VISIBILITY_GROUP, PENDING_WORKLOADS, "get")), "the position asked")
    api.patch(TJ, "TrainingJob", "queued", {"spec": {"suspend": True}}, namespace)
    wait_for(
        lambda: api.get(kueue.API, "Workload", name, namespace)["spec"].get("active") is False,
        "the Workload deactivated",
    )


@pytest.mark.parametrize("mode", list(WatchMode))
def test_the_operator_sends_exactly_the_listed_api_calls(mode: WatchMode) -> None:
    namespace = "team-a"
    config = OperatorConfig(progress_poll_seconds=0.5, check_gpu_nodes=True)
    emulator = RecordingEmulator()
    with EmulatorServer(emulator) as cluster:
        cluster.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        namespaces = [namespace] if mode is WatchMode.NAMESPACED else None
        with OperatorThread(cluster, config, namespaces):
            live_a_job_through(cluster.api, namespace, lambda call: call in emulator.calls)
    listed = listed_calls(mode, check_gpu_nodes=True)
    assert sorted(emulator.calls - listed) == [], "sent, and not in tensorone_operator.access"
    assert sorted(listed - emulator.calls) == [], "in tensorone_operator.access, and never sent"


def test_the_list_names_only_verbs_rbac_knows() -> None:
    verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
    assert all(call.verbs <= verbs and call.why for call in API_CALLS)
    assert required_access(WatchMode.CLUSTER_WIDE, False).keys() <= required_access(WatchMode.NAMESPACED, True).keys()
