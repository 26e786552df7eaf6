"""The Runware simulator over real HTTP: Runware's wire behaviour (reference/runware-api.md), knobs and counters."""

from __future__ import annotations

import base64
import io
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from PIL import Image

from strangler_bridge.cli.processes import Child, wait_http_ok
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.settings import Settings
from strangler_bridge.simulators.runware import RunwareSimConfig, create_app
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

KEY = {"Authorization": "Bearer sim-key"}


class Sim:
    """A Runware simulator on loopback (in this process), with helpers for its control routes."""

    def __init__(self, **knobs: Any) -> None:
        self.server = ThreadedServer(create_app(RunwareSimConfig(**knobs))).start()
        self.url = self.server.url
        self.v1 = f"{self.url}/v1"
        self.http = httpx.Client(timeout=10.0)

    def post(self, tasks: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(self.v1, json=tasks, headers=KEY if headers is None else headers)

    def counters(self) -> dict[str, Any]:
        return self.http.get(f"{self.url}/_sim/counters").json()  # type: ignore[no-any-return]

    def configure(self, **knobs: Any) -> dict[str, Any]:
        response = self.http.patch(f"{self.url}/_sim/config", json=knobs)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.http.close()
        self.server.stop()


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Sim]:
    started = Sim(image_max_side=64)
    yield started
    started.stop()


@pytest.fixture
def sim(shared_sim: Sim) -> Sim:
    """The module's simulator, reset to its start-up state (config, tasks, counters) for each test."""
    shared_sim.http.post(f"{shared_sim.url}/_sim/reset").raise_for_status()
    return shared_sim


def inference(**changes: Any) -> dict[str, Any]:
    task = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "positivePrompt": "a red kite over the sea",
        "width": 512,
        "height": 256,
        "model": "runware:100@1",
    }
    task.update(changes)
    return {key: value for key, value in task.items() if value is not None}


def get_response(task_uuid: str) -> dict[str, Any]:
    return {"taskType": "getResponse", "taskUUID": task_uuid}


# --- transport and auth --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{}", b"not json", b"[]", b"[1, 2]"])
def test_the_body_must_be_a_json_array_of_tasks(sim: Sim, body: bytes) -> None:
    response = sim.http.post(sim.v1, content=body, headers=KEY)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "validationFailed"


def test_only_post_v1_is_served_and_errors_keep_runware_shape(sim: Sim) -> None:
    wrong_method = sim.http.get(sim.v1)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["errors"][0]["code"] == "methodNotAllowed"
    assert sim.http.post(f"{sim.url}/v2", json=[]).json()["errors"][0]["code"] == "notFound"


def test_missing_and_wrong_keys_get_401_in_runware_shape() -> None:
    locked = Sim(api_key="right")
    try:
        missing = locked.post([inference()], headers={})
        wrong = locked.post([inference()], headers={"Authorization": "Bearer wrong"})
        via_task = locked.post([{"taskType": "authentication", "apiKey": "right"}, inference()], headers={})
        wrong_task = locked.post([{"taskType": "authentication", "apiKey": "nope"}, inference()], headers={})
    finally:
        locked.stop()
    assert missing.status_code == 401
    assert missing.json()["errors"][0]["code"] == "missingApiKey"
    assert wrong.status_code == wrong_task.status_code == 401
    error = wrong.json()["errors"][0]
    assert (error["code"], error["parameter"], error["taskType"]) == ("invalidApiKey", "apiKey", "authentication")
    assert via_task.status_code == 200
    assert len(via_task.json()["data"]) == 1


