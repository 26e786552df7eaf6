"""The Flask side's flag cache: static start, expiry, an unreachable service, and never blocking readers."""

from __future__ import annotations

import logging
import threading

import pytest

from flask_plugin import FlagCache
from strangler_bridge.contracts.flags import FlagMode, FlagSet, Phase, PhaseFlag
from strangler_bridge.errors import ServiceUnavailable
from strangler_bridge.flags import default_flags
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit

SHADOW = PhaseFlag(mode=FlagMode.SHADOW)
FASTAPI = PhaseFlag(mode=FlagMode.FASTAPI, percent=10)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Service:
    """A fetch function whose answer (a flag set, or an error) a test sets."""

    def __init__(self, tts: PhaseFlag = SHADOW) -> None:
        self.calls = 0
        self.answer: FlagSet | Exception = FlagSet(flags={**default_flags(), Phase.TTS: tts}, version=1)

    def __call__(self) -> FlagSet:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def down(self) -> None:
        self.answer = ServiceUnavailable("cannot reach the service", status_code=0, service_code="unreachable")


def test_starts_from_static_config_when_the_service_is_unreachable() -> None:
    service = Service()
    service.down()
    cache = FlagCache(service, ttl_s=5, static={Phase.TTS: FASTAPI})
    snapshot = cache.snapshot()
    assert snapshot.source == "static"
    assert snapshot.flags[Phase.TTS] == FASTAPI
    assert snapshot.flags[Phase.VIDEO] == PhaseFlag()  # phases missing from static config are legacy
    assert "cannot reach" in (snapshot.error or "")


def test_fetched_values_replace_static_ones() -> None:
    cache = FlagCache(Service(tts=SHADOW), ttl_s=5, static={Phase.TTS: FASTAPI})
    assert cache.get("tts") == SHADOW
    assert cache.snapshot().source == "service"
    assert cache.snapshot().version == 1


def test_values_are_cached_until_the_ttl_expires() -> None:
    clock, service = Clock(), Service(tts=SHADOW)
    cache = FlagCache(service, ttl_s=5, clock=clock)
    assert cache.get(Phase.TTS) == SHADOW
    service.answer = FlagSet(flags={Phase.TTS: FASTAPI}, version=2)
    clock.now += 4.9
    assert cache.get(Phase.TTS) == SHADOW
    assert service.calls == 1
    clock.now += 0.2
    assert cache.get(Phase.TTS) == FASTAPI
    assert service.calls == 2


def test_unreachable_service_keeps_the_last_known_values_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    clock, service = Clock(), Service(tts=SHADOW)
    cache = FlagCache(service, ttl_s=1, static={Phase.TTS: FASTAPI}, clock=clock)
    assert cache.get(Phase.TTS) == SHADOW
    service.down()
    with caplog.at_level(logging.WARNING, logger="flask_plugin.flag_cache"):
        for _ in range(3):
            clock.now += 2
            assert cache.get(Phase.TTS) == SHADOW  # not the static value
    assert cache.snapshot().source == "stale"
    wait_for(lambda: service.calls >= 3, timeout=5, what="a retry in the background")
    assert len([r for r in caplog.records if "cannot fetch flags" in r.message]) == 1
    service.answer = FlagSet(flags={Phase.TTS: FASTAPI}, version=3)
    clock.now += 2
    # While the service was known to be down, the fetch runs in the background: the values follow it shortly.
    wait_for(lambda: cache.get(Phase.TTS) == FASTAPI, timeout=5, what="the fetched flags")
    assert cache.snapshot().error is None


def test_failures_are_not_retried_on_every_call() -> None:
    clock, service = Clock(), Service()
    service.down()
    cache = FlagCache(service, ttl_s=0, retry_after_failure_s=1.0, clock=clock)
    for _ in range(10):
        cache.get(Phase.TTS)
    assert service.calls == 1


def test_invalidate_forces_the_next_read_to_fetch() -> None:
    clock, service = Clock(), Service()
    cache = FlagCache(service, ttl_s=60, clock=clock)
    cache.get(Phase.TTS)
    cache.invalidate()
    cache.get(Phase.TTS)
    assert service.calls == 2


def test_a_slow_fetch_holds_other_readers_at_most_the_fetch_timeout() -> None:
    started, release = threading.Event(), threading.Event()
    fetched = FlagSet(flags={Phase.TTS: SHADOW}, version=1)

    def slow_fetch() -> FlagSet:
        started.set()
        release.wait(10)
        return fetched

    cache = FlagCache(slow_fetch, ttl_s=5, static={Phase.TTS: FASTAPI}, wait_s=0.2)
    fetcher = threading.Thread(target=cache.snapshot)
    fetcher.start()
    assert started.wait(5)
    # The fetch is in flight and held: another reader waits for it, then, past the bound, gets the current values.
    assert cache.get(Phase.TTS) == FASTAPI
    release.set()
    fetcher.join(5)
    assert cache.get(Phase.TTS) == SHADOW


def test_a_burst_waits_for_the_one_refresh_in_flight_and_sees_the_new_flag() -> None:
    clock, release = Clock(), threading.Event()
    calls: list[int] = []
    answers = [FlagSet(flags={Phase.TTS: SHADOW}, version=1), FlagSet(flags={Phase.TTS: FASTAPI}, version=2)]

    def fetch() -> FlagSet:
        calls.append(1)
        if len(calls) > 1:
            release.wait(10)  # the refresh is slow: the burst arrives while it is in flight
        return answers[min(len(calls), 2) - 1]

    cache = FlagCache(fetch, ttl_s=5, clock=clock, wait_s=10)
    assert cache.get(Phase.TTS) == SHADOW
    clock.now += 6  # the cached values are now older than the window; the flag changed meanwhile
    seen: list[PhaseFlag] = []
    burst = [threading.Thread(target=lambda: seen.append(cache.get(Phase.TTS))) for _ in range(6)]
    for thread in burst:
        thread.start()
    wait_for(lambda: len(calls) == 2, timeout=5, what="the refresh to start")
    release.set()
    for thread in burst:
        thread.join(10)
    assert seen == [FASTAPI] * 6  # every request of the burst saw the new flag, none the old one
    assert len(calls) == 2  # one refresh for the whole burst
