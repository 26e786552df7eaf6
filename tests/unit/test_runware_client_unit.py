"""The Runware client without a network: task validation, answer parsing, error mapping and the recovery flow."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from strangler_bridge import fetch
from strangler_bridge.errors import (
    ConfigError,
    InvalidInput,
    ProviderAuthError,
    ProviderError,
    ProviderJobFailed,
    ProviderNotFound,
    ProviderPaymentRequired,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.http import RetryPolicy
from strangler_bridge.providers.runware.client import (
    AsyncRunwareClient,
    ImageTask,
    RecoveryPolicy,
    RunwareClient,
    TaskError,
    parse_webhook_payload,
)
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.unit

URL = "https://runware.test/v1"
FAST = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.002, jitter_s=0.0)
QUICK_POLL = RecoveryPolicy(initial_s=0.001, factor=1.0, max_s=0.001, timeout_s=5.0)
BASE = {"positive_prompt": "a lighthouse at dusk", "width": 512, "height": 512, "model": "runware:100@1"}

Handler = Callable[[httpx.Request], httpx.Response]


def task(**changes: Any) -> ImageTask:
    return ImageTask(**{**BASE, **changes})


def result_item(task_uuid: str, n: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": task_uuid,
        "imageUUID": str(uuid.UUID(int=n + 1, version=4)),
        "imageURL": f"https://im.runware.test/{n}.png",
        "seed": 10 + n,
        "cost": 0.002,
        **extra,
    }


def error_body(code: str, task_uuid: str | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"code": code, "message": f"{code} happened", **extra}
    if task_uuid:
        item["taskUUID"] = task_uuid
    return item


class Script:
    """A MockTransport handler answering from a list of callables or responses, recording each request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) if request.content else None for request in self.requests]

    def kinds(self) -> list[str]:
        return [body[0]["taskType"] if body else "GET" for body in self.bodies()]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)


def client_for(script: Script, **kwargs: Any) -> RunwareClient:
    http = httpx.Client(transport=httpx.MockTransport(script))
    kwargs.setdefault("recovery", QUICK_POLL)
    return RunwareClient(URL, "secret-key", retry=FAST, http=http, **kwargs)


def ok(*data: dict[str, Any], errors: list[dict[str, Any]] | None = None, status: int = 200) -> httpx.Response:
    body: dict[str, Any] = {"data": list(data)}
    if errors:
        body["errors"] = errors
    return httpx.Response(status, json=body)


