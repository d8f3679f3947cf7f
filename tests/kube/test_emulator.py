"""The emulator behaves like an API server where kopf and the operator depend on it."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests import factories
from tests.factories import API as TJ
from tests.kube.emulator import FaithfulEmulator, json_patch, label_selector_matches, merge_patch
from tests.kube.server import ApiStatusError, EmulatorServer


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        yield running


def config_map(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"a": "1"},
    }


def training_job(name: str) -> dict[str, Any]:
    return factories.training_job(name, config=factories.lora_config("tiny"))


def with_spec(job: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """The job with spec fields set as given, valid or not (for what the API server must refuse)."""
    return {**job, "spec": {**job["spec"], **spec}}


def test_create_stamps_server_fields_and_answers_201(server: EmulatorServer) -> None:
    request = urllib.request.Request(
        server.url + "/api/v1/namespaces/ns-a/configmaps",
        data=json.dumps(config_map("stamped", "ns-a")).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
        created = json.loads(response.read())
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert meta["generation"] == 1
    assert meta["namespace"] == "ns-a"


def test_namespace_comes_from_the_url_and_generate_name_works(server: EmulatorServer) -> None:
    body = config_map("", "")
    body["metadata"] = {"generateName": "gen-"}
    created = server.api.request("POST", "/api/v1/namespaces/ns-b/configmaps", body)
    assert created["metadata"]["namespace"] == "ns-b"
    assert created["metadata"]["name"].startswith("gen-") and len(created["metadata"]["name"]) > 4


def test_duplicate_create_is_409(server: EmulatorServer) -> None:
    server.api.create(config_map("twice"))
    with pytest.raises(ApiStatusError) as error:
        server.api.create(config_map("twice"))
    assert error.value.status == 409
    assert error.value.body["reason"] == "AlreadyExists"


def test_resource_version_grows_and_generation_follows_the_spec_only(server: EmulatorServer) -> None:
    created = server.api.create(training_job("gen"))
    rv0 = int(created["metadata"]["resourceVersion"])
    labelled = server.api.patch(TJ, "TrainingJob", "gen", {"metadata": {"labels": {"x": "y"}}})
    assert int(labelled["metadata"]["resourceVersion"]) > rv0
    assert labelled["metadata"]["generation"] == 1
    changed = server.api.patch(TJ, "TrainingJob", "gen", {"spec": {"suspend": True}})
    assert changed["metadata"]["generation"] == 2
    status = server.api.patch_status(TJ, "TrainingJob", "gen", {"phase": "Pending"})
    assert status["metadata"]["generation"] == 2
    assert int(status["metadata"]["resourceVersion"]) > int(changed["metadata"]["resourceVersion"])


def test_status_subresource_is_isolated_both_ways(server: EmulatorServer) -> None:
    server.api.create(training_job("iso"))
    server.api.patch_status(TJ, "TrainingJob", "iso", {"phase": "Running"})
    # A write to the object ignores its status ...
    after = server.api.patch(TJ, "TrainingJob", "iso", {"spec": {"suspend": True}, "status": {"phase": "Failed"}})
    assert after["status"]["phase"] == "Running" and after["spec"]["suspend"] is True
    # ... and a write to /status ignores everything else.
    after = server.api.patch(
        TJ, "TrainingJob", "iso", {"spec": {"suspend": False}, "status": {"phase": "Stopped"}}, subresource="status"
    )
    assert after["status"]["phase"] == "Stopped" and after["spec"]["suspend"] is True
    # The status of a new custom object is dropped.
    created = server.api.create({**training_job("iso2"), "status": {"phase": "Completed"}})
    assert "status" not in created


def test_failed_json_patch_test_is_422_and_stale_version_409(server: EmulatorServer) -> None:
    created = server.api.create(config_map("guarded"))
    with pytest.raises(ApiStatusError) as error:
        server.api.patch(
            "v1", "ConfigMap", "guarded", [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}]
        )
    assert error.value.status == 422
    with pytest.raises(ApiStatusError) as error:
        server.api.patch("v1", "ConfigMap", "guarded", {"metadata": {"resourceVersion": "1"}, "data": {"a": "2"}})
    assert error.value.status == 409
    ok = server.api.patch(
        "v1",
        "ConfigMap",
        "guarded",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/data/a", "value": "3"},
        ],
    )
    assert ok["data"] == {"a": "3"}


def test_lists_carry_kind_version_and_honour_label_selectors(server: EmulatorServer) -> None:
    server.api.create(config_map("sel-1", "sel", team="a", tier="x"))
    server.api.create(config_map("sel-2", "sel", team="b"))
    listing = server.api.request("GET", "/api/v1/namespaces/sel/configmaps?labelSelector=team%3Da")
    assert listing["kind"] == "ConfigMapList" and listing["apiVersion"] == "v1"
    assert int(listing["metadata"]["resourceVersion"]) > 0
    assert [item["metadata"]["name"] for item in listing["items"]] == ["sel-1"]
    names = {i["metadata"]["name"] for i in server.api.list("v1", "ConfigMap", "sel", "team in (a,b),!tier")}
    assert names == {"sel-2"}


def test_lists_come_in_chunks_that_continue_where_the_last_ended(server: EmulatorServer) -> None:
    for index in range(5):
        server.api.create(config_map(f"chunk-{index}", "chunks", kept="yes" if index != 2 else "no"))
    names: list[str] = []
    path, revisions = "/api/v1/namespaces/chunks/configmaps?labelSelector=kept%3Dyes&limit=2", set()
    while True:
        listing = server.api.request("GET", path)
        names += [item["metadata"]["name"] for item in listing["items"]]
        revisions.add(listing["metadata"]["resourceVersion"])
        token = listing["metadata"].get("continue")
        if not token:
            break
        path = f"/api/v1/namespaces/chunks/configmaps?labelSelector=kept%3Dyes&limit=2&continue={token}"
    assert names == ["chunk-0", "chunk-1", "chunk-3", "chunk-4"] and len(revisions) == 1
    with pytest.raises(ApiStatusError) as refused:
        server.api.request("GET", "/api/v1/namespaces/chunks/configmaps?continue=not-a-token")
    assert refused.value.status == 400


def test_a_bounded_history_keeps_the_newest_events_and_expires_older_watches() -> None:
    with EmulatorServer(FaithfulEmulator(event_window=3, validate_writes=False)) as bounded:
        first = bounded.api.create(config_map("h0", "w"))
        for index in range(1, 8):
            bounded.api.create(config_map(f"h{index}", "w"))
        [expired] = _watch(bounded, f"resourceVersion={first['metadata']['resourceVersion']}", 1)
        assert expired["type"] == "ERROR" and expired["object"]["code"] == 410
        assert expired["object"]["reason"] == "Expired"
        assert expired["object"]["message"].startswith("too old resource version: ")
        assert bounded.emulator.versions("v1", "ConfigMap", "w", "h7") == []
        assert len(bounded.api.list("v1", "ConfigMap", "w")) == 8


def test_writes_of_our_kinds_are_validated_against_the_crds(server: EmulatorServer) -> None:
    with pytest.raises(ApiStatusError) as error:
        server.api.create(with_spec(training_job("bad"), maxWorkers=99))
    assert error.value.status == 422
    assert "spec.maxWorkers" in error.value.body["message"]
    # Unknown fields are refused (strict field validation).
    with pytest.raises(ApiStatusError) as error:
        server.api.create(with_spec(training_job("bad2"), gpuCount=2))
    assert error.value.status == 422
    # Defaults of the schema are applied.
    created = server.api.create(training_job("defaults"))
    assert created["spec"]["maxWorkers"] == 1 and created["spec"]["priority"] == "normal"
    # CEL transition rules see the old object: gpuType is immutable.
    with pytest.raises(ApiStatusError) as error:
        server.api.patch(TJ, "TrainingJob", "defaults", {"spec": {"maxWorkers": 2}})
    assert error.value.status == 422 and "immutable" in error.value.body["message"]


def test_finalizers_hold_deletion_and_owners_cascade(server: EmulatorServer) -> None:
    owner = server.api.create({**config_map("owner"), "metadata": {"name": "owner", "finalizers": ["x/y"]}})
    owned = config_map("owned")
    owned["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ]
    server.api.create(owned)
    marked = server.api.delete("v1", "ConfigMap", "owner")
    assert marked["metadata"]["deletionTimestamp"]
    assert server.api.find("v1", "ConfigMap", "owner") is not None
    server.api.patch("v1", "ConfigMap", "owner", {"metadata": {"finalizers": None}})
    assert server.api.find("v1", "ConfigMap", "owner") is None
    assert server.api.find("v1", "ConfigMap", "owned") is None


def _watch(server: EmulatorServer, query: str, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    url = f"{server.url}/api/v1/namespaces/w/configmaps?watch=true&timeoutSeconds=2&{query}"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response:
            if line.strip():
                events.append(json.loads(line))
            if len(events) == count:
                break
    return events


def test_watches_resume_from_a_resource_version(server: EmulatorServer) -> None:
    first = server.api.create(config_map("w1", "w"))
    server.api.create(config_map("w2", "w"))
    server.api.patch("v1", "ConfigMap", "w1", {"data": {"a": "2"}}, "w")
    # From the first object's version: only what happened after it, in order.
    events = _watch(server, f"resourceVersion={first['metadata']['resourceVersion']}", 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "w2"), ("MODIFIED", "w1")]
    # Without a version: the current state, then live events.
    results: list[list[dict[str, Any]]] = []
    watcher = threading.Thread(target=lambda: results.append(_watch(server, "", 3)))
    watcher.start()
    threading.Event().wait(0.3)
    server.api.create(config_map("w3", "w"))
    watcher.join()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in results[0]] == [
        ("ADDED", "w1"),
        ("ADDED", "w2"),
        ("ADDED", "w3"),
    ]


def test_dropped_watches_end_at_once_and_send_nothing_written_after(server: EmulatorServer) -> None:
    server.api.create(config_map("d1", "drop"))
    url = f"{server.url}/api/v1/namespaces/drop/configmaps?watch=true&timeoutSeconds=60"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert json.loads(response.readline())["object"]["metadata"]["name"] == "d1"
        server.drop_watches()
        server.api.create(config_map("d2", "drop"))
        assert response.read() == b""  # the stream ended before d2, long before its 60 s
    assert len(server.api.list("v1", "ConfigMap", "drop")) == 2


def test_core_discovery_reports_v1() -> None:
    with EmulatorServer() as fresh:
        assert fresh.api.request("GET", "/api/v1")["groupVersion"] == "v1"
        group = fresh.api.request("GET", "/apis/kubeflow.org/v1")
        assert {r["name"] for r in group["resources"]} == {"pytorchjobs", "pytorchjobs/status"}


def test_patch_helpers_follow_the_rfcs() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    doc = {"a": [1, 2], "b": {"c": 1}}
    assert json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/b/c"}]) == {
        "a": [1, 2, 3],
        "b": {},
    }
    assert label_selector_matches("a=b,c!=d", {"a": "b"}) and not label_selector_matches("a=b", {"a": "c"})


def test_metadata_only_and_status_only_writes_are_still_validated(server: EmulatorServer) -> None:
    server.api.create(training_job("meta"))
    annotated = server.api.patch(
        TJ,
        "TrainingJob",
        "meta",
        {"metadata": {"annotations": {"training.tensorone.ai/x": "1"}, "finalizers": ["a.b/c"]}},
    )
    assert annotated["metadata"]["finalizers"] == ["a.b/c"]
    for bad in ({"labels": {"bad key!": "x"}}, {"labels": {"ok": "bad value!"}}):
        with pytest.raises(ApiStatusError) as error:
            server.api.patch(TJ, "TrainingJob", "meta", {"metadata": bad})
        assert error.value.status == 422
    # A status write is checked against the status schema (the unchanged spec is ratcheted).
    with pytest.raises(ApiStatusError) as error:
        server.api.patch_status(TJ, "TrainingJob", "meta", {"phase": "Exploded"})
    assert error.value.status == 422 and "status.phase" in error.value.body["message"]
    with pytest.raises(ApiStatusError) as error:
        server.api.patch_status(TJ, "TrainingJob", "meta", {"progress": {"percentage": 101}})
    assert error.value.status == 422


def _get(server: EmulatorServer, path: str, accept: str) -> tuple[str, Any]:
    request = urllib.request.Request(server.url + path, headers={"Accept": accept})
    with urllib.request.urlopen(request) as response:
        return response.headers["Content-Type"], json.loads(response.read())


def test_discovery_names_short_names_categories_and_subresources(server: EmulatorServer) -> None:
    _, listing = _get(server, "/apis/training.tensorone.ai/v1alpha1", "application/json, */*")
    resources = {r["name"]: r for r in listing["resources"]}
    assert resources["trainingjobs"]["shortNames"] == ["tj"]
    assert resources["trainingjobs"]["categories"] == ["tensorone"]
    assert resources["trainingjobs"]["singularName"] == "trainingjob" and resources["trainingjobs"]["namespaced"]
    assert {"get", "list", "watch", "patch"} <= set(resources["trainingjobs"]["verbs"])
    # The status subresource has no short names of its own (kubectl would call "tj" ambiguous).
    status = resources["trainingjobs/status"]
    assert "shortNames" not in status and set(status["verbs"]) == {"get", "patch", "update"}
    _, groups = _get(server, "/apis", "application/json")
    names = {g["name"]: g for g in groups["groups"]}
    assert names["training.tensorone.ai"]["preferredVersion"]["version"] == "v1alpha1"
    _, core = _get(server, "/api/v1", "application/json")
    assert {"pods", "pods/status", "events", "configmaps"} <= {r["name"] for r in core["resources"]}
    with pytest.raises(urllib.error.HTTPError) as error:
        _get(server, "/apis/training.tensorone.ai/v9", "application/json")
    assert error.value.code == 404


def test_aggregated_discovery_is_answered_when_asked_first(server: EmulatorServer) -> None:
    kubectl_accept = (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    )
    content_type, groups = _get(server, "/apis", kubectl_accept)
    assert content_type == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert groups["kind"] == "APIGroupDiscoveryList" and groups["apiVersion"] == "apidiscovery.k8s.io/v2"
    ours = next(item for item in groups["items"] if item["metadata"].get("name") == "training.tensorone.ai")
    (version,) = ours["versions"]
    jobs = next(r for r in version["resources"] if r["resource"] == "trainingjobs")
    assert jobs["shortNames"] == ["tj"] and jobs["scope"] == "Namespaced"
    assert jobs["responseKind"] == {"group": "training.tensorone.ai", "version": "v1alpha1", "kind": "TrainingJob"}
    assert [s["subresource"] for s in jobs["subresources"]] == ["status"]
    content_type, core = _get(server, "/api", kubectl_accept)
    assert content_type.endswith("as=APIGroupDiscoveryList")
    assert [v["version"] for v in core["items"][0]["versions"]] == ["v1"]
    _, plain = _get(server, "/api", "application/json")
    assert plain == {"kind": "APIVersions", "versions": ["v1"]}


TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io"


def test_custom_resources_are_served_as_tables_when_asked(server: EmulatorServer) -> None:
    server.api.create({**training_job("printed"), "metadata": {"name": "printed", "namespace": "tables"}})
    server.api.patch_status(TJ, "TrainingJob", "printed", {"phase": "Running"}, namespace="tables")
    path = "/apis/training.tensorone.ai/v1alpha1/namespaces/tables/trainingjobs"
    content_type, table = _get(server, path, TABLE_ACCEPT + ",application/json")
    assert content_type == "application/json;as=Table;v=v1;g=meta.k8s.io"
    assert table["kind"] == "Table" and [c["name"] for c in table["columnDefinitions"]][:3] == [
        "Name",
        "Phase",
        "Model",
    ]
    (row,) = table["rows"]
    assert row["cells"][:3] == ["printed", "Running", "llm"]
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["name"] == "printed"
    assert int(table["metadata"]["resourceVersion"]) >= int(row["object"]["metadata"]["resourceVersion"])
    # One object: a Table of one row, with the object's version.
    _, single = _get(server, f"{path}/printed?includeObject=Object", TABLE_ACCEPT)
    assert single["rows"][0]["object"]["status"]["phase"] == "Running"
    assert single["metadata"]["resourceVersion"] == single["rows"][0]["object"]["metadata"]["resourceVersion"]
    # Asked for plain JSON first: the list.
    _, listing = _get(server, path, "application/json, " + TABLE_ACCEPT)
    assert listing["kind"] == "TrainingJobList"
    with pytest.raises(urllib.error.HTTPError) as error:
        _get(server, f"{path}?includeObject=Everything", TABLE_ACCEPT)
    assert error.value.code == 400


def test_built_in_kinds_answer_their_objects_to_a_table_request(server: EmulatorServer) -> None:
    # The emulator has no printers of built-in kinds: it answers the list, which clients accept.
    server.api.create(config_map("plain", "tables"))
    _, listing = _get(server, "/api/v1/namespaces/tables/configmaps", TABLE_ACCEPT + ",application/json")
    assert listing["kind"] == "ConfigMapList"


# pods/log -------------------------------------------------------------------------------------

CONTAINER = {"name": "pytorch", "image": "trainer:1"}


def logging_pod(server: EmulatorServer, name: str, *, node: str | None = "node-1", namespace: str = "logs") -> None:
    """A running pod of one container, ``pytorch``, on ``node`` (none: not scheduled yet)."""
    metadata = {"name": "job", "uid": "u-1", "namespace": namespace}
    owner = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": metadata}
    spec: dict[str, Any] = {"containers": [CONTAINER]} | ({"nodeName": node} if node else {})
    server.api.create(factories.pod(name, owner, spec=spec, labels={}))
    if node:
        status = factories.running_pod_status(CONTAINER, pod_ip="10.0.0.1", started_at=factories.now())
        server.api.patch("v1", "Pod", name, {"status": status}, namespace, subresource="status")


def restart(server: EmulatorServer, name: str, restarts: int, namespace: str = "logs") -> None:
    """The kubelet restarted the pod's container: ``restarts`` in all, the last run ended 138."""
    status = factories.running_pod_status(
        CONTAINER, pod_ip="10.0.0.1", started_at=factories.now(), restarts=restarts, last_exit_code=138
    )
    server.api.patch("v1", "Pod", name, {"status": status}, namespace, subresource="status")


