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

from fastapi_app.store.docstore import Record
from strangler_bridge.keys import Keys

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)
RECHECK_S = 1.0
READ_S = 0.5  # the listener's longest read, so it notices a stop request this soon
STOP_S = 5.0


class ChangeHub:
    """Dispatches the messages of every record's change channel (:meth:`Keys.changes`) to its waiters."""

    def __init__(self, client: aredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Start listening (call inside the running event loop)."""
        self._task = asyncio.create_task(self._listen(), name="change-hub")

    async def stop(self) -> None:
        """Ask the listener to stop and wait for it, at most ``STOP_S``, then cancel it.

        The listener checks the request between reads instead of relying on cancellation: a task cancelled
        inside redis-py's pub/sub read could stay pending for good, and asyncio.run then waits for it forever
        when the process exits (seen when uvicorn could not bind its port: the API never exited).
        """
        if self._task:
            self._stopping.set()
            done, _ = await asyncio.wait({self._task}, timeout=STOP_S)
            if not done:
                self._task.cancel()
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
        while not self._stopping.is_set():
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.psubscribe(self.keys.changes_pattern)
                    backoff = 0.1
                    while not self._stopping.is_set():
                        message = await pubsub.get_message(timeout=READ_S)
                        if message is not None and message.get("type") == "pmessage":
                            channel = message["channel"]
                            record_id = self.keys.changed_record(
                                channel.decode() if isinstance(channel, bytes) else channel
                            )
                            for event in self._waiters.get(record_id, ()):
                                event.set()
            except (redis.RedisError, OSError) as exc:
                log.warning("change hub: redis unavailable (%s); reconnecting", type(exc).__name__)
                self._wake_all()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 5.0)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()


async def wait_for_change(
    hub: ChangeHub,
    record_id: str,
    load: Callable[[], Awaitable[R | None]],
    *,
    since: int | None,
    wait_s: float,
) -> R | None:
    """The record as soon as its version differs from ``since`` (or from now), it is final, or ``wait_s`` ends."""
    loop = asyncio.get_running_loop()
    with hub.watch(record_id) as changed:
        record = await load()
        if record is None or wait_s <= 0 or record.final:
            return record
        baseline = since if since is not None else record.version
        deadline = loop.time() + wait_s
        while record.version == baseline and not record.final:
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
