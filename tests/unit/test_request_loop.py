"""The per-process loop for Runware requests: work runs on its thread, drains, is gated, shares one client."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest

from fastapi_app.images import request_loop
from fastapi_app.images.request_loop import RequestLoop, batch_writes, gated, shared_redis
from strangler_bridge.settings import Settings
from tests.support.waiting import wait_for

DEADLINE_S = 10.0


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[RequestLoop]:
    """A request loop installed as this process's (the Redis URL is never connected to)."""
    requests = RequestLoop(Settings.load(redis_url="redis://127.0.0.1:9/0", runware_concurrency=2))
    monkeypatch.setattr(request_loop, "_LOOPS", [requests])
    yield requests
    requests.loop.call_soon_threadsafe(requests.loop.stop)


def _on(requests: RequestLoop) -> asyncio.Event:
    """An asyncio event of the request loop (made on it), to release work waiting there."""
    made: list[asyncio.Event] = []
    ready = threading.Event()

    def make() -> None:
        made.append(asyncio.Event())
        ready.set()

    requests.loop.call_soon_threadsafe(make)
    assert ready.wait(DEADLINE_S)
    return made[0]


def test_work_runs_on_the_loop_thread_and_drain_waits_for_it(loop: RequestLoop) -> None:
    release = _on(loop)
    ran_on: list[str] = []

    async def work() -> None:
        await release.wait()
        ran_on.append(threading.current_thread().name)

    loop.submit(work())
    assert loop.drain(0.05) is False  # still waiting for its release
    loop.loop.call_soon_threadsafe(release.set)
    assert loop.drain(DEADLINE_S) is True
    assert ran_on == ["runware-requests"]


def test_a_failing_unit_is_logged_and_the_loop_goes_on(loop: RequestLoop, caplog: pytest.LogCaptureFixture) -> None:
    done: list[int] = []

    async def fails() -> None:
        raise ValueError("boom")

    async def works() -> None:
        done.append(1)

    with caplog.at_level(logging.ERROR, logger=request_loop.__name__):
        loop.submit(fails())
        assert loop.drain(DEADLINE_S)
        loop.submit(works())
        assert loop.drain(DEADLINE_S)
    assert done == [1]
    assert "runware requests failed" in caplog.text and "boom" in caplog.text


def test_the_gate_lets_twice_the_runware_limit_through_at_once(loop: RequestLoop) -> None:
    release = _on(loop)
    active = peak = 0

    async def image() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1

    for _ in range(10):
        loop.submit(gated(image()))
    wait_for(lambda: active == 4, timeout=DEADLINE_S, what="four images past the gate")
    loop.loop.call_soon_threadsafe(release.set)
    assert loop.drain(DEADLINE_S)
    assert peak == 4  # 2 x runware_concurrency; the other six waited at the gate


def test_one_redis_client_and_one_batch_writer_on_the_loop_new_ones_elsewhere(loop: RequestLoop) -> None:
    async def on_the_loop() -> tuple[object, object, object, object]:
        return shared_redis(), shared_redis(), batch_writes(), batch_writes()

    first, second, writes, again = asyncio.run_coroutine_threadsafe(on_the_loop(), loop.loop).result(DEADLINE_S)
    assert first is not None and first is second
    assert writes is loop.writes and again is loop.writes

    async def elsewhere() -> tuple[object, object, object]:
        return shared_redis(), batch_writes(), batch_writes()

    client, one, other = asyncio.run(elsewhere())
    assert client is None
    assert one is not loop.writes and other is not one
