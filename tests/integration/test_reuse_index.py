"""The reuse index's atomic steps against a real Redis: one flight per fingerprint, waiters taken once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from fastapi_app.reuse.index import Entry, ReuseIndex
from fastapi_app.runtime import Runtime
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.integration

KEY = "f" * 64
ENTRY = Entry(artifact="tts/tts_1/0-ab.wav", content_type="audio/wav", size_bytes=44, cost=0.001, made_by="tts:tts_1:0")


@pytest.fixture
def index(settings: Settings, redis_client: redis.Redis) -> Iterator[ReuseIndex]:
    runtime = Runtime.build(settings)
    yield ReuseIndex(runtime)
    runtime.close()


def test_the_first_item_takes_the_flight_and_the_others_see_it(index: ReuseIndex) -> None:
    assert index.lookup_or_fly(KEY, "tts:a:0", 60) == (None, "tts:a:0")
    assert index.lookup_or_fly(KEY, "img:b:3", 60) == (None, "tts:a:0")
    assert index.lookup_or_fly(KEY, "tts:a:0", 60) == (None, "tts:a:0")  # asking again changes nothing


def test_finishing_with_an_output_keeps_it_and_hands_over_the_waiters_once(index: ReuseIndex) -> None:
    index.lookup_or_fly(KEY, "tts:a:0", 60)
    index.wait(KEY, "tts:b:1", 60)
    index.wait(KEY, "tts:c:2", 60)
    assert index.finish(KEY, "tts:a:0", made=ENTRY, completed=True) == (True, ["tts:b:1", "tts:c:2"])
    assert index.finish(KEY, "tts:a:0", made=ENTRY, completed=True) == (False, [])
    assert index.lookup_or_fly(KEY, "tts:d:0", 60) == (ENTRY, None)
    assert index.referenced(ENTRY.artifact)
    index.forget(KEY, ENTRY)
    assert index.lookup(KEY) is None and not index.referenced(ENTRY.artifact)


def test_only_the_holder_of_the_flight_releases_its_waiters_when_it_fails(index: ReuseIndex) -> None:
    index.lookup_or_fly(KEY, "img:a:0", 60)
    index.wait(KEY, "img:b:0", 60)
    assert index.finish(KEY, "img:x:0") == (False, [])  # a failure of an item that held nothing
    assert index.finish(KEY, "img:a:0") == (True, ["img:b:0"])
    assert index.lookup_or_fly(KEY, "img:b:0", 60) == (None, "img:b:0")  # the flight is free to take over