# --- validation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code", "parameter"),
    [
        ({"taskUUID": None}, "missingTaskUUID", "taskUUID"),
        ({"taskUUID": str(uuid.uuid1())}, "invalidTaskUUID", "taskUUID"),
        ({"positivePrompt": None}, "missingPositivePrompt", "positivePrompt"),
        ({"positivePrompt": "x"}, "invalidPositivePrompt", "positivePrompt"),
        ({"positivePrompt": "x" * 3001}, "invalidPositivePrompt", "positivePrompt"),
        ({"negativePrompt": "x"}, "invalidNegativePrompt", "negativePrompt"),
        ({"width": 500}, "invalidWidth", "width"),
        ({"width": 64}, "invalidWidth", "width"),
        ({"height": 2112}, "invalidHeight", "height"),
        ({"height": None}, "missingHeight", "height"),
        ({"model": "flux"}, "invalidModel", "model"),
        ({"numberResults": 21}, "invalidNumberResults", "numberResults"),
        ({"outputType": "file"}, "invalidOutputType", "outputType"),
        ({"outputFormat": "gif"}, "invalidOutputFormat", "outputFormat"),
        ({"steps": 0}, "invalidSteps", "steps"),
        ({"CFGScale": 51}, "invalidCFGScale", "CFGScale"),
        ({"includeCost": "yes"}, "invalidIncludeCost", "includeCost"),
        ({"deliveryMethod": "stream"}, "invalidDeliveryMethod", "deliveryMethod"),
        ({"webhookURL": "not a url"}, "invalidWebhookURL", "webhookURL"),
    ],
)
def test_invalid_fields_get_task_scoped_errors(sim: Sim, changes: dict[str, Any], code: str, parameter: str) -> None:
    task = inference(**changes)
    response = sim.post([task])
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["code"], error["parameter"], error["taskType"]) == (code, parameter, "imageInference")
    assert error.get("taskUUID") == task.get("taskUUID")
    assert sim.counters()["tasks_executed"] == 0


def test_one_bad_task_does_not_fail_the_others(sim: Sim) -> None:
    good, bad = inference(), inference(width=100)
    response = sim.post([good, bad])
    assert response.status_code == 200
    body = response.json()
    assert [item["taskUUID"] for item in body["data"]] == [good["taskUUID"]]
    assert [error["taskUUID"] for error in body["errors"]] == [bad["taskUUID"]]


def test_reused_task_uuids_conflict_across_and_within_requests(sim: Sim) -> None:
    task = inference()
    assert sim.post([task]).status_code == 200
    again = sim.post([task])
    assert again.status_code == 400
    assert again.json()["errors"][0]["code"] == "conflictTaskUUID"
    twin = inference()
    both = sim.post([twin, dict(twin)]).json()
    assert len(both["data"]) == 1
    assert both["errors"][0]["code"] == "conflictTaskUUID"
    assert sim.counters()["tasks_executed"] == 2


# --- sync delivery and images --------------------------------------------------------------------------------------


def test_sync_delivery_returns_one_item_per_image_with_seeds_and_costs(sim: Sim) -> None:
    task = inference(numberResults=3, seed=40, includeCost=True, outputFormat="png")
    items = sim.post([task]).json()["data"]
    assert len(items) == 3
    assert len({item["imageUUID"] for item in items}) == 3
    assert [item["seed"] for item in items] == [40, 41, 42]
    assert [item["cost"] for item in items] == [0.0013] * 3
    assert all("NSFWContent" not in item for item in items)
    image = sim.http.get(items[0]["imageURL"])
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (64, 32)
    counters = sim.counters()
    assert counters["images_generated"] == 3
    assert counters["cost_total"] == pytest.approx(0.0039)


def test_output_types_formats_and_safety_flags(sim: Sim) -> None:
    plain, base64_task, data_uri = (
        inference(),
        inference(outputType="base64Data", outputFormat="webp", safety={"checkContent": True}),
        inference(outputType="dataURI", checkNSFW=True),
    )
    items = sim.post([plain, base64_task, data_uri]).json()["data"]
    assert items[0]["imageURL"].endswith(".jpg")  # Runware's default outputFormat is JPG
    assert "cost" not in items[0] and "NSFWContent" not in items[0]
    assert Image.open(io.BytesIO(sim.http.get(items[0]["imageURL"]).content)).format == "JPEG"
    assert Image.open(io.BytesIO(base64.b64decode(items[1]["imageBase64Data"]))).format == "WEBP"
    assert items[1]["NSFWContent"] is False
    header, _, data = items[2]["imageDataURI"].partition(",")
    assert header == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).format == "JPEG"
    assert sim.http.get(f"{sim.url}/image/{uuid.uuid4()}.png").status_code == 404


def test_a_seed_makes_runs_repeatable() -> None:
    runs = []
    for _ in range(2):
        seeded = Sim(seed=7, image_max_side=32)
        try:
            task = inference(taskUUID="0b8f3a02-3c0e-4f7e-9d56-3f1a6f0c2b11", numberResults=2)
            runs.append([(i["imageUUID"], i["seed"]) for i in seeded.post([task]).json()["data"]])
        finally:
            seeded.stop()
    assert runs[0] == runs[1]


# --- async delivery, getResponse, webhooks -------------------------------------------------------------------------


