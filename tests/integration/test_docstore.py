"""Atomic, idempotent record transitions against a real Redis."""

from __future__ import annotations

import threading

import pytest
import redis

from fastapi_app.store.docstore import DocStore, Effects, Record
from strangler_bridge.errors import Conflict, RecordNotFound
from strangler_bridge.keys import DueKind, DueMember, Keys
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.integration


class Counter(Record):
    value: int = 0


def _store(client: redis.Redis, settings: Settings) -> DocStore[Counter]:
    return DocStore(client, Keys(settings.redis_prefix), "counter", Counter, ttl_s=60)


def test_concurrent_transitions_never_lose_an_update(redis_client: redis.Redis, settings: Settings) -> None:
    store = _store(redis_client, settings)
    store.create(Counter(id="c1"), Effects())

    def bump(record: Counter) -> tuple[Effects, None]:
        record.value += 1
        return Effects(), None

    def worker() -> None:
        client = redis.Redis.from_url(settings.redis_url or "")
        mine = _store(client, settings)
        for _ in range(50):
            mine.update("c1", bump)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record = store.load("c1")
    assert record is not None
    assert record.value == 200
    assert record.version == 201


def test_idempotency_key_returns_first_record_or_conflicts(redis_client: redis.Redis, settings: Settings) -> None:
    store = _store(redis_client, settings)
    first, created = store.create(Counter(id="a"), Effects(), idem=("key-1", "hash-1"))
    again, created_again = store.create(Counter(id="b"), Effects(), idem=("key-1", "hash-1"))
    assert created and not created_again
    assert again.id == first.id == "a"
    assert store.load("b") is None
    with pytest.raises(Conflict):
        store.create(Counter(id="c"), Effects(), idem=("key-1", "hash-2"))


def test_the_services_own_keys_never_meet_a_clients(redis_client: redis.Redis, settings: Settings) -> None:
    store = _store(redis_client, settings)
    mine, _ = store.create(Counter(id="own"), Effects(), idem=("job-1:tts", "hash-1"), internal_idem=True)
    # Whatever a client sends as its key, it neither finds nor blocks the service's record.
    for key in ("job-1:tts", f"idem-internal:{store.kind}:job-1:tts", "../idem-internal/job-1:tts"):
        theirs, created = store.create(Counter(id=f"client-{key}"), Effects(), idem=(key, "hash-2"))
        assert created and theirs.id != mine.id
    again, created = store.create(Counter(id="own-2"), Effects(), idem=("job-1:tts", "hash-1"), internal_idem=True)
    assert not created and again.id == "own"


def test_unchanged_transition_writes_and_publishes_nothing(redis_client: redis.Redis, settings: Settings) -> None:
    store = _store(redis_client, settings)
    store.create(Counter(id="c2"), Effects())
    pubsub = redis_client.pubsub()
    pubsub.subscribe(store.keys.changes("c2"))
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    record, _ = store.update("c2", lambda r: (Effects(changed=False), None))
    assert record.version == 1
    assert pubsub.get_message(timeout=0.2) is None
    store.update("c2", lambda r: (Effects(), None))
    message = pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == b"2"


def test_effects_maintain_the_due_index(redis_client: redis.Redis, settings: Settings) -> None:
    store = _store(redis_client, settings)
    store.create(
        Counter(id="c3"), Effects(due={DueMember(DueKind.TTS, "c3", 0): 10.0, DueMember(DueKind.TTS, "c3", 1): 20.0})
    )
    store.update(
        "c3",
        lambda r: (Effects(undue={DueMember(DueKind.TTS, "c3", 0)}, due={DueMember(DueKind.TTS, "c3", 1): 30.0}), None),
    )
    assert redis_client.zrange(store.keys.due, 0, -1, withscores=True) == [(b"tts:c3:1", 30.0)]


def test_missing_record_is_a_key_error(redis_client: redis.Redis, settings: Settings) -> None:
    with pytest.raises(RecordNotFound):
        _store(redis_client, settings).update("nope", lambda r: (Effects(), None))