# --- ImageTask validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task_uuid": "not-a-uuid"}, "task_uuid"),
        ({"task_uuid": str(uuid.uuid1())}, "task_uuid"),
        ({"positive_prompt": "a"}, "positive_prompt"),
        ({"positive_prompt": "x" * 3001}, "positive_prompt"),
        ({"negative_prompt": "b"}, "negative_prompt"),
        ({"width": 100}, "width"),
        ({"width": 2112}, "width"),
        ({"width": 500}, "width"),
        ({"height": 64}, "height"),
        ({"height": 520}, "height"),
        ({"model": "flux-schnell"}, "model"),
        ({"model": "runware:100"}, "model"),
        ({"number_results": 0}, "number_results"),
        ({"number_results": 21}, "number_results"),
        ({"output_type": "png"}, "output_type"),
        ({"output_format": "GIF"}, "output_format"),
        ({"output_quality": 100}, "output_quality"),
        ({"include_cost": "perhaps"}, "include_cost"),
        ({"seed": 0}, "seed"),
        ({"steps": 101}, "steps"),
        ({"cfg_scale": 50.5}, "cfg_scale"),
        ({"delivery_method": "stream"}, "delivery_method"),
        ({"webhook_url": "ftp://hooks.test/x"}, "webhook_url"),
        ({"webhook_url": "/relative"}, "webhook_url"),
        ({"widht": 512}, "widht"),
    ],
)
def test_a_bad_field_raises_invalid_input_naming_it(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        task(**changes)
    assert caught.value.field == field
    assert field in caught.value.message


def test_limits_are_inclusive_and_output_format_accepts_any_case() -> None:
    edge = task(width=128, height=2048, positive_prompt="ab", number_results=20, output_format="webp", cfg_scale=50)
    assert edge.output_format == "WEBP"


def test_task_uuids_default_to_fresh_uuid4s() -> None:
    first, second = task(), task()
    assert uuid.UUID(first.task_uuid).version == 4
    assert first.task_uuid != second.task_uuid


def test_to_wire_uses_runware_names_and_leaves_out_unset_fields() -> None:
    wire = task(
        task_uuid="A770F077-F413-47DE-9DAC-BE0B26A35DA6",
        negative_prompt="blurry",
        seed=42,
        steps=30,
        cfg_scale=7.5,
        output_format="jpg",
        check_content=True,
        delivery_method="async",
        webhook_url="https://hooks.test/runware?token=t",
    ).to_wire()
    assert wire == {
        "taskType": "imageInference",
        "taskUUID": "a770f077-f413-47de-9dac-be0b26a35da6",
        "positivePrompt": "a lighthouse at dusk",
        "negativePrompt": "blurry",
        "width": 512,
        "height": 512,
        "model": "runware:100@1",
        "numberResults": 1,
        "outputType": "URL",
        "outputFormat": "JPG",
        "includeCost": True,
        "seed": 42,
        "steps": 30,
        "CFGScale": 7.5,
        "deliveryMethod": "async",
        "webhookURL": "https://hooks.test/runware?token=t",
        "safety": {"checkContent": True},
    }


def test_unvalidated_tasks_are_checked_again_before_sending() -> None:
    script = Script(ok())
    sneaky = ImageTask.model_construct(**{**task().model_dump(), "width": 100})
    with client_for(script) as client, pytest.raises(InvalidInput) as caught:
        client.infer([sneaky])
    assert caught.value.field == "width"
    assert script.requests == []


@pytest.mark.parametrize("tasks", [[], "duplicate"])
def test_empty_batches_and_shared_task_uuids_are_refused_before_sending(tasks: Any) -> None:
    script = Script(ok())
    if tasks == "duplicate":
        one = task()
        tasks = [one, task(task_uuid=one.task_uuid)]
    with client_for(script) as client, pytest.raises(InvalidInput):
        client.infer(tasks)
    assert script.requests == []


# --- answers -------------------------------------------------------------------------------------------------------


def test_infer_posts_a_json_array_with_bearer_auth_and_parses_results() -> None:
    one = task(number_results=2)
    script = Script(ok(result_item(one.task_uuid, 0), result_item(one.task_uuid, 1, NSFWContent=False)))
    with client_for(script) as client:
        outcome = client.infer([one])
    request = script.requests[0]
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["authorization"] == "Bearer secret-key"
    assert script.bodies() == [[one.to_wire()]]
    assert [r.seed for r in outcome.results] == [10, 11]
    assert outcome.results[1].nsfw_content is False
    assert outcome.total_cost == pytest.approx(0.004)
    assert outcome.errors == [] and outcome.processing == []


def test_partial_success_is_returned_not_raised() -> None:
    good, bad = task(), task()
    answer = ok(result_item(good.task_uuid), errors=[error_body("timeoutProvider", bad.task_uuid)])
    with client_for(Script(answer)) as client:
        outcome = client.infer([good, bad])
    assert [r.task_uuid for r in outcome.results] == [good.task_uuid]
    assert outcome.error_for(bad.task_uuid) == TaskError(
        code="timeoutProvider", message="timeoutProvider happened", task_uuid=bad.task_uuid
    )
    assert outcome.cost_by_task() == {good.task_uuid: pytest.approx(0.002)}


def test_partial_success_on_a_400_is_returned_too() -> None:
    good, bad = task(), task()
    answer = ok(result_item(good.task_uuid), errors=[error_body("invalidWidth", bad.task_uuid)], status=400)
    with client_for(Script(answer)) as client:
        outcome = client.infer([good, bad])
    assert len(outcome.results) == 1
    assert outcome.errors[0].code == "invalidWidth"


def test_every_task_failing_on_a_4xx_raises_with_runware_code_message_and_parameter() -> None:
    one, two = task(), task()
    errors = [
        error_body("invalidPositivePrompt", one.task_uuid, parameter="positivePrompt"),
        error_body("invalidWidth", two.task_uuid, parameter="width"),
    ]
    script = Script(httpx.Response(400, json={"errors": errors}))
    with client_for(script) as client, pytest.raises(ProviderRejected) as caught:
        client.infer([one, two])
    error = caught.value
    assert (error.provider, error.status_code, error.provider_code, error.field) == (
        "runware",
        400,
        "invalidPositivePrompt",
        "positivePrompt",
    )
    assert "invalidPositivePrompt happened" in error.message and "invalidWidth" in error.message


@pytest.mark.parametrize(
    ("status", "kind", "attempts"),
    [
        (401, ProviderAuthError, 1),
        (403, ProviderAuthError, 1),
        (402, ProviderPaymentRequired, 1),
        (404, ProviderNotFound, 1),
        (409, ProviderRejected, 1),
        (429, ProviderRateLimited, 3),
        (500, ProviderUnavailable, 1),
        (502, ProviderUnavailable, 1),
        (503, ProviderUnavailable, 3),
        (504, ProviderUnavailable, 3),
    ],
)
def test_statuses_map_to_errors_and_only_429_503_504_are_retried(
    status: int, kind: type[ProviderError], attempts: int
) -> None:
    script = Script(httpx.Response(status, json={"errors": [error_body(f"code{status}", parameter="p")]}))
    with client_for(script) as client, pytest.raises(kind) as caught:
        client.infer([task()])
    assert type(caught.value) is kind
    assert (caught.value.status_code, caught.value.provider_code) == (status, f"code{status}")
    assert len(script.requests) == attempts


def test_a_retried_status_that_clears_gives_the_result() -> None:
    one = task()
    script = Script(httpx.Response(429, json={}), httpx.Response(503, json={}), ok(result_item(one.task_uuid)))
    with client_for(script) as client:
        assert len(client.infer([one]).results) == 1
    assert len(script.requests) == 3


def test_a_non_json_error_body_still_maps_by_status() -> None:
    script = Script(httpx.Response(401, text="<html>nope</html>"))
    with client_for(script) as client, pytest.raises(ProviderAuthError, match="nope"):
        client.infer([task()])


def test_request_level_errors_in_a_200_are_raised_by_their_code() -> None:
    script = Script(httpx.Response(200, json={"data": [], "errors": [error_body("insufficientCredits")]}))
    with client_for(script) as client, pytest.raises(ProviderPaymentRequired):
        client.infer([task()])


def test_an_unreadable_200_is_a_provider_error() -> None:
    script = Script(httpx.Response(200, text="<html>maintenance</html>"))
    with client_for(script) as client, pytest.raises(ProviderError, match="unreadable"):
        client.infer([task()])


def test_malformed_items_are_provider_errors_and_malformed_webhooks_invalid_input() -> None:
    one = task()
    script = Script(ok(result_item(one.task_uuid, seed="not-a-number")))
    with client_for(script) as client, pytest.raises(ProviderError, match="malformed"):
        client.infer([one])
    with pytest.raises(InvalidInput):
        parse_webhook_payload({"taskUUID": "t", "imageUUID": "i", "cost": "free"})
    with pytest.raises(InvalidInput):
        parse_webhook_payload(["not", "an", "object"])


def test_async_acks_full_or_empty_leave_tasks_processing() -> None:
    one, two = task(delivery_method="async"), task(delivery_method="async")
    ack = ok({"taskType": "imageInference", "taskUUID": one.task_uuid})
    with client_for(Script(ack)) as client:
        assert client.infer([one, two]).processing == [one.task_uuid, two.task_uuid]
    with client_for(Script(ok())) as client:
        assert client.infer([one]).processing == [one.task_uuid]


def test_get_response_is_cumulative_and_reads_errors_nested_in_data() -> None:
    one = task()
    nested = {"taskUUID": one.task_uuid, "status": "error", "error": {"code": "inferenceError", "message": "boom"}}
    answer = ok(
        result_item(one.task_uuid, 0, status="success"),
        result_item(one.task_uuid, 0, status="success"),
        {"taskType": "imageInference", "taskUUID": one.task_uuid, "status": "processing"},
        nested,
    )
    with client_for(Script(answer)) as client:
        outcome = client.get_response(one.task_uuid)
    assert len(outcome.results) == 1
    assert outcome.processing == [one.task_uuid]
    assert outcome.errors[0].code == "inferenceError"
    body = Script(answer)
    with client_for(body) as client:
        client.get_response(one.task_uuid)
    assert body.bodies() == [[{"taskType": "getResponse", "taskUUID": one.task_uuid}]]


def test_get_response_returns_a_task_scoped_not_found_instead_of_raising() -> None:
    one = task()
    answer = httpx.Response(400, json={"errors": [error_body("taskFailedOrNotFound", one.task_uuid, status="error")]})
    with client_for(Script(answer)) as client:
        assert client.get_response(one.task_uuid).errors[0].code == "taskFailedOrNotFound"
        with pytest.raises(InvalidInput):
            client.get_response("nope")


def test_image_bytes_decodes_base64_and_data_uris() -> None:
    raw = b"\x89PNG fake"
    encoded = base64.b64encode(raw).decode()
    one = task()
    answer = ok(
        {"taskUUID": one.task_uuid, "imageUUID": str(uuid.uuid4()), "imageBase64Data": encoded},
        {"taskUUID": one.task_uuid, "imageUUID": str(uuid.uuid4()), "imageDataURI": f"data:image/png;base64,{encoded}"},
        result_item(one.task_uuid),
    )
    with client_for(Script(answer)) as client:
        images = [r.image_bytes() for r in client.infer([one]).results]
    assert images == [raw, raw, None]


@pytest.mark.parametrize(
    ("payload", "shape"),
    [
        ({"taskUUID": "t", "imageUUID": "i", "imageURL": "https://x/i.png", "cost": 0.01}, "result"),
        ({"data": [{"taskUUID": "t", "imageUUID": "i", "imageURL": "https://x/i.png"}]}, "result"),
        ({"code": "timeoutProvider", "message": "late", "taskUUID": "t", "status": "error"}, "error"),
        ({"errors": [{"code": "timeoutProvider", "message": "late", "taskUUID": "t"}]}, "error"),
    ],
)
def test_webhook_bodies_flat_or_wrapped(payload: dict[str, Any], shape: str) -> None:
    outcome = parse_webhook_payload(payload)
    if shape == "result":
        assert [r.image_uuid for r in outcome.results] == ["i"]
    else:
        assert outcome.error_for("t") is not None


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("invalidApiKey", ProviderAuthError),
        ("insufficientCredits", ProviderPaymentRequired),
        ("rateLimitExceeded", ProviderRateLimited),
        ("taskFailedOrNotFound", ProviderNotFound),
        ("invalidWidth", ProviderRejected),
        ("conflictTaskUUID", ProviderRejected),
        ("internalServerError", ProviderUnavailable),
        ("timeoutProvider", ProviderJobFailed),
    ],
)
def test_task_errors_convert_to_the_error_tree_by_code_family(code: str, kind: type[ProviderError]) -> None:
    error = TaskError(code=code, message="m", parameter=["width", "height"]).to_exception()
    assert type(error) is kind
    assert error.field == "width,height"


