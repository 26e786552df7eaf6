"""The per-process request loop, and the group commit of a batch's writes made on it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import pytest

from fastapi_app.batching.updates import Transition
from fastapi_app.images import request_loop as request_loop_module
from fastapi_app.images.batch_writes import BatchWrites
from fastapi_app.images.request_loop import RequestLoop, batch_writes, gated, shared_redis
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch, new_batch
from fastapi_app.store.docstore import Effects
from strangler_bridge.errors import RecordNotFound, StoreUnavailable
from strangler_bridge.settings import Settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit

RT = cast(Runtime, object())  # BatchWrites only hands the runtime to its write function


@pytest.fixture
def loop() -> Iterator[RequestLoop]:
    requests = RequestLoop(Settings.load(runware_concurrency=2))
    yield requests
    requests.loop.call_soon_threadsafe(requests.loop.stop)
    wait_for(lambda: not requests.loop.is_running(), timeout=10, what="the loop to stop")
    requests.loop.close()


def _set_soon(loop: RequestLoop, event: asyncio.Event) -> None:
    loop.loop.call_soon_threadsafe(event.set)


# --- the request loop ---------------------------------------------------------------------------------


def test_submitted_work_runs_on_the_loops_thread(loop: RequestLoop) -> None:
    seen: list[tuple[threading.Thread, asyncio.AbstractEventLoop]] = []

    async def work() -> None:
        seen.append((threading.current_thread(), asyncio.get_running_loop()))

    loop.submit(work())
    assert loop.drain(30)
    assert seen == [(loop._thread, loop.loop)]
    assert seen[0][0] is not threading.current_thread()


def test_drain_waits_for_the_work_and_says_when_it_did_not_finish(loop: RequestLoop) -> None:
    release = asyncio.Event()
    finished: list[bool] = []

    async def work() -> None:
        await release.wait()
        finished.append(True)

    loop.submit(work())
    assert loop.drain(0.05) is False  # the work cannot finish before it is released
    _set_soon(loop, release)
    assert loop.drain(30) is True
    assert finished == [True]


def test_gated_work_is_bounded_to_twice_the_limit(loop: RequestLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_loop_module, "_LOOPS", [loop])
    release = asyncio.Event()
    arrived, running, peak, done = [0], [0], [0], [0]

    async def work() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await release.wait()
        running[0] -= 1
        done[0] += 1

    async def one() -> None:
        arrived[0] += 1  # in the same step as entering the gate: no await in between
        await gated(work())

    for _ in range(10):
        loop.submit(one())
    wait_for(lambda: arrived[0] == 10, what="every piece of work to reach the gate")
    assert running[0] == 4  # 2 x runware_concurrency; the other 6 wait at the gate
    _set_soon(loop, release)
    assert loop.drain(30)
    assert (peak[0], done[0]) == (4, 10)


def test_gated_outside_the_request_loop_just_runs_the_work() -> None:
    async def work() -> str:
        return "ran"

    assert asyncio.run(gated(work())) == "ran"


def test_a_failing_piece_of_work_is_logged_not_raised(loop: RequestLoop, caplog: pytest.LogCaptureFixture) -> None:
    async def work() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger=request_loop_module.__name__):
        loop.submit(work())
        assert loop.drain(30)
        record = wait_for(
            lambda: next((r for r in caplog.records if "runware requests failed" in r.getMessage()), None),
            what="the failure to be logged",
        )
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_one_redis_client_and_one_batch_writer_on_the_loop_new_ones_elsewhere(
    loop: RequestLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(request_loop_module, "_LOOPS", [loop])
    # A client is made, never connected.
    monkeypatch.setattr(loop, "settings", loop.settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"}))

    async def on_the_loop() -> tuple[object, ...]:
        return shared_redis(), shared_redis(), batch_writes(), batch_writes()

    first, second, writes, again = asyncio.run_coroutine_threadsafe(on_the_loop(), loop.loop).result(30)
    assert first is not None and first is second
    assert writes is loop.writes and again is loop.writes

    async def elsewhere() -> tuple[object, ...]:
        return shared_redis(), batch_writes(), batch_writes()

    client, one, other = asyncio.run(elsewhere())
    assert client is None
    assert one is not loop.writes and other is not one


# --- group commit of a batch's writes -----------------------------------------------------------------


class FakeStore:
    """A write function like ``update_batch_many``: all transitions or none; the first write of ``hold`` waits."""

    def __init__(self, hold: str = "held") -> None:
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def write_many(self, rt: Runtime, batch_id: str, transitions: Sequence[Transition[Any]]) -> tuple[Batch, list[Any]]:
        with self._lock:
            first = not self.calls
            self.calls.append((batch_id, len(transitions)))
        if first and batch_id == self.hold:
            self.entered.set()
            assert self.release.wait(30), "the test never released the first write"
        batch = new_batch(batch_id, "img", [0], 1, {}, video_id=None)
        return batch, [transition(batch)[1] for transition in transitions]


def _returns(value: str) -> Transition[str]:
    return lambda batch: (Effects(), value)


def _raises(exc: Exception) -> Transition[str]:
    def transition(batch: Batch) -> tuple[Effects, str]:
        raise exc

    return transition


async def _until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait on the running loop for ``condition`` (other threads and tasks make it true), up to a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _queue_behind_a_held_write(
    writes: BatchWrites, store: FakeStore, transitions: list[Transition[str]]
) -> tuple[asyncio.Task[str], list[asyncio.Task[str]]]:
    """Start a write of batch ``held`` that blocks, then queue ``transitions`` for the same batch behind it."""
    first = asyncio.create_task(writes.apply(RT, "held", _returns("first")))
    await _until(store.entered.is_set, "the first write to start")
    arrived: list[int] = []

    async def apply(transition: Transition[str]) -> str:
        arrived.append(1)  # apply queues its write before its first await
        return await writes.apply(RT, "held", transition)

    queued = [asyncio.create_task(apply(t)) for t in transitions]
    await _until(lambda: len(arrived) == len(transitions), "the writes to queue")
    return first, queued


def test_writes_arriving_during_a_write_go_together_in_the_next_one() -> None:
    store = FakeStore()

    async def scenario() -> None:
        writes = BatchWrites(store.write_many)
        first, queued = await _queue_behind_a_held_write(writes, store, [_returns(f"t{i}") for i in range(5)])
        # Another batch is not held behind the first one's write.
        assert await asyncio.wait_for(writes.apply(RT, "other", _returns("o")), timeout=30) == "o"
        assert not first.done()
        store.release.set()
        assert await first == "first"
        assert await asyncio.gather(*queued) == ["t0", "t1", "t2", "t3", "t4"]

    asyncio.run(scenario())
    assert store.calls == [("held", 1), ("other", 1), ("held", 5)]


def test_a_failing_transition_fails_only_its_own_caller() -> None:
    store = FakeStore()

    async def scenario() -> None:
        writes = BatchWrites(store.write_many)
        transitions = [_returns("a"), _raises(ValueError("a bug")), _returns("c")]
        first, queued = await _queue_behind_a_held_write(writes, store, transitions)
        store.release.set()
        await first
        outcomes = await asyncio.gather(*queued, return_exceptions=True)
        assert outcomes[0] == "a"
        assert isinstance(outcomes[1], ValueError)
        assert outcomes[2] == "c"

    asyncio.run(scenario())
    # The combined write failed as a whole, then each of its transitions was applied alone.
    assert store.calls == [("held", 1), ("held", 3), ("held", 1), ("held", 1), ("held", 1)]


@pytest.mark.parametrize("error", [RecordNotFound("no batch 'held'"), StoreUnavailable("Redis is down")])
def test_a_missing_batch_or_store_fails_every_queued_write_without_retrying_each(error: Exception) -> None:
    store = FakeStore()

    def failing(rt: Runtime, batch_id: str, transitions: Sequence[Transition[Any]]) -> tuple[Batch, list[Any]]:
        if store.calls:  # the held first write succeeds; the combined one after it fails as a whole
            store.calls.append((batch_id, len(transitions)))
            raise error
        return store.write_many(rt, batch_id, transitions)

    async def scenario() -> None:
        writes = BatchWrites(failing)
        first, queued = await _queue_behind_a_held_write(writes, store, [_returns("a"), _returns("b")])
        store.release.set()
        assert await first == "first"
        outcomes = await asyncio.gather(*queued, return_exceptions=True)
        assert [type(o) for o in outcomes] == [type(error), type(error)]

    asyncio.run(scenario())
    assert store.calls == [("held", 1), ("held", 2)]


def test_a_single_failing_write_raises_to_its_caller_and_the_next_write_starts_afresh() -> None:
    store = FakeStore(hold="")

    async def scenario() -> None:
        writes = BatchWrites(store.write_many)
        with pytest.raises(ValueError, match="a bug"):
            await writes.apply(RT, "b", _raises(ValueError("a bug")))
        assert await writes.apply(RT, "b", _returns("next")) == "next"

    asyncio.run(scenario())
    assert store.calls == [("b", 1), ("b", 1)]