def test_async_delivery_acks_at_once_and_get_response_is_cumulative(sim: Sim) -> None:
    sim.configure(latency_s=0.3)
    task = inference(deliveryMethod="async", numberResults=2)
    ack = sim.post([task]).json()
    assert ack == {"data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"]}]}
    first = sim.post([get_response(task["taskUUID"])]).json()
    assert [item["status"] for item in first["data"]] == ["processing"]

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = sim.post([get_response(task["taskUUID"])]).json()
        return body if all(item["status"] == "success" for item in body["data"]) else None

    done = wait_for(finished, timeout=10, what="async task to finish")
    assert len(done["data"]) == 2
    assert all("imageURL" in item for item in done["data"])
    again = sim.post([get_response(task["taskUUID"])]).json()
    assert again == done
    assert sim.counters()["get_response_calls"] >= 3


def test_get_response_reports_failures_unknown_tasks_and_sync_tasks(sim: Sim) -> None:
    sim.configure(fail_next_tasks=1, failure_code="inferenceError")
    failed, synced = inference(), inference()
    assert sim.post([failed]).json()["errors"][0]["code"] == "inferenceError"
    sim.post([synced])
    failure = sim.post([get_response(failed["taskUUID"])])
    assert failure.status_code == 200
    error = failure.json()["errors"][0]
    assert (error["code"], error["status"], error["taskUUID"]) == ("inferenceError", "error", failed["taskUUID"])
    assert sim.post([get_response(synced["taskUUID"])]).json()["data"][0]["status"] == "success"
    unknown = sim.post([get_response(str(uuid.uuid4()))])
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["code"] == "taskFailedOrNotFound"
    counters = sim.counters()
    assert (counters["tasks_executed"], counters["tasks_failed"]) == (1, 1)