# --- transport, settings, downloads --------------------------------------------------------------------------------


def test_submit_is_resent_after_connect_errors_but_not_after_a_read_timeout() -> None:
    one = task()
    script = Script(httpx.ConnectError("refused"), ok(result_item(one.task_uuid)))
    with client_for(script) as client:
        assert len(client.infer([one]).results) == 1
    script = Script(httpx.ReadTimeout("slow"))
    with client_for(script) as client, pytest.raises(ProviderUnavailable, match="ReadTimeout"):
        client.infer([one])
    assert len(script.requests) == 1


def test_from_settings_names_the_missing_key() -> None:
    with pytest.raises(ConfigError, match="STRANGLER_RUNWARE_API_KEY"):
        RunwareClient.from_settings(Settings.load(runware_api_key=None))
    with pytest.raises(ConfigError, match="STRANGLER_RUNWARE_API_KEY"):
        RunwareClient.from_settings(Settings.load(runware_api_key=""))
    with RunwareClient.from_settings(Settings.load(runware_api_key="k", runware_url="http://sim.test/v1")) as client:
        assert client.url == "http://sim.test/v1"


def test_download_goes_through_the_fetch_path_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "resolve", lambda host, port: ["127.0.0.1"])  # *.test is loopback here (no DNS)
    allowed = ["im.runware.test"]
    script = Script(httpx.Response(200, content=b"x" * 100))
    with client_for(script) as client:
        assert client.download("https://im.runware.test/a.png", allow_hosts=allowed) == b"x" * 100
        with pytest.raises(ProviderRejected, match="larger than 99"):
            client.download("https://im.runware.test/a.png", max_bytes=99, allow_hosts=allowed)
        with pytest.raises(ProviderRejected, match="file"):
            client.download("file:///etc/passwd")
        with pytest.raises(ProviderRejected, match="non-public"):
            client.download("https://im.runware.test/a.png")
    assert "authorization" not in script.requests[0].headers
    assert (script.requests[0].url.host, script.requests[0].headers["host"]) == ("127.0.0.1", "im.runware.test")
    with client_for(Script(httpx.Response(404))) as client, pytest.raises(ProviderRejected, match="404"):
        client.download("https://im.runware.test/gone.png", allow_hosts=allowed)


