"""BridgeClient: typed calls, long-polling under a deadline, streamed downloads, and the error mapping."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest

from flask_plugin import BatchFailed, BridgeClient, Deadline, idempotency_key
from flask_plugin.testing import FAST_RETRIES, FakeService
from strangler_bridge.audio import wav_duration
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag
from strangler_bridge.contracts.tts import TtsBatchCreate
from strangler_bridge.errors import DeadlineExceeded, ServiceError, ServiceUnavailable

pytestmark = pytest.mark.unit

BATCH = TtsBatchCreate.model_validate({"chunks": [{"text": "Hello there."}, {"text": "Bye."}], "video_id": "vid-1"})


def _client(handler: object) -> BridgeClient:
    return BridgeClient("http://service.test", "tok", policy=FAST_RETRIES, transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def _fixed(status: int, body: object) -> BridgeClient:
    return _client(lambda request: httpx.Response(status, json=body))


# --- error mapping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "field"),
    [(400, "invalid_input", None), (404, "not_found", None), (409, "conflict", None), (422, "invalid_input", "chunks")],
)
def test_client_errors_carry_the_service_code_message_and_field(status: int, code: str, field: str | None) -> None:
    body = {"error": {"code": code, "message": "it went wrong", **({"field": field} if field else {})}}
    with pytest.raises(ServiceError) as caught:
        _fixed(status, body).create_tts_batch(BATCH)
    err = caught.value
    assert type(err) is ServiceError
    assert (err.status_code, err.service_code, err.message, err.field) == (status, code, "it went wrong", field)


def test_unauthorized_says_which_setting_to_check() -> None:
    with pytest.raises(ServiceError) as caught:
        _fixed(401, {"error": {"code": "unauthorized", "message": "invalid bearer token"}}).get_flags()
    assert "STRANGLER_SERVICE_TOKEN" in str(caught.value)


def test_error_without_the_json_shape_still_maps() -> None:
    client = _client(lambda request: httpx.Response(418, text="teapot"))
    with pytest.raises(ServiceError) as caught:
        client.get_flags()
    assert (caught.value.service_code, caught.value.message) == ("http_418", "teapot")


def test_client_errors_are_not_retried() -> None:
    fake = FakeService()
    fake.fail_next("POST", "/tts/batch", 409, code="conflict")
    with pytest.raises(ServiceError):
        fake.client().create_tts_batch(BATCH)
    assert fake.count("POST", "/tts/batch") == 1


def test_5xx_is_retried_and_then_succeeds() -> None:
    fake = FakeService()
    fake.fail_next("POST", "/tts/batch", 503, times=2)
    status = fake.client().create_tts_batch(BATCH)
    assert status.status is BatchStatus.COMPLETED
    assert fake.count("POST", "/tts/batch") == 3


def test_5xx_after_every_retry_is_service_unavailable() -> None:
    fake = FakeService()
    fake.fail_next("GET", "/flags", 503, times=10)
    with pytest.raises(ServiceUnavailable) as caught:
        fake.client().get_flags()
    assert caught.value.status_code == 503
    assert fake.count("GET", "/flags") == FAST_RETRIES.attempts


def test_transport_error_after_retries_is_service_unavailable() -> None:
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ServiceUnavailable) as caught:
        _client(refuse).get_tts_batch("tts_1")
    assert caught.value.service_code == "unreachable"
    assert "http://service.test" in str(caught.value)
    assert len(calls) == FAST_RETRIES.attempts


def test_malformed_success_body_is_a_service_error() -> None:
    with pytest.raises(ServiceError) as caught:
        _fixed(200, {"flags": "nope"}).get_flags()
    assert caught.value.service_code == "invalid_response"


# --- create -------------------------------------------------------------------------------------------


def test_create_sends_token_json_and_an_idempotency_key_from_video_step_and_body() -> None:
    seen: list[httpx.Request] = []
    fake = FakeService()

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake.handle(request)

    client = BridgeClient(fake.base_url, fake.token, transport=httpx.MockTransport(spy))
    first = client.create_tts_batch(BATCH)
    again = client.create_tts_batch(BATCH)
    other = client.create_tts_batch(BATCH.model_copy(update={"voice": "other"}))
    keys = [r.headers["idempotency-key"] for r in seen]
    assert seen[0].headers["authorization"] == "Bearer test-token"
    assert json.loads(seen[0].content)["chunks"][0] == {"text": "Hello there.", "index": 0, "voice": None}
    assert keys[0] == keys[1] != keys[2]
    assert keys[0].startswith("tts:vid-1:")
    assert first.id == again.id != other.id


def test_idempotency_key_is_header_safe_and_bounded() -> None:
    key = idempotency_key("tts", "v\nid é" * 40, b"{}")
    assert key.isascii() and "\n" not in key and len(key) <= 120


def test_a_retried_create_makes_one_batch() -> None:
    fake = FakeService()
    # The first POST reaches the service, but its answer is lost in transit: the retry must name the same batch.
    fake.script("POST", "/tts/batch", lambda request: (fake._create(request), httpx.Response(502))[1])
    status = fake.client().create_tts_batch(BATCH)
    assert fake.count("POST", "/tts/batch") == 2
    assert len(fake._batches) == 1
    assert status.id in fake._batches


# --- wait ---------------------------------------------------------------------------------------------


def test_wait_long_polls_with_since_until_terminal() -> None:
    fake = FakeService(polls_to_complete=3)
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake.handle(request)

    client = BridgeClient(fake.base_url, fake.token, transport=httpx.MockTransport(spy))
    created = client.create_tts_batch(BATCH)
    done = client.wait_tts_batch(created.id, Deadline(60), since=created.version)
    assert done.status is BatchStatus.COMPLETED
    polls = [r for r in seen if r.method == "GET"]
    assert len(polls) == 3
    assert polls[0].url.params["since"] == str(created.version)
    assert all(1 <= int(r.url.params["wait"]) <= 30 for r in polls)


def test_wait_gives_up_at_the_deadline() -> None:
    fake = FakeService(polls_to_complete=10**6)
    now = [0.0]

    def advancing(request: httpx.Request) -> httpx.Response:
        now[0] += 4.0  # each long-poll "takes" four seconds
        return fake.handle(request)

    client = BridgeClient(fake.base_url, fake.token, transport=httpx.MockTransport(advancing))
    created = client.create_tts_batch(BATCH)
    with pytest.raises(DeadlineExceeded):
        client.wait_tts_batch(created.id, Deadline(10, clock=lambda: now[0]))
    assert fake.count("GET", "/tts/batch/") == 3


def test_run_raises_batch_failed_with_the_status() -> None:
    fake = FakeService(fail_batches=True)
    with pytest.raises(BatchFailed) as caught:
        fake.client().run_tts_batch(BATCH, 5)
    assert caught.value.status.status is BatchStatus.FAILED
    assert "scripted failure" in str(caught.value)


# --- download -----------------------------------------------------------------------------------------


def test_download_tts_audio_writes_each_chunk_to_the_directory(tmp_path: Path) -> None:
    fake = FakeService()
    client = fake.client()
    status = client.run_tts_batch(BATCH, 5)
    paths = client.download_tts_audio(status, tmp_path / "out")
    assert [p.name for p in paths.values()] == ["chunk_0000.wav", "chunk_0001.wav"]
    assert wav_duration(paths[0].read_bytes()) == pytest.approx(status.chunks[0].duration_s, abs=0.01)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chunk_0000.wav", "chunk_0001.wav"]


def test_download_to_a_file_object_rewinds_between_tries() -> None:
    fake = FakeService()
    client = fake.client()
    status = client.run_tts_batch(BATCH, 5)
    fake.fail_next("GET", "/tts/batch/", 500)
    sink = io.BytesIO(b"prefix:")
    sink.seek(0, io.SEEK_END)
    size = client.download_audio(status.chunks[1], sink)
    assert sink.getvalue()[:7] == b"prefix:"
    assert len(sink.getvalue()) == 7 + size
    wav_duration(sink.getvalue()[7:])


def test_failed_download_leaves_no_file(tmp_path: Path) -> None:
    fake = FakeService()
    client = fake.client()
    status = client.run_tts_batch(BATCH, 5)
    fake.fail_next("GET", "/tts/batch/", 503, times=FAST_RETRIES.attempts)
    with pytest.raises(ServiceUnavailable):
        client.download_audio(status.chunks[0], tmp_path / "a.wav")
    assert list(tmp_path.iterdir()) == []


def test_token_is_not_sent_to_another_origin() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"RIFF")

    client = _client(handler)
    client.download("https://cdn.example/audio.wav", io.BytesIO())
    client.download("/tts/batch/x/chunks/0/audio", io.BytesIO())
    assert "authorization" not in seen[0].headers
    assert seen[1].headers["authorization"] == "Bearer tok"


# --- flags --------------------------------------------------------------------------------------------


def test_flags_round_trip() -> None:
    fake = FakeService()
    client = fake.client()
    before = client.get_flags()
    after = client.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW, percent=10))
    assert after.version == before.version + 1
    assert after.flags[Phase.TTS] == PhaseFlag(mode=FlagMode.SHADOW, percent=10)
    assert client.get_flags() == after
