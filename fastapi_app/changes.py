"""Long-polling: wake waiting requests the moment a record changes.

One pub/sub connection per API process listens to every record's change channel and sets the asyncio
events of the requests waiting on that record. Pub/sub is not durable, so waiters also re-read the record
at least once a second: a lost message costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import redis
import redis.asyncio as aredis

log = logging.getLogger(__name__)

T = TypeVar("T")
RECHECK_S = 1.0
STOP_S = 5.0


class ChangeHub:
    """Dispatches ``{prefix}:changes:{id}`` messages to the waiters of each id."""

    def __init__(self, client: aredis.Redis, prefix: str) -> None:
        self.client = client
        self.pattern = f"{prefix}:changes:*"
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening (call inside the running event loop)."""
        self._task = asyncio.create_task(self._listen(), name="change-hub")

    async def stop(self) -> None:
        """Stop listening, waiting at most ``STOP_S``: closing a pub/sub connection can stall (redis-py #3941),
        and a stalled close must not hold up the process's shutdown."""
        if self._task:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=STOP_S)
            if not done:
                log.warning("change hub: listener did not stop within %.0f s; shutting down without it", STOP_S)

    @contextlib.contextmanager
    def watch(self, record_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``record_id`` changes, for the duration of the block."""
        event = asyncio.Event()
        self._waiters.setdefault(record_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(record_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[record_id]

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.psubscribe(self.pattern)
                    backoff = 0.1
                    async for message in pubsub.listen():
                        if message.get("type") == "pmessage":
                            channel = message["channel"]
                            record_id = (channel.decode() if isinstance(channel, bytes) else channel).rsplit(":", 1)[1]
                            for event in self._waiters.get(record_id, ()):
                                event.set()
            except (redis.RedisError, OSError) as exc:
                log.warning("change hub: redis unavailable (%s); reconnecting", type(exc).__name__)
                self._wake_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()


async def wait_for_change(
    hub: ChangeHub,
    record_id: str,
    load: Callable[[], Awaitable[T | None]],
    *,
    version: Callable[[T], int],
    final: Callable[[T], bool],
    since: int | None,
    wait_s: float,
) -> T | None:
    """The record as soon as its version differs from ``since`` (or from now), it is final, or ``wait_s`` ends."""
    loop = asyncio.get_running_loop()
    with hub.watch(record_id) as changed:
        record = await load()
        if record is None or wait_s <= 0 or final(record):
            return record
        baseline = since if since is not None else version(record)
        deadline = loop.time() + wait_s
        while version(record) == baseline and not final(record):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, RECHECK_S))
            changed.clear()
            latest = await load()
            if latest is None:
                return None
            record = latest
        return record