# --- never pay twice -----------------------------------------------------------------------------------------------


def polled(task_uuid: str, *states: str) -> list[httpx.Response]:
    answers = []
    for state in states:
        if state == "processing":
            answers.append(ok({"taskType": "imageInference", "taskUUID": task_uuid, "status": "processing"}))
        elif state == "success":
            answers.append(ok(result_item(task_uuid, status="success")))
        elif state == "unknown":
            not_found = error_body("taskFailedOrNotFound", task_uuid, status="error")
            answers.append(httpx.Response(400, json={"errors": [not_found]}))
        elif state == "failed":
            answers.append(ok(errors=[error_body("inferenceError", task_uuid, status="error")]))
    return answers


def test_a_lost_answer_is_recovered_by_polling_not_by_paying_again() -> None:
    one = task()
    script = Script(httpx.ReadTimeout("lost"), *polled(one.task_uuid, "processing", "processing", "success"))
    with client_for(script) as client:
        outcome = client.infer_or_recover(one)
    assert len(outcome.results) == 1
    assert script.kinds() == ["imageInference", "getResponse", "getResponse", "getResponse"]


def test_a_dropped_connection_for_a_task_runware_never_saw_resubmits_the_same_uuid() -> None:
    one = task()
    script = Script(httpx.RemoteProtocolError("cut"), *polled(one.task_uuid, "unknown"), ok(result_item(one.task_uuid)))
    with client_for(script) as client:
        assert len(client.infer_or_recover(one).results) == 1
    assert script.kinds() == ["imageInference", "getResponse", "imageInference"]
    assert script.bodies()[0] == script.bodies()[2]