class Receiver:
    """A webhook endpoint on loopback that fails its first ``failures`` deliveries with 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.bodies: list[Any] = []
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            with self._lock:
                self.attempts += 1
                if self.attempts <= self.failures:
                    return Response(status_code=500)
                self.bodies.append(await request.json())
            return Response(status_code=204)

        self.server = ThreadedServer(app).start()
        self.url = f"{self.server.url}/hook?token=abc"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver(failures=2)
    yield started
    started.server.stop()


def test_webhooks_post_each_item_flat_and_retry_until_2xx(sim: Sim, receiver: Receiver) -> None:
    sim.configure(webhook_initial_s=0.01, webhook_max_s=0.02)
    task = inference(webhookURL=receiver.url, numberResults=1, includeCost=True)
    ack = sim.post([task]).json()["data"]
    assert ack == [{"taskType": "imageInference", "taskUUID": task["taskUUID"]}]
    wait_for(lambda: sim.counters()["webhooks"]["delivered"] == 1, timeout=10, what="webhook delivery")
    assert sim.counters()["webhooks"] == {"attempts": 3, "delivered": 1, "failed": 0}
    (body,) = receiver.bodies
    assert body["taskUUID"] == task["taskUUID"]
    assert {"imageUUID", "imageURL", "cost"} <= body.keys()


def test_webhooks_can_be_wrapped_and_give_up_after_the_attempt_limit(sim: Sim, receiver: Receiver) -> None:
    sim.configure(webhook_initial_s=0.01, webhook_max_s=0.01, webhook_attempts=2, webhook_wrap_data=True)
    sim.post([inference(webhookURL=receiver.url)])
    wait_for(lambda: sim.counters()["webhooks"]["failed"] == 1, timeout=10, what="webhook give-up")
    assert receiver.attempts == 2
    sim.configure(webhook_attempts=3)
    task = inference(webhookURL=receiver.url)
    sim.post([task])
    wait_for(lambda: receiver.bodies, timeout=10, what="wrapped webhook")
    assert receiver.bodies[0]["data"][0]["taskUUID"] == task["taskUUID"]


# --- faults, the cap and counters ----------------------------------------------------------------------------------


def test_the_concurrency_cap_answers_429_and_is_never_exceeded(sim: Sim) -> None:
    sim.configure(concurrency_cap=2, latency_s=0.5)
    statuses: list[int] = []

    def submit() -> None:
        with httpx.Client(timeout=10) as http:
            statuses.append(http.post(sim.v1, json=[inference()], headers=KEY).status_code)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for(lambda: sim.counters()["in_flight"] == 2, timeout=10, what="two requests in flight")
    over = sim.post([inference()])
    for thread in threads:
        thread.join(10)
    assert over.status_code == 429
    assert over.json()["errors"][0]["code"] == "rateLimitExceeded"
    assert sorted(statuses) == [200, 200]
    counters = sim.counters()
    assert counters["max_in_flight"] == 2
    assert counters["rate_limited"] == {"cap": 1, "injected": 0, "total": 1}
    assert counters["tasks_received"] == 3 and counters["tasks_executed"] == 2


def test_429_bursts_and_injected_statuses_come_in_order(sim: Sim) -> None:
    sim.configure(rate_limit_burst=2, inject_statuses=[503, 504, 402])
    statuses = [sim.post([inference()]).status_code for _ in range(6)]
    assert statuses == [503, 504, 402, 429, 429, 200]
    counters = sim.counters()
    assert counters["rate_limited"]["injected"] == 2
    assert counters["injected_statuses"] == {"402": 1, "503": 1, "504": 1}
    assert sim.configure(rate_limit_rate=1.0)["rate_limit_burst"] == 0
    assert sim.post([inference()]).json()["errors"][0]["code"] == "rateLimitExceeded"


def test_failure_rate_fails_tasks_with_the_configured_code(sim: Sim) -> None:
    sim.configure(failure_rate=1.0, failure_code="timeoutProvider")
    response = sim.post([inference(), inference()])
    assert response.status_code == 200
    assert [error["code"] for error in response.json()["errors"]] == ["timeoutProvider"] * 2
    assert sim.counters()["tasks_executed"] == 0


def test_a_dropped_answer_is_still_charged_once_and_readable_by_get_response(sim: Sim) -> None:
    sim.configure(drop_next_responses=1, drop_mode="close")
    task = inference()
    with pytest.raises(httpx.RemoteProtocolError):
        sim.post([task])
    assert sim.post([get_response(task["taskUUID"])]).json()["data"][0]["status"] == "success"
    counters = sim.counters()
    assert counters["executed_by_task"] == {task["taskUUID"]: 1}
    assert counters["dropped_responses"] == {"close": 1}


def test_a_lost_request_records_nothing(sim: Sim) -> None:
    sim.configure(drop_next_responses=1, drop_mode="lose")
    task = inference()
    with pytest.raises(httpx.RemoteProtocolError):
        sim.post([task])
    assert sim.post([get_response(task["taskUUID"])]).json()["errors"][0]["code"] == "taskFailedOrNotFound"
    assert sim.post([task]).status_code == 200
    assert sim.counters()["executed_by_task"] == {task["taskUUID"]: 1}


def test_config_is_validated_and_reset_restores_the_start(sim: Sim) -> None:
    bad = sim.http.patch(f"{sim.url}/_sim/config", json={"failure_rate": 2})
    assert bad.status_code == 422
    assert sim.http.patch(f"{sim.url}/_sim/config", json={"no_such_knob": 1}).status_code == 422
    assert sim.configure(latency_s=[0.1, 0.2])["latency_s"] == [0.1, 0.2]
    task = inference()
    sim.post([task])
    assert sim.http.post(f"{sim.url}/_sim/reset").json() == {"status": "reset"}
    assert sim.http.get(f"{sim.url}/_sim/config").json()["latency_s"] == 0.0
    assert sim.counters()["requests_received"] == 0
    assert sim.post([task]).status_code == 200  # the taskUUID is forgotten too


def test_cli_serves_the_simulator_and_prints_the_url(tmp_path: Any) -> None:
    port = free_port()
    args = ["simulate", "runware", "--port", str(port), "--api-key", "cli-key", "--latency", "0,0.01"]
    args += ["--knob", "inject_statuses=[503]", "--knob", "failure_code=inferenceError"]
    child = Child(args, Settings.load(), tmp_path / "sim.log")
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/_sim/counters")
        statuses = [
            httpx.post(f"http://127.0.0.1:{port}/v1", json=[inference()], headers={"Authorization": "Bearer cli-key"})
            for _ in range(2)
        ]
        assert [response.status_code for response in statuses] == [503, 200]
        config = httpx.get(f"http://127.0.0.1:{port}/_sim/config").json()
        assert (config["latency_s"], config["failure_code"], config["api_key"]) == (
            [0.0, 0.01],
            "inferenceError",
            "cli-key",
        )
        assert f"STRANGLER_RUNWARE_URL=http://127.0.0.1:{port}/v1" in child.output()
    finally:
        child.stop()
