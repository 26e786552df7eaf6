"""The RunPod client without a network: wire models, requests built, error mapping, retry policy, TTS contract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from strangler_bridge.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderPaymentRequired,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.http import RetryPolicy
from strangler_bridge.providers.runpod.client import (
    AsyncRunPodClient,
    RunPodClient,
    RunPodJob,
    RunPodPolicy,
    RunPodStatus,
    parse_tts_output,
    tts_input,
)
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.unit

FAST = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.002, jitter_s=0.0)
KEY = "rp-secret-key-123"
ENDPOINT = "https://api.runpod.ai/v2/abc123"


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> RunPodClient:
    return RunPodClient(ENDPOINT, KEY, retry=FAST, http=httpx.Client(transport=httpx.MockTransport(handler)))


def _recorder(*responses: httpx.Response) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler, seen


# --- wire models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [s.value for s in RunPodStatus])
def test_every_state_parses_and_exactly_four_are_terminal(state: str) -> None:
    job = RunPodJob.parse({"id": "j-u1", "status": state})
    assert job.status.value == state
    assert job.status.terminal == (state in {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


def test_status_object_fields_map_from_camel_case_and_extras_are_kept() -> None:
    job = RunPodJob.parse(
        {
            "id": "sync-1-u1",
            "status": "COMPLETED",
            "delayTime": 824,
            "executionTime": 3391,
            "output": [{"seed": 1}],
            "workerId": "oqk7ao1uomckye",
            "retries": 0,
            "input": {"prompt": "hi"},
            "webhook": "https://example.com/hook",
        }
    )
    assert (job.delay_time_ms, job.execution_time_ms, job.worker_id, job.retries) == (824, 3391, "oqk7ao1uomckye", 0)
    assert job.input == {"prompt": "hi"}
    assert job.to_wire()["webhook"] == "https://example.com/hook"
    assert RunPodJob(id="x", status=RunPodStatus.IN_QUEUE, delay_time_ms=5).to_wire() == {
        "id": "x",
        "status": "IN_QUEUE",
        "delayTime": 5,
    }


def test_running_is_read_as_in_progress() -> None:
    assert RunPodJob.parse({"id": "j", "status": "RUNNING"}).status is RunPodStatus.IN_PROGRESS


MALFORMED = [None, [], "COMPLETED", {"status": "COMPLETED"}, {"id": "j", "status": "DONE"}, {"id": "", "status": "X"}]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_status_object_is_rejected_with_the_provider_named(data: object) -> None:
    with pytest.raises(ProviderRejected) as caught:
        RunPodJob.parse(data)
    assert caught.value.provider == "runpod"


def test_completed_without_output_is_reported_as_such() -> None:
    assert not RunPodJob.parse({"id": "j", "status": "COMPLETED"}).has_output
    assert not RunPodJob.parse({"id": "j", "status": "COMPLETED", "output": {}}).has_output
    assert RunPodJob.parse({"id": "j", "status": "COMPLETED", "output": 0}).has_output
    assert RunPodJob.parse({"id": "j", "status": "COMPLETED", "output": {"a": 1}}).has_output


def test_error_holding_json_is_decoded_and_plain_text_kept() -> None:
    raised = json.dumps({"error_type": "<class 'ValueError'>", "error_message": "bad seed", "error_traceback": "..."})
    failed = RunPodJob.parse({"id": "j", "status": "FAILED", "error": raised})
    assert failed.error_detail() == {
        "error_type": "<class 'ValueError'>",
        "error_message": "bad seed",
        "error_traceback": "...",
    }
    assert failed.error_message() == "<class 'ValueError'>: bad seed"
    plain = RunPodJob.parse({"id": "j", "status": "FAILED", "error": "CUDA out of memory"})
    assert plain.error_detail() == plain.error_message() == "CUDA out of memory"
    assert RunPodJob.parse({"id": "j", "status": "FAILED", "error": "42"}).error_detail() == "42"
    assert RunPodJob.parse({"id": "j", "status": "COMPLETED"}).error_detail() is None


def test_policy_goes_on_the_wire_in_camel_case_without_unset_fields() -> None:
    assert RunPodPolicy(execution_timeout_ms=60_000, ttl_ms=3_600_000).to_wire() == {
        "executionTimeout": 60_000,
        "ttl": 3_600_000,
    }
    assert RunPodPolicy.model_validate({"lowPriority": True}).low_priority is True


# --- requests --------------------------------------------------------------------------------------


def test_run_sends_input_webhook_and_policy_with_a_bearer_key() -> None:
    handler, seen = _recorder(httpx.Response(200, json={"id": "j-u1", "status": "IN_QUEUE"}))
    with _client(handler) as client:
        job = client.run({"prompt": "hi"}, webhook="https://me/hook?t=1", policy=RunPodPolicy(ttl_ms=60_000))
    assert job.id == "j-u1" and job.status is RunPodStatus.IN_QUEUE
    request = seen[0]
    assert (request.method, str(request.url)) == ("POST", f"{ENDPOINT}/run")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "input": {"prompt": "hi"},
        "webhook": "https://me/hook?t=1",
        "policy": {"ttl": 60_000},
    }
    assert request.extensions["timeout"]["read"] == 10.0


def test_runsync_passes_wait_and_reads_long_enough_for_it() -> None:
    handler, seen = _recorder(httpx.Response(200, json={"id": "sync-1", "status": "IN_PROGRESS"}))
    with _client(handler) as client:
        assert client.runsync({"a": 1}, wait_ms=30_000).status is RunPodStatus.IN_PROGRESS
        client.runsync({"a": 1})
    assert str(seen[0].url) == f"{ENDPOINT}/runsync?wait=30000"
    assert seen[0].extensions["timeout"]["read"] == pytest.approx(40.0)
    assert str(seen[1].url) == f"{ENDPOINT}/runsync"
    assert seen[1].extensions["timeout"]["read"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("call", "method", "path"),
    [
        (lambda c: c.status("a/b"), "GET", "/status/a%2Fb"),
        (lambda c: c.cancel("j-u1"), "POST", "/cancel/j-u1"),
        (lambda c: c.retry("j-u1"), "POST", "/retry/j-u1"),
    ],
)
def test_job_operations_hit_the_job_path(call: Callable[[RunPodClient], RunPodJob], method: str, path: str) -> None:
    handler, seen = _recorder(httpx.Response(200, json={"id": "j-u1", "status": "CANCELLED"}))
    with _client(handler) as client:
        assert call(client).id == "j-u1"
    assert (seen[0].method, seen[0].url.raw_path.decode()) == (method, "/v2/abc123" + path)


def test_health_and_purge_are_typed() -> None:
    health_body = {
        "jobs": {"completed": 1, "failed": 5, "inProgress": 0, "inQueue": 2, "retried": 0},
        "workers": {"idle": 1, "running": 0, "outdated": 3},
    }
    handler, seen = _recorder(
        httpx.Response(200, json=health_body), httpx.Response(200, json={"removed": 2, "status": "completed"})
    )
    with _client(handler) as client:
        health = client.health()
        purge = client.purge_queue()
    assert (health.jobs.failed, health.jobs.in_queue, health.workers.idle) == (5, 2, 1)
    assert health.workers.model_extra == {"outdated": 3}
    assert (purge.removed, purge.status) == (2, "completed")
    assert [r.method for r in seen] == ["GET", "POST"]


# --- errors and retries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "tries"),
    [
        (400, ProviderRejected, 1),
        (401, ProviderAuthError, 1),
        (402, ProviderPaymentRequired, 1),
        (403, ProviderAuthError, 1),
        (404, ProviderNotFound, 1),
        (413, ProviderRejected, 1),
        (429, ProviderRateLimited, 3),
        (500, ProviderUnavailable, 3),
        (503, ProviderUnavailable, 3),
    ],
)
def test_status_codes_map_to_errors_with_the_providers_message(status: int, kind: type, tries: int) -> None:
    handler, seen = _recorder(httpx.Response(status, json={"error": f"said {status}"}))
    with _client(handler) as client, pytest.raises(kind) as caught:
        client.status("j-u1")
    assert caught.type is kind
    assert (caught.value.status_code, caught.value.provider) == (status, "runpod")
    assert f"said {status}" in caught.value.message
    assert len(seen) == tries


def test_plain_text_error_bodies_are_quoted() -> None:
    handler, _ = _recorder(httpx.Response(401, text="Unauthorized"))
    with _client(handler) as client, pytest.raises(ProviderAuthError, match="Unauthorized"):
        client.health()


def test_429_and_5xx_are_retried_over_https_then_succeed() -> None:
    handler, seen = _recorder(
        httpx.Response(429), httpx.Response(502), httpx.Response(200, json={"id": "j", "status": "IN_QUEUE"})
    )
    with _client(handler) as client:
        assert client.run({"a": 1}).id == "j"
    assert [r.url.scheme for r in seen] == ["https"] * 3


def test_a_submit_is_not_resent_after_a_read_timeout() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    with _client(handler) as client, pytest.raises(ProviderUnavailable, match="outcome is unknown"):
        client.run({"a": 1})
    assert len(calls) == 1


def test_reads_are_retried_after_a_read_timeout() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    with _client(handler) as client, pytest.raises(ProviderUnavailable, match="ReadTimeout"):
        client.status("j")
    assert len(calls) == 3


def test_non_json_success_is_rejected() -> None:
    handler, _ = _recorder(httpx.Response(200, text="<html>proxy</html>"))
    with _client(handler) as client, pytest.raises(ProviderRejected, match="not JSON"):
        client.status("j")


def test_the_api_key_never_shows_in_errors_or_repr() -> None:
    handler, _ = _recorder(httpx.Response(401, json={"error": "bad key"}))
    client = _client(handler)
    with pytest.raises(ProviderAuthError) as caught:
        client.health()
    assert KEY not in str(caught.value) and KEY not in repr(client)


# --- settings and async ----------------------------------------------------------------------------


def test_from_settings_names_the_missing_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        RunPodClient.from_settings(Settings.load(runpod_endpoint_url=None, runpod_api_key=None))
    assert "STRANGLER_RUNPOD_ENDPOINT_URL" in str(caught.value)
    assert "STRANGLER_RUNPOD_API_KEY" in str(caught.value)
    settings = Settings.load(runpod_endpoint_url=ENDPOINT, runpod_api_key=KEY, http_timeout_s=3.0)
    with RunPodClient.from_settings(settings) as client:
        assert client.endpoint_url == ENDPOINT and client.timeout_s == 3.0


def test_async_client_runs_the_same_operations() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(503)
        return httpx.Response(200, json={"id": "j", "status": "COMPLETED", "output": {"ok": True}})

    async def main() -> RunPodJob:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncRunPodClient(ENDPOINT, KEY, retry=FAST, http=http) as client:
            return await client.status("j")

    job = asyncio.run(main())
    assert job.output == {"ok": True} and len(seen) == 2


def test_async_client_maps_errors_the_same_way() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "job expired"})

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncRunPodClient(ENDPOINT, KEY, retry=FAST, http=http) as client:
            await client.cancel("j")

    with pytest.raises(ProviderNotFound, match="job expired"):
        asyncio.run(main())


# --- the TTS contract ------------------------------------------------------------------------------


def test_tts_input_follows_the_chunk_contract() -> None:
    assert tts_input([(0, "Hello.", "narrator"), (3, "Bye.", "kid")], "wav") == {
        "chunks": [
            {"index": 0, "text": "Hello.", "voice": "narrator"},
            {"index": 3, "text": "Bye.", "voice": "kid"},
        ],
        "format": "wav",
    }


def test_tts_output_parses_both_audio_forms_in_index_order() -> None:
    chunks = parse_tts_output(
        {
            "chunks": [
                {"index": 1, "audio_url": "https://x/1.wav", "duration_s": 1.5},
                {"index": 0, "audio_base64": "UklGRg==", "duration_s": 0.3, "extra": "ignored"},
            ]
        }
    )
    assert [(c.index, c.audio_base64, c.audio_url) for c in chunks] == [
        (0, "UklGRg==", None),
        (1, None, "https://x/1.wav"),
    ]


@pytest.mark.parametrize(
    ("output", "words"),
    [
        (None, '"chunks" list'),
        ({"audio_url": "x"}, "keys ['audio_url']"),
        ({"chunks": [{"index": 0}]}, "chunks[0]"),
        ({"chunks": [{"audio_url": "x"}]}, "chunks[0]"),
        ({"chunks": [{"index": 0, "audio_url": "a"}, {"index": 0, "audio_url": "b"}]}, "repeats"),
    ],
)
def test_bad_tts_output_is_rejected_clearly(output: object, words: str) -> None:
    with pytest.raises(ProviderRejected, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_tts_output(output)


def test_a_malformed_endpoint_or_empty_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="STRANGLER_RUNPOD_ENDPOINT_URL"):
        RunPodClient("api.runpod.ai/v2/x", KEY)
    with pytest.raises(ConfigError, match="STRANGLER_RUNPOD_API_KEY"):
        RunPodClient(ENDPOINT, "")


# --- the runpod SDK's local test API (python handler.py --rp_serve_api) ------------------------------


def test_a_test_api_job_id_is_noticed_once_and_later_submits_carry_no_webhook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, seen = _recorder(httpx.Response(200, json={"id": "test-1b2c", "status": "IN_PROGRESS"}))
    client = _client(handler)
    with caplog.at_level("WARNING", logger="strangler_bridge.providers.runpod.client"):
        first = client.run({"x": 1}, webhook="https://bridge.example/tts/callback?token=t")
        client.run({"x": 2}, webhook="https://bridge.example/tts/callback?token=t")
    assert first.status is RunPodStatus.IN_PROGRESS and client.local_test_api
    assert "webhook" in json.loads(seen[0].content) and "webhook" not in json.loads(seen[1].content)
    [notice] = [r.getMessage() for r in caplog.records]
    assert notice.startswith(f"STRANGLER_RUNPOD_ENDPOINT_URL={ENDPOINT} is the runpod SDK's local test API")


def test_status_of_a_test_api_job_is_a_post_that_waits_while_the_job_runs_and_is_sent_once() -> None:
    handler, seen = _recorder(httpx.Response(200, json={"id": "test-1", "status": "COMPLETED", "output": {"a": 1}}))
    assert _client(handler).status("test-1").output == {"a": 1}
    [request] = seen
    assert (request.method, request.url.path) == ("POST", "/v2/abc123/status/test-1")
    assert request.extensions["timeout"]["read"] == 600.0

    calls = 0

    def timing_out(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("slow handler", request=request)

    with pytest.raises(ProviderUnavailable, match="outcome is unknown"):
        _client(timing_out).status("test-2")
    assert calls == 1  # a second status call would find the job gone


def test_a_test_api_job_it_no_longer_knows_is_not_found_not_a_failed_job() -> None:
    handler, _ = _recorder(httpx.Response(200, json={"id": "test-1", "status": "FAILED", "error": "Job ID not found"}))
    with pytest.raises(ProviderNotFound, match="does not know the job"):
        _client(handler).status("test-1")
    handler, _ = _recorder(httpx.Response(200, json={"id": "test-1", "status": "FAILED", "error": "bad seed"}))
    assert _client(handler).status("test-1").error == "bad seed"


def test_status_of_a_hosted_job_stays_a_get() -> None:
    handler, seen = _recorder(httpx.Response(200, json={"id": "a-u1", "status": "IN_QUEUE"}))
    _client(handler).status("a-u1")
    assert seen[0].method == "GET" and seen[0].extensions["timeout"]["read"] == 10.0


@pytest.mark.parametrize(
    ("status", "call", "setting"),
    [
        (401, lambda c: c.status("a-u1"), "STRANGLER_RUNPOD_API_KEY"),
        (404, lambda c: c.run({"x": 1}), "STRANGLER_RUNPOD_ENDPOINT_URL"),
        (405, lambda c: c.run({"x": 1}), "STRANGLER_RUNPOD_ENDPOINT_URL"),
    ],
)
def test_an_answer_that_means_a_wrong_setting_names_it(
    status: int, call: Callable[[RunPodClient], object], setting: str
) -> None:
    handler, _ = _recorder(httpx.Response(status, json={"error": "nope"}))
    with pytest.raises(ProviderError) as caught:
        call(_client(handler))
    assert caught.value.message.endswith(f"check {setting}, or run `strangler-bridge doctor`)")


def test_a_job_that_is_not_found_names_no_setting() -> None:
    handler, _ = _recorder(httpx.Response(404, json={"error": "job not found"}))
    with pytest.raises(ProviderNotFound) as caught:
        _client(handler).status("gone-u1")
    assert caught.value.message == "status gone-u1: job not found"