def test_conflict_task_uuid_means_runware_has_it_so_it_is_polled() -> None:
    one = task()
    conflict = httpx.Response(400, json={"errors": [error_body("conflictTaskUUID", one.task_uuid)]})
    script = Script(conflict, *polled(one.task_uuid, "success"))
    with client_for(script) as client:
        assert len(client.infer_or_recover(one).results) == 1
    assert script.kinds() == ["imageInference", "getResponse"]


def test_a_conflicting_task_that_getresponse_cannot_find_is_reported_not_resubmitted() -> None:
    one = task()
    conflict = httpx.Response(400, json={"errors": [error_body("conflictTaskUUID", one.task_uuid)]})
    script = Script(conflict, *polled(one.task_uuid, "unknown"))
    with client_for(script) as client:
        outcome = client.infer_or_recover(one)
    assert outcome.errors[0].code == "taskFailedOrNotFound"
    assert script.kinds() == ["imageInference", "getResponse"]


def test_a_sync_answer_without_the_images_is_completed_by_polling() -> None:
    one = task()
    script = Script(ok(), *polled(one.task_uuid, "processing", "success"))
    with client_for(script) as client:
        assert len(client.infer_or_recover(one).results) == 1
    assert script.kinds() == ["imageInference", "getResponse", "getResponse"]


