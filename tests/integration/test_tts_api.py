"""Phase 1 HTTP surface against a real Redis (no provider needed): validation, idempotency, auth, long-poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from fastapi_app import create_app
from fastapi_app.store.batch_transitions import ItemResult, complete_group
from fastapi_app.store.docstore import DocStore
from strangler_bridge.settings import Settings
from strangler_bridge.signing import sign
from tests.conftest import TEST_TOKEN

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
BODY = {"chunks": [{"text": "Hello there."}, {"text": "General Kenobi."}], "voice": "narrator", "video_id": "v-1"}


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"max_chunks": 10, "max_text_chars": 100, "max_body_bytes": 5000}))
    with TestClient(app) as test_client:
        yield test_client


def test_create_returns_202_with_pending_chunks(client: TestClient) -> None:
    response = client.post("/tts/batch", json=BODY, headers=AUTH)
    assert response.status_code == 202
    status = response.json()
    assert status["id"].startswith("tts_")
    assert status["status"] == "queued"
    assert status["progress"] == {"done": 0, "failed": 0, "total": 2}
    assert [c["index"] for c in status["chunks"]] == [0, 1]
    assert {c["voice"] for c in status["chunks"]} == {"narrator"}
    assert client.get(f"/tts/batch/{status['id']}", headers=AUTH).json()["id"] == status["id"]


def test_same_idempotency_key_and_body_return_the_same_batch(client: TestClient) -> None:
    headers = {**AUTH, "Idempotency-Key": "video-1-tts"}
    first = client.post("/tts/batch", json=BODY, headers=headers)
    second = client.post("/tts/batch", json=BODY, headers=headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    other = client.post("/tts/batch", json={**BODY, "voice": "other"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"chunks": []}, "chunks"),
        ({"chunks": [{"text": ""}]}, "chunks.0.text"),
        ({"chunks": [{"text": "x" * 101}]}, "chunks.0.text"),
        ({"chunks": [{"text": "a"}] * 11}, "chunks"),
        ({"chunks": [{"text": "a", "index": 1}, {"text": "b"}]}, "chunks"),
        ({"chunks": [{"text": "a"}], "format": "aiff"}, "format"),
        ({"chunks": [{"text": "a"}], "surprise": 1}, "surprise"),
    ],
)
def test_bad_input_names_the_field(client: TestClient, body: dict[str, object], field: str) -> None:
    response = client.post("/tts/batch", json=body, headers=AUTH)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert (error.get("field") or "").startswith(field) or field in error["message"]


def test_oversized_body_is_413_before_being_read(client: TestClient) -> None:
    response = client.post("/tts/batch", content=b"x" * 6000, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    def chunked() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 1000

    response = client.post("/tts/batch", content=chunked(), headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dGVzdA==", f"Token {TEST_TOKEN}"])
def test_routes_need_a_valid_bearer_token(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post("/tts/batch", json=BODY, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert client.get("/flags", headers=headers).status_code == 401


def test_several_tokens_are_accepted_for_rotation(settings: Settings, redis_client: redis.Redis) -> None:
    rotated = [*settings.api_tokens, type(settings.api_tokens[0])("new")]
    app = create_app(settings.model_copy(update={"api_tokens": rotated}))
    with TestClient(app) as client:
        for token in (TEST_TOKEN, "new"):
            assert client.get("/flags", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_unknown_or_malformed_batch_is_404(client: TestClient) -> None:
    for batch_id in ("tts_00000000000000000000000000000000", "..%2F..%2Fetc", "img_0123456789abcdef"):
        response = client.get(f"/tts/batch/{batch_id}", headers=AUTH)
        assert response.status_code == 404, batch_id
        assert response.json()["error"]["code"] == "not_found"


def test_long_poll_returns_as_soon_as_the_batch_changes(client: TestClient, settings: Settings) -> None:
    created = client.post("/tts/batch", json=BODY, headers=AUTH).json()
    store = client.app.state.runtime.batches  # type: ignore[attr-defined]
    assert isinstance(store, DocStore)

    def change_later() -> None:
        time.sleep(0.3)
        store.update(
            created["id"],
            lambda b: complete_group(
                b, 0, [_result(created["id"], 0), _result(created["id"], 1)], max_attempts=3, now=time.time()
            ),
        )

    started = time.monotonic()
    threading.Thread(target=change_later).start()
    response = client.get(f"/tts/batch/{created['id']}?wait=20&since={created['version']}", headers=AUTH)
    elapsed = time.monotonic() - started
    assert response.json()["status"] == "completed"
    assert response.json()["version"] > created["version"]
    assert elapsed < 10, "long-poll should return on the change, not at the end of the wait"


def test_long_poll_with_stale_version_returns_at_once(client: TestClient) -> None:
    created = client.post("/tts/batch", json=BODY, headers=AUTH).json()
    response = client.get(f"/tts/batch/{created['id']}?wait=30&since=0", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["version"] == created["version"]


def test_callback_rejects_missing_forged_or_expired_tokens_without_change(
    client: TestClient, settings: Settings
) -> None:
    created = client.post("/tts/batch", json=BODY, headers=AUTH).json()
    body = {"id": "rp-1", "status": "FAILED", "error": "boom"}
    secret = settings.secret("webhook_secret")
    tokens = [
        None,
        "garbage",
        sign("wrong-secret", "tts", [created["id"], "0", "1"], 60),
        sign(secret, "tts", [created["id"], "0", "1"], -10),
        sign(secret, "img", [created["id"], "0", "1"], 60),
    ]
    for token in tokens:
        url = "/tts/callback" + (f"?token={token}" if token else "")
        response = client.post(url, json=body)
        assert response.status_code == 401, token
    after = client.get(f"/tts/batch/{created['id']}", headers=AUTH).json()
    assert after["version"] == created["version"]


def test_callback_token_for_a_group_that_does_not_exist_changes_nothing(client: TestClient, settings: Settings) -> None:
    created = client.post("/tts/batch", json=BODY, headers=AUTH).json()
    token = sign(settings.secret("webhook_secret"), "tts", [created["id"], "99", "1"], 60)
    body = {"id": "rp-1", "status": "COMPLETED", "output": {"chunks": []}}
    response = client.post(f"/tts/callback?token={token}", json=body)
    assert response.status_code == 200
    assert client.get(f"/tts/batch/{created['id']}", headers=AUTH).json()["version"] == created["version"]


def test_a_webhook_body_that_is_not_a_status_object_is_refused_and_not_queued(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    created = client.post("/tts/batch", json=BODY, headers=AUTH).json()
    token = sign(settings.secret("webhook_secret"), "tts", [created["id"], "0", "1"], 60)
    stream = f"{settings.redis_prefix}:inbox:tts"
    queued = redis_client.xlen(stream)
    for body, problem in [
        (b"{not json", "Invalid JSON"),
        (b"[1, 2]", "Input should be an object"),
        (b'{"id": "rp-1"}', "status: Field required"),
        (b'{"id": "rp-1", "status": "SIDEWAYS"}', "status: Input should be"),
    ]:
        response = client.post(f"/tts/callback?token={token}", content=body)
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert error["field"] == "body" and problem in error["message"], error
    assert redis_client.xlen(stream) == queued


def test_audio_is_404_until_the_chunk_completes(client: TestClient) -> None:
    created = client.post("/tts/batch", json=BODY, headers=AUTH).json()
    response = client.get(f"/tts/batch/{created['id']}/chunks/0/audio", headers=AUTH)
    assert response.status_code == 404
    assert client.get(f"/tts/batch/{created['id']}/chunks/7/audio", headers=AUTH).status_code == 404


def test_flags_round_trip_without_restart(client: TestClient) -> None:
    initial = client.get("/flags", headers=AUTH).json()
    assert initial["flags"]["tts"]["mode"] == "legacy"
    put = client.put("/flags/tts", json={"mode": "fastapi", "percent": 25, "allow": ["v-9"]}, headers=AUTH)
    assert put.status_code == 200
    assert put.json()["flags"]["tts"] == {"mode": "fastapi", "percent": 25, "allow": ["v-9"], "fallback": True}
    assert put.json()["version"] == initial["version"] + 1
    assert client.put("/flags/nope", json={"mode": "fastapi"}, headers=AUTH).status_code == 422
    assert client.put("/flags/tts", json={"mode": "sideways"}, headers=AUTH).status_code == 422


def test_openapi_lists_every_route_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = [
        "/tts/batch",
        "/tts/batch/{batch_id}",
        "/tts/batch/{batch_id}/chunks/{index}/audio",
        "/tts/callback",
        "/imagegen/batch",
        "/imagegen/batch/{batch_id}",
        "/imagegen/batch/{batch_id}/images/{index}",
        "/video/render",
        "/video/render/{render_id}",
        "/video/render/{render_id}/video",
        "/video/render/callback",
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/retry",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/segments.json",
        "/jobs/{job_id}/video",
        "/batches",
        "/flags",
        "/flags/{phase}",
        "/artifacts/{token}",
        "/healthz",
        "/readyz",
    ]
    assert [path for path in expected if path not in paths] == []
    schemas = spec["components"]["schemas"]
    for body in ("TtsBatchCreate", "ImageBatchCreate", "VideoRenderCreate", "JobCreate"):
        assert schemas[body].get("examples"), body
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"


def _result(batch_id: str, index: int) -> ItemResult:
    return ItemResult(index=index, artifact=f"tts/{batch_id}/{index}.wav", content_type="audio/wav", size_bytes=1)
