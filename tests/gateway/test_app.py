"""The gateway's endpoints in-process (starlette's TestClient) against the emulator with
authentication on: the reference's bodies, every error code with its details, list filters and
pages, acting as the caller, health and metrics, and the committed OpenAPI document."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tensorone.api.trainable import VISION_ARCHITECTURES
from tensorone.gateway import openapi
from tensorone.gateway.app import GatewayConfig, create_app
from tests.factories import API, PYTORCHJOB, gpu_node
from tests.gateway.process import ADMIN_TOKEN, EDITOR_TOKEN, READER_TOKEN
from tests.kube.loopback import LIST_OF_NUMBERS, SIGN_IN_PAGE, answering_server, free_port
from tests.kube.polling import wait_for
from tests.kube.server import EmulatorServer
from tests.operator.kit import condition, job_status
from tests.operator.runner import OperatorThread

DATA = Path(__file__).resolve().parents[1] / "api" / "data"
JOBS = "/v2/training/jobs"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READER = {"Authorization": f"Bearer {READER_TOKEN}"}
EDITOR = {"Authorization": f"Bearer {EDITOR_TOKEN}"}


def reference_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA / name).read_text())
    return body


def llm_body(**changes: Any) -> dict[str, Any]:
    return {**reference_body("create-llm-lora.json"), **changes}


def stored_jobs(cluster: EmulatorServer) -> list[str]:
    return [obj["metadata"]["name"] for obj in cluster.api.list(API, "TrainingJob")]


def test_the_reference_create_bodies_give_the_reference_job(app_client: TestClient, cluster: EmulatorServer) -> None:
    answer = app_client.post(JOBS, json=llm_body(), headers=ADMIN)
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["id"] == "llama-7b-finetune"
    assert job["name"] == "llama-7b-finetune"
    assert job["status"] == "pending"
    assert job["modelType"] == "llm"
    assert job["datasetId"] == "ds_1234567890abcdef"
    assert job["config"]["baseModel"] == "meta-llama/Llama-2-7b-hf"
    assert job["config"]["parameters"]["target_modules"] == ["q_proj", "v_proj", "k_proj", "o_proj"]
    assert job["config"]["training"]["learning_rate"] == 2e-4
    assert job["gpuType"] == "a100" and job["maxWorkers"] == 2 and job["priority"] == "high"
    assert job["createdAt"].endswith("Z") and job["updatedAt"] == job["createdAt"]
    # The operator's allocation and estimate from the same catalog, as the reference's create answers.
    assert job["resourceAllocation"] == {"gpuType": "NVIDIA A100", "workers": 2, "gpus": 2, "memoryPerWorker": "80GB"}
    assert job["estimatedCost"] == {"hourly": 8.2, "currency": "USD"}
    stored = cluster.api.get(API, "TrainingJob", "llama-7b-finetune")
    assert stored["spec"]["datasetId"] == "ds-1234567890abcdef"


def test_the_reference_vision_body_is_refused_naming_what_trains(
    app_client: TestClient, cluster: EmulatorServer
) -> None:
    vision = app_client.post(JOBS, json=reference_body("create-vision.json"), headers=ADMIN)
    assert vision.status_code == 400, vision.text
    answer = vision.json()
    assert answer["error"] == "CONFIGURATION_ERROR"
    assert answer["details"]["field"] == "config.architecture"
    assert answer["details"]["architecture"] == "yolov8"
    assert answer["details"]["supportedArchitectures"] == list(VISION_ARCHITECTURES)
    assert "AGPL-3.0" in answer["message"]
    assert stored_jobs(cluster) == []


def test_a_free_text_name_becomes_the_id(app_client: TestClient) -> None:
    answer = app_client.post(JOBS, json=llm_body(name="My Job"), headers=ADMIN)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["id"], answer.json()["name"]) == ("my-job", "My Job")
    assert app_client.get(f"{JOBS}/my-job", headers=ADMIN).json()["name"] == "My Job"


def test_create_time_errors_carry_the_reference_codes_and_details(
    app_client: TestClient, cluster: EmulatorServer
) -> None:
    answer = app_client.post(JOBS, json=llm_body(gpuType="h100"), headers=ADMIN)
    assert answer.status_code == 409
    assert answer.json()["error"] == "INSUFFICIENT_RESOURCES"
    assert answer.json()["details"] == {
        "field": "gpuType",
        "reason": answer.json()["details"]["reason"],
        "requestedGpuType": "h100",
        "availableGpuTypes": ["a100", "v100"],
    }

    answer = app_client.post(JOBS, json=llm_body(datasetId="ds_invalid_id"), headers=ADMIN)
    assert answer.status_code == 404
    assert answer.json()["error"] == "DATASET_NOT_FOUND"
    assert answer.json()["details"]["datasetId"] == "ds_invalid_id"

    config = llm_body()["config"]
    config["training"]["learning_rate"] = 0.5
    answer = app_client.post(JOBS, json=llm_body(config=config), headers=ADMIN)
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "CONFIGURATION_ERROR"
    assert body["details"]["field"] == "config.training.learning_rate"
    assert "between 1e-06 and 0.1" in body["details"]["reason"]
    assert body["message"].startswith("config.training.learning_rate: ")

    answer = app_client.post(JOBS, json=llm_body(gpuType="tpu"), headers=ADMIN)
    assert answer.status_code == 400
    assert answer.json()["error"] == "CONFIGURATION_ERROR"
    assert answer.json()["details"]["field"] == "gpuType"
    assert "a100" in answer.json()["details"]["availableGpuTypes"]

    answer = app_client.post(JOBS, content=b"{not json", headers=ADMIN)
    assert (answer.status_code, answer.json()["error"]) == (400, "CONFIGURATION_ERROR")
    assert stored_jobs(cluster) == []


def test_a_custom_job_with_a_reserved_name_is_a_configuration_error(app_client: TestClient) -> None:
    body = {
        "name": "custom-job",
        "modelType": "custom",
        "datasetId": "ds_1234567890abcdef",
        "config": {"custom": {"image": "registry.example/train:1", "env": [{"name": "RANK", "value": "3"}]}},
    }
    answer = app_client.post(JOBS, json=body, headers=ADMIN)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "CONFIGURATION_ERROR"
    assert answer.json()["details"]["field"] == "config.custom.env[0].name"


def test_state_and_lookup_errors(app_client: TestClient, cluster: EmulatorServer) -> None:
    assert app_client.post(JOBS, json=llm_body(), headers=ADMIN).status_code == 201
    again = app_client.post(JOBS, json=llm_body(), headers=ADMIN)
    assert (again.status_code, again.json()["error"]) == (409, "ALREADY_EXISTS")

    missing = app_client.get(f"{JOBS}/job_1234567890abcdef", headers=ADMIN)
    assert (missing.status_code, missing.json()["error"]) == (404, "JOB_NOT_FOUND")

    stopped = app_client.post(f"{JOBS}/llama-7b-finetune/stop", json={"reason": "User requested stop"}, headers=ADMIN)
    assert stopped.status_code == 200, stopped.text
    assert cluster.api.get(API, "TrainingJob", "llama-7b-finetune")["spec"]["suspend"] is True
    resumed = app_client.post(f"{JOBS}/llama-7b-finetune/resume", json={"checkpointId": "ckpt_epoch_1"}, headers=ADMIN)
    assert (resumed.status_code, resumed.json()["error"]) == (404, "CHECKPOINT_NOT_FOUND")
    assert resumed.json()["details"]["field"] == "checkpointId"

    cluster.api.patch_status(API, "TrainingJob", "llama-7b-finetune", {"phase": "Completed"})
    late = app_client.post(f"{JOBS}/llama-7b-finetune/stop", headers=ADMIN)
    assert (late.status_code, late.json()["error"]) == (409, "INVALID_JOB_STATE")
    refused = app_client.post(f"{JOBS}/llama-7b-finetune/stop", json={"saveCheckpoint": False}, headers=ADMIN)
    assert (refused.status_code, refused.json()["error"]) == (400, "CONFIGURATION_ERROR")


def test_requests_act_as_the_caller(app_client: TestClient, cluster: EmulatorServer) -> None:
    anonymous = app_client.post(JOBS, json=llm_body())
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "UNAUTHENTICATED")
    refused = app_client.post(JOBS, json=llm_body(), headers={"Authorization": "Bearer not-a-token"})
    assert (refused.status_code, refused.json()["error"]) == (401, "UNAUTHENTICATED")
    forbidden = app_client.post(JOBS, json=llm_body(), headers=READER)
    assert (forbidden.status_code, forbidden.json()["error"]) == (403, "FORBIDDEN")
    assert "cannot create" in forbidden.json()["message"]
    assert stored_jobs(cluster) == []
    assert app_client.get(JOBS, headers=READER).status_code == 200
    assert app_client.get(JOBS, headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_an_unreachable_api_server_is_a_connection_error() -> None:
    with TestClient(create_app(GatewayConfig(api_server=f"http://127.0.0.1:{free_port()}"))) as client:
        answer = client.get(JOBS, headers=ADMIN)
    assert (answer.status_code, answer.json()["error"]) == (503, "CONNECTION_ERROR")
    assert "cannot reach the Kubernetes API" in answer.json()["message"]


def test_a_caller_who_may_not_list_nodes_creates_a_job_that_waits_for_its_gpu_type(
    app_client: TestClient, cluster: EmulatorServer
) -> None:
    # No node offers h100: the admin, who may list nodes, is refused; the editor, who may not, is
    # not refused for it, and the job waits with a condition as an applied manifest does.
    refused = app_client.post(JOBS, json=llm_body(name="admins", gpuType="h100"), headers=ADMIN)
    assert (refused.status_code, refused.json()["error"]) == (409, "INSUFFICIENT_RESOURCES")
    created = app_client.post(JOBS, json=llm_body(gpuType="h100"), headers=EDITOR)
    assert created.status_code == 201, created.text
    assert stored_jobs(cluster) == ["llama-7b-finetune"]
    with OperatorThread(cluster):

        def held() -> dict[str, Any] | None:
            found = condition(job_status(cluster.api, "llama-7b-finetune"), "ResourcesAvailable")
            return found if found.get("reason") == "INSUFFICIENT_RESOURCES" else None

        waiting = wait_for(held, "the job held for its GPU type")
        assert waiting["status"] == "False" and "no node offers GPU type 'h100'" in waiting["message"]
        assert cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama-7b-finetune") is None
        cluster.api.create(gpu_node("gpu-h100-1", "NVIDIA-H100-80GB-HBM3"))
        wait_for(lambda: cluster.api.find(PYTORCHJOB, "PyTorchJob", "llama-7b-finetune"), "the job started")


def test_an_api_server_failure_is_an_internal_error_counted_in_the_metrics(
    app_client: TestClient, cluster: EmulatorServer
) -> None:
    cluster.emulator.faults[("GET", "trainingjobs")] = 500
    answer = app_client.get(JOBS, headers=ADMIN)
    assert answer.status_code == 500
    assert answer.json() == {
        "error": "INTERNAL_ERROR",
        "message": "Kubernetes API error: injected fault",
        "details": {},
    }
    text = app_client.get("/metrics").text
    assert 'tensorone_gateway_requests_total{method="GET",route="/v2/training/jobs",status="500"} 1.0' in text


def test_a_web_page_where_the_api_server_should_be_is_a_connection_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with answering_server(SIGN_IN_PAGE) as url, TestClient(create_app(GatewayConfig(api_server=url))) as client:
        answer = client.get(JOBS, headers=ADMIN)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "CONNECTION_ERROR"
    assert "Sign in" not in answer.text and ADMIN_TOKEN not in answer.text


def test_an_answer_the_gateway_cannot_read_is_an_internal_error_that_tells_nothing_of_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A list of numbers for every answer: reading it fails where nothing expects it to.
    with answering_server(LIST_OF_NUMBERS) as url, TestClient(create_app(GatewayConfig(api_server=url))) as client:
        with caplog.at_level(logging.ERROR, logger="tensorone.gateway"):
            answers = [
                client.get(JOBS, headers=ADMIN),
                client.post(JOBS, json=llm_body(), headers=ADMIN),
                client.get(f"{JOBS}/llama-7b-finetune", headers=ADMIN),
            ]
        text = client.get("/metrics").text
    for answer in answers:
        assert answer.status_code == 500, answer.text
        # What went wrong stays in the gateway's log: no exception, no traceback, no credential.
        expected = {"error": "INTERNAL_ERROR", "message": "an unexpected error; the gateway's log has the details"}
        assert answer.json() == {**expected, "details": {}}
        assert "Traceback" not in answer.text and ADMIN_TOKEN not in answer.text
    for method, route in (("GET", JOBS), ("POST", JOBS), ("GET", f"{JOBS}/{{job_id}}")):
        assert f'tensorone_gateway_requests_total{{method="{method}",route="{route}",status="500"}} 1.0' in text
    logged = [record for record in caplog.records if record.name == "tensorone.gateway.app"]
    assert [record.getMessage() for record in logged] == [
        f"GET {JOBS}: unexpected error",
        f"POST {JOBS}: unexpected error",
        f"GET {JOBS}/llama-7b-finetune: unexpected error",
    ]
    assert all(record.exc_info for record in logged)  # with the traceback
    assert ADMIN_TOKEN not in caplog.text


def test_list_filters_pages_and_sorts(app_client: TestClient, cluster: EmulatorServer) -> None:
    for name in ("b-job", "a-job", "c-job"):
        assert app_client.post(JOBS, json=llm_body(name=name), headers=ADMIN).status_code == 201
    cluster.api.patch_status(
        API, "TrainingJob", "c-job", {"phase": "Running", "metrics": {"currentLoss": 0.342, "learningRate": 1.8e-4}}
    )
    page = app_client.get(JOBS, params={"sort": "name", "order": "asc", "limit": 2}, headers=ADMIN).json()
    assert [job["id"] for job in page["jobs"]] == ["a-job", "b-job"]
    assert page["pagination"] == {"total": 3, "limit": 2, "offset": 0, "hasMore": True}
    rest = app_client.get(JOBS, params={"sort": "name", "order": "asc", "limit": 2, "offset": 2}, headers=ADMIN)
    assert [job["id"] for job in rest.json()["jobs"]] == ["c-job"]
    assert rest.json()["pagination"]["hasMore"] is False
    running = app_client.get(JOBS, params={"status": "running"}, headers=ADMIN).json()["jobs"]
    assert [job["id"] for job in running] == ["c-job"]
    assert running[0]["metrics"]["loss"] == 0.342
    assert app_client.get(JOBS, params={"modelType": "vision"}, headers=ADMIN).json()["jobs"] == []
    for params, field in (({"limit": 0}, "limit"), ({"status": "sleeping"}, "status"), ({"limit": "x"}, "limit")):
        bad = app_client.get(JOBS, params=params, headers=ADMIN)
        assert (bad.status_code, bad.json()["error"], bad.json()["details"]["field"]) == (
            400,
            "CONFIGURATION_ERROR",
            field,
        )


def test_monitoring_verbs(app_client: TestClient, cluster: EmulatorServer) -> None:
    assert app_client.post(JOBS, json=llm_body(), headers=ADMIN).status_code == 201
    checkpoint = {"id": "ckpt-epoch-1", "epoch": 1, "step": 10, "loss": 0.456, "createdAt": "2024-01-15T11:15:00Z"}
    cluster.api.patch_status(API, "TrainingJob", "llama-7b-finetune", {"phase": "Running", "checkpoints": [checkpoint]})
    listed = app_client.get(f"{JOBS}/llama-7b-finetune/checkpoints", headers=ADMIN).json()["checkpoints"]
    assert [c["id"] for c in listed] == ["ckpt-epoch-1"] and listed[0]["createdAt"] == "2024-01-15T11:15:00Z"
    assert app_client.get(f"{JOBS}/llama-7b-finetune/events", headers=ADMIN).json() == {"events": []}
    cancelled = app_client.post(f"{JOBS}/llama-7b-finetune/cancel", headers=ADMIN)
    assert cancelled.status_code == 200 and cluster.api.get(API, "TrainingJob", "llama-7b-finetune")["spec"]["cancel"]
    gone = app_client.delete(f"{JOBS}/llama-7b-finetune", params={"force": "true"}, headers=ADMIN)
    assert gone.json() == {"id": "llama-7b-finetune", "status": "deleted"}
    assert stored_jobs(cluster) == []


def test_health_metrics_and_the_committed_openapi_document(app_client: TestClient) -> None:
    assert app_client.get("/healthz").json() == {"status": "ok"}
    app_client.get(JOBS, headers=ADMIN)
    text = app_client.get("/metrics").text
    assert 'tensorone_gateway_requests_total{method="GET",route="/v2/training/jobs",status="200"} 1.0' in text
    assert "tensorone_gateway_request_seconds_bucket" in text
    served = app_client.get("/openapi.json").json()
    assert served == openapi.document()
    assert openapi.DOCUMENT.read_text() == openapi.rendered(), "run python -m tensorone.gateway.openapi"
    assert set(served["paths"]) >= {
        "/v2/training/jobs",
        "/v2/training/jobs/{job_id}",
        "/v2/training/jobs/{job_id}/stop",
        "/v2/training/jobs/{job_id}/resume",
        "/v2/training/jobs/{job_id}/cancel",
        "/v2/training/jobs/{job_id}/events",
        "/v2/training/jobs/{job_id}/checkpoints",
    }


def test_a_callers_list_serves_their_next_pages_until_they_write(cluster: EmulatorServer) -> None:
    config = GatewayConfig(api_server=cluster.url, list_cache_seconds=600)
    with TestClient(create_app(config)) as client:
        assert client.post(JOBS, json=llm_body(name="first"), headers=ADMIN).status_code == 201
        assert client.get(JOBS, headers=ADMIN).json()["pagination"]["total"] == 1
        # A change made elsewhere (kubectl, another replica) shows up when the kept list expires...
        cluster.api.create(job_from_rest_validated(llm_body(name="elsewhere")))
        assert client.get(JOBS, headers=ADMIN).json()["pagination"]["total"] == 1
        # ... never in another caller's list, and at once after the caller's own write.
        assert client.get(JOBS, headers=READER).json()["pagination"]["total"] == 2
        assert client.post(JOBS, json=llm_body(name="second"), headers=ADMIN).status_code == 201
        assert client.get(JOBS, headers=ADMIN).json()["pagination"]["total"] == 3
        assert client.get(f"{JOBS}/elsewhere", headers=ADMIN).status_code == 200


def job_from_rest_validated(body: dict[str, Any]) -> dict[str, Any]:
    from tensorone.api.rest import validated_job_from_rest

    manifest = validated_job_from_rest(body, namespace="default")
    return manifest


def test_one_jobs_details_carry_its_loss_curves_and_lists_do_not(
    app_client: TestClient, cluster: EmulatorServer
) -> None:
    assert app_client.post(JOBS, json=llm_body(), headers=ADMIN).status_code == 201
    curves = {"lossHistory": [{"step": 1, "loss": 2.0}], "evalLossHistory": [{"step": 1, "loss": 2.5}]}
    cluster.api.patch_status(API, "TrainingJob", "llama-7b-finetune", {"phase": "Running", **curves})
    details = app_client.get(f"{JOBS}/llama-7b-finetune", headers=ADMIN).json()
    assert {key: details[key] for key in curves} == curves
    listed = app_client.get(JOBS, headers=ADMIN).json()["jobs"][0]
    assert listed["id"] == "llama-7b-finetune" and not set(curves) & set(listed)