def test_maybe_sent_asks_runware_before_submitting() -> None:
    one = task()
    script = Script(*polled(one.task_uuid, "failed"))
    with client_for(script) as client:
        outcome = client.infer_or_recover(one, maybe_sent=True)
    assert outcome.errors[0].code == "inferenceError"
    assert script.kinds() == ["getResponse"]


def test_polling_is_bounded_and_then_reports_the_task_as_processing() -> None:
    one = task()
    script = Script(httpx.ReadTimeout("lost"), *polled(one.task_uuid, "processing"))
    bounded = RecoveryPolicy(initial_s=0.01, factor=1.0, max_s=0.01, timeout_s=0.05)
    with client_for(script, recovery=bounded) as client:
        outcome = client.infer_or_recover(one)
    assert outcome.processing == [one.task_uuid]
    assert 1 <= script.kinds().count("getResponse") <= 6  # 0.05 s of polling every 0.01 s


def test_async_tasks_are_not_polled_to_completion() -> None:
    one = task(delivery_method="async")
    script = Script(httpx.ReadTimeout("lost"), *polled(one.task_uuid, "processing"))
    with client_for(script) as client:
        assert client.infer_or_recover(one).processing == [one.task_uuid]
    assert script.kinds() == ["imageInference", "getResponse"]


def test_resubmissions_are_bounded() -> None:
    one = task()
    script = Script(*[httpx.ReadTimeout("lost"), *polled(one.task_uuid, "unknown")] * 3)
    recovery = RecoveryPolicy(initial_s=0.001, max_submits=3)
    with client_for(script, recovery=recovery) as client, pytest.raises(ProviderUnavailable, match="after 3"):
        client.infer_or_recover(one)
    assert script.kinds().count("imageInference") == 3


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.Response(400, json={"errors": [error_body("invalidModel", parameter="m")]})],
)
def test_failures_that_prove_nothing_ran_are_raised_without_polling(failure: Any) -> None:
    script = Script(failure)
    with client_for(script) as client, pytest.raises(ProviderError):
        client.infer_or_recover(task())
    assert "getResponse" not in script.kinds()


def test_the_async_client_runs_the_same_operations_and_flow() -> None:
    one = task()
    script = Script(httpx.ReadTimeout("lost"), *polled(one.task_uuid, "unknown"), ok(result_item(one.task_uuid)), ok())

    async def handler(request: httpx.Request) -> httpx.Response:
        return script(request)

    async def main() -> tuple[int, list[str]]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncRunwareClient(URL, "k", retry=FAST, recovery=QUICK_POLL, http=http) as client:
            outcome = await client.infer_or_recover(one)
            ack = await client.infer([task(delivery_method="async")])
        await http.aclose()
        return len(outcome.results), ack.processing

    results, processing = asyncio.run(main())
    assert results == 1 and len(processing) == 1
    assert script.kinds() == ["imageInference", "getResponse", "imageInference", "imageInference"]