def end(server: EmulatorServer, name: str, *, restarts: int = 0, namespace: str = "logs") -> None:
    """The pod's container exited 0."""
    status = factories.terminated_pod_status(
        CONTAINER, exit_code=0, message="", finished_at=factories.now(), restarts=restarts
    )
    server.api.patch("v1", "Pod", name, {"status": status}, namespace, subresource="status")


def log_refusal(server: EmulatorServer, pod: str, **query: str) -> ApiStatusError:
    with pytest.raises(ApiStatusError) as refused:
        server.api.log(pod, "logs", **query)
    return refused.value


def test_a_pod_log_is_plain_text_read_whole_or_by_its_last_lines(server: EmulatorServer) -> None:
    logging_pod(server, "plain")
    server.write_log("logs", "plain", "step 1\nstep 2\nstep 3")
    request = urllib.request.Request(server.url + "/api/v1/namespaces/logs/pods/plain/log")
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Type"] == "text/plain"
        assert response.read() == b"step 1\nstep 2\nstep 3"
    assert server.api.log("plain", "logs", tailLines="2") == "step 2\nstep 3"
    assert server.api.log("plain", "logs", tailLines="0") == ""
    assert server.api.log("plain", "logs", container="pytorch", follow="false") == "step 1\nstep 2\nstep 3"
    # A terminated container's log is still there, and a follow of it ends at once.
    end(server, "plain")
    assert server.api.log("plain", "logs", follow="true") == "step 1\nstep 2\nstep 3"


