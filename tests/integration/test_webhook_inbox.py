"""RunPod webhooks queued by the API and applied from the Redis stream, against a real Redis (no worker process:
the tests call the applier directly, as the worker's inbox thread does)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from fastapi_app import create_app
from fastapi_app.metrics.families import WEBHOOK_RESULTS
from fastapi_app.runtime import Runtime
from fastapi_app.tts import webhook_inbox
from fastapi_app.tts.runpod_work import PURPOSE
from strangler_bridge.audio import tone_wav
from strangler_bridge.settings import Settings
from strangler_bridge.signing import sign
from tests.conftest import TEST_TOKEN

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
CHUNKS = 6  # groups of 2: three groups


@pytest.fixture
def configured(settings: Settings) -> Settings:
    return settings.model_copy(update={"tts_group_size": 2})


@pytest.fixture
def client(configured: Settings, redis_client: redis.Redis) -> Iterator[TestClient]:
    with TestClient(create_app(configured)) as test_client:
        yield test_client


@pytest.fixture
def rt(configured: Settings, redis_client: redis.Redis) -> Iterator[Runtime]:
    runtime = Runtime.build(configured)
    webhook_inbox.ensure_group(runtime)
    yield runtime
    runtime.close()


def _create(client: TestClient) -> dict[str, Any]:
    body = {"chunks": [{"text": f"Chunk {i}."} for i in range(CHUNKS)]}
    created: dict[str, Any] = client.post("/tts/batch", json=body, headers=AUTH).raise_for_status().json()
    return created


def _deliver(client: TestClient, settings: Settings, batch_id: str, group: int, body: dict[str, Any]) -> Any:
    token = sign(settings.secret("webhook_secret"), PURPOSE, [batch_id, str(group), "1"], 60)
    return client.post("/tts/callback", params={"token": token}, json=body)


def _completed(indexes: list[int]) -> dict[str, Any]:
    audio = base64.b64encode(tone_wav(0.25, sample_rate=8000)).decode()
    chunks = [{"index": i, "audio_base64": audio, "duration_s": 0.25} for i in indexes]
    return {"id": f"rp-{indexes[0]}", "status": "COMPLETED", "output": {"chunks": chunks}}


def _results(rt: Runtime) -> dict[str, float]:
    raw = rt.redis.hgetall(rt.keys.counters)
    wanted = {WEBHOOK_RESULTS.sample(("runpod", o)): o for o in ("accepted", "duplicate", "error")}
    return {wanted[k.decode()]: float(v) for k, v in raw.items() if k.decode() in wanted}


def _status(client: TestClient, batch_id: str) -> dict[str, Any]:
    status: dict[str, Any] = client.get(f"/tts/batch/{batch_id}", headers=AUTH).json()
    return status


def test_webhooks_are_answered_before_being_applied_and_applied_in_one_write(
    client: TestClient, rt: Runtime, configured: Settings
) -> None:
    created = _create(client)
    for group in range(3):
        answer = _deliver(client, configured, created["id"], group, _completed([2 * group, 2 * group + 1]))
        assert answer.status_code == 200 and answer.json() == {"status": "queued"}
    assert _status(client, created["id"])["version"] == created["version"]  # nothing applied yet
    assert rt.redis.xlen(rt.keys.tts_inbox) == 3

    assert webhook_inbox.apply_new(rt, "test-consumer") == 3

    done = _status(client, created["id"])
    assert done["status"] == "completed"
    assert [c["status"] for c in done["chunks"]] == ["completed"] * CHUNKS
    assert all(c["duration_s"] == pytest.approx(0.25) for c in done["chunks"])
    assert done["version"] == created["version"] + 1  # the three groups of one batch: one record update
    assert rt.redis.xlen(rt.keys.tts_inbox) == 0  # acknowledged and deleted
    assert _results(rt) == {"accepted": 3}


def test_a_repeated_delivery_is_counted_as_a_duplicate_and_changes_nothing(
    client: TestClient, rt: Runtime, configured: Settings
) -> None:
    created = _create(client)
    _deliver(client, configured, created["id"], 0, _completed([0, 1]))
    webhook_inbox.apply_new(rt, "test-consumer")
    first = _status(client, created["id"])
    for _ in range(2):
        _deliver(client, configured, created["id"], 0, _completed([0, 1]))
    _deliver(client, configured, created["id"], 99, _completed([0, 1]))  # a group the batch does not have
    assert webhook_inbox.apply_new(rt, "test-consumer") == 3
    assert _status(client, created["id"]) == first
    assert _results(rt) == {"accepted": 1, "duplicate": 3}


def test_bad_bodies_are_refused_by_the_api_and_never_queued(
    client: TestClient, rt: Runtime, configured: Settings
) -> None:
    created = _create(client)
    answer = _deliver(client, configured, created["id"], 0, {"status": "WHATEVER"})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "body"
    assert rt.redis.xlen(rt.keys.tts_inbox) == 0


def test_an_unreadable_entry_is_dropped_without_holding_back_the_others(
    client: TestClient, rt: Runtime, configured: Settings
) -> None:
    created = _create(client)
    rt.redis.xadd(rt.keys.tts_inbox, {"batch": created["id"], "group": "x", "attempt": "1", "body": "{"})
    _deliver(client, configured, created["id"], 1, _completed([2, 3]))
    assert webhook_inbox.apply_new(rt, "test-consumer") == 2
    chunks = _status(client, created["id"])["chunks"]
    assert [c["status"] for c in chunks[2:4]] == ["completed", "completed"]
    assert rt.redis.xlen(rt.keys.tts_inbox) == 0
    assert rt.redis.xpending(rt.keys.tts_inbox, webhook_inbox.GROUP)["pending"] == 0


def test_entries_read_by_a_consumer_that_died_are_applied_by_another(
    client: TestClient, rt: Runtime, configured: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = _create(client)
    _deliver(client, configured, created["id"], 2, _completed([4, 5]))
    # A worker reads the entry, then dies before applying it.
    read = rt.redis.xreadgroup(webhook_inbox.GROUP, "dead-worker", {rt.keys.tts_inbox: ">"}, count=10)
    assert len(read[0][1]) == 1
    assert webhook_inbox.apply_new(rt, "live-worker") == 0  # not delivered twice while its reader may be alive

    monkeypatch.setattr(webhook_inbox, "RECLAIM_IDLE_S", 0.0)
    assert webhook_inbox.reclaim(rt, "live-worker") == 1
    chunks = _status(client, created["id"])["chunks"]
    assert [c["status"] for c in chunks[4:6]] == ["completed", "completed"]
    assert rt.redis.xpending(rt.keys.tts_inbox, webhook_inbox.GROUP)["pending"] == 0


def test_a_consumer_rereads_what_it_read_but_did_not_acknowledge(
    client: TestClient, rt: Runtime, configured: Settings
) -> None:
    created = _create(client)
    _deliver(client, configured, created["id"], 0, _completed([0, 1]))
    rt.redis.xreadgroup(webhook_inbox.GROUP, "restarted", {rt.keys.tts_inbox: ">"}, count=10)
    assert webhook_inbox.apply_new(rt, "restarted", own_pending=True) == 1
    assert _status(client, created["id"])["chunks"][0]["status"] == "completed"
    assert _results(rt) == {"accepted": 1}