def test_a_pod_log_request_is_refused_as_the_api_server_and_the_kubelet_refuse_it(server: EmulatorServer) -> None:
    logging_pod(server, "refused")
    missing = log_refusal(server, "no-such-pod")
    assert (missing.status, missing.body["message"]) == (404, 'pods "no-such-pod" not found')
    other = log_refusal(server, "refused", container="sidecar")
    assert (other.status, other.body["reason"]) == (400, "BadRequest")
    assert other.body["message"] == "container sidecar is not valid for pod refused"
    previous = log_refusal(server, "refused", previous="true")
    assert (previous.status, previous.body["reason"]) == (400, "BadRequest")
    assert previous.body["message"] == 'previous terminated container "pytorch" in pod "refused" not found'
    negative = log_refusal(server, "refused", tailLines="-1")
    assert negative.status == 422 and "tailLines: Invalid value: -1" in negative.body["message"]
    assert log_refusal(server, "refused", tailLines="many").status == 400
    # Scheduled but not started: the kubelet says what the container waits for.
    waiting = factories.running_pod_status(CONTAINER, pod_ip="10.0.0.1", started_at=factories.now())
    waiting["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    server.api.patch("v1", "Pod", "refused", {"status": waiting}, "logs", subresource="status")
    started = log_refusal(server, "refused")
    assert started.body["message"] == 'container "pytorch" in pod "refused" is waiting to start: ContainerCreating'
    # No node has taken the pod: no kubelet to ask, and the API server answers an empty log.
    logging_pod(server, "unscheduled", node=None)
    assert server.api.log("unscheduled", "logs") == ""


def test_each_run_of_a_container_has_its_log_and_the_one_before_is_previous(server: EmulatorServer) -> None:
    logging_pod(server, "restarted")
    server.write_log("logs", "restarted", "first run\n")
    restart(server, "restarted", 1)
    server.write_log("logs", "restarted", "second run\n")
    assert server.api.log("restarted", "logs") == "second run\n"
    assert server.api.log("restarted", "logs", previous="true") == "first run\n"
    # Exited and waiting to be restarted again: the log is the last run's.
    crashed = factories.running_pod_status(CONTAINER, pod_ip="10.0.0.1", started_at=factories.now(), restarts=2)
    crashed["containerStatuses"][0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    server.api.patch("v1", "Pod", "restarted", {"status": crashed}, "logs", subresource="status")
    assert server.api.log("restarted", "logs") == "second run\n"
    # A new pod of the same name (the Training Operator's after a resume) starts with no log.
    server.api.delete("v1", "Pod", "restarted", "logs")
    logging_pod(server, "restarted")
    assert server.api.log("restarted", "logs") == ""
    assert log_refusal(server, "restarted", previous="true").status == 400


def test_a_followed_log_streams_what_is_written_until_the_container_ends(server: EmulatorServer) -> None:
    logging_pod(server, "followed")
    server.write_log("logs", "followed", "a\n")
    url = server.url + "/api/v1/namespaces/logs/pods/followed/log?follow=true"
    chunks: list[bytes] = []
    with urllib.request.urlopen(url, timeout=30) as response:
        chunks.append(response.read1())
        assert chunks == [b"a\n"]
        server.write_log("logs", "followed", "b\n")
        chunks.append(response.read1())
        assert chunks[-1] == b"b\n"
        # A restart ends the run followed: its log ends with it.
        restart(server, "followed", 1)
        assert response.read() == b""
    server.write_log("logs", "followed", "c\n")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read1() == b"c\n"
        end(server, "followed", restarts=1)
        assert response.read() == b""


def test_pods_log_is_discovered_and_authorized_apart_from_pods() -> None:
    with EmulatorServer(FaithfulEmulator(validate_writes=False)) as guarded:
        _, core = _get(guarded, "/api/v1", "application/json")
        log = next(r for r in core["resources"] if r["name"] == "pods/log")
        assert log["verbs"] == ["get"] and log["kind"] == "Pod" and "shortNames" not in log
        logging_pod(guarded, "private")
        guarded.emulator.tokens["reader"] = {("GET", "pods")}
        guarded.emulator.tokens["logs"] = {("GET", "pods/log")}

        def read(token: str) -> urllib.request.Request:
            path = "/api/v1/namespaces/logs/pods/private/log"
            return urllib.request.Request(guarded.url + path, headers={"Authorization": f"Bearer {token}"})

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(read("reader"))
        assert refused.value.code == 403
        assert 'cannot get resource "pods/log"' in json.loads(refused.value.read())["message"]
        with urllib.request.urlopen(read("logs")) as response:
            assert response.status == 200


def test_a_watch_that_allows_bookmarks_resumes_after_other_kinds_filled_the_history() -> None:
    """A kind that stays quiet while others change: without bookmarks, resuming its watch from the
    last event it saw is 410 Gone once the history moved on; with them, the bookmark's version resumes."""
    emulator = FaithfulEmulator(event_window=3, validate_writes=False, bookmark_seconds=0.1)
    with EmulatorServer(emulator) as bounded:
        quiet = bounded.api.create(config_map("quiet", "w"))["metadata"]["resourceVersion"]
        url = f"{bounded.url}/api/v1/namespaces/w/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=30"
        with urllib.request.urlopen(f"{url}&resourceVersion={quiet}", timeout=10) as response:
            lines = (json.loads(line) for line in response if line.strip())
            first = next(lines)
            assert first["type"] == "BOOKMARK" and first["object"]["kind"] == "ConfigMap"
            busy = [bounded.api.create(config_map(f"other-{i}", "elsewhere")) for i in range(6)]
            latest = int(busy[-1]["metadata"]["resourceVersion"])
            bookmark = next(e for e in lines if int(e["object"]["metadata"]["resourceVersion"]) >= latest)
            assert bookmark["type"] == "BOOKMARK", bookmark
        [expired] = _watch(bounded, f"resourceVersion={quiet}", 1)
        assert expired["type"] == "ERROR" and expired["object"]["code"] == 410
        resumed = _watch(bounded, f"allowWatchBookmarks=true&resourceVersion={latest}", 1)
        assert [event["type"] for event in resumed] == ["BOOKMARK"]


def test_a_watch_gets_a_last_bookmark_just_before_it_times_out(server: EmulatorServer) -> None:
    created = server.api.create(config_map("ending", "w"))
    events = _watch(server, "allowWatchBookmarks=true&resourceVersion=" + created["metadata"]["resourceVersion"], 99)
    # timeoutSeconds=2: within the last 2 s at once, so the one bookmark, then the end of the stream.
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        ("BOOKMARK", created["metadata"]["resourceVersion"])
    ]
