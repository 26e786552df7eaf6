"""One event loop per worker process for Runware requests, so an RQ worker is not held for a request's latency.

Runware answers a synchronous request only when its image is done (seconds). When the RQ task that submits an
image batch waited for the answers, a worker ran one batch at a time: 50 pipeline jobs on 2 workers took 15x
their critical path (docs/BENCHMARKS.md, benchmark 1). Now the task hands the batch to this loop and returns;
the loop runs the requests of every batch the process took at once, each still claimed in the batch record
and under the cluster-wide limiter. If the process dies, its claims lapse and the reconciler recovers the
images through ``getResponse``, as after any crash. A stopping worker drains the loop first (:func:`drain`).

At most twice ``STRANGLER_RUNWARE_CONCURRENCY`` images of a process are between waiting for a slot and being
stored (:func:`gated`), so a backlog of batches waits here instead of polling the limiter in Redis.

The loop's batch writes (claims, results) go through one :class:`~fastapi_app.images.batch_writes.BatchWrites`
(:func:`batch_writes`): the images of a batch start and finish together, so their writes are combined instead
of parsing and rewriting the batch record once per image, and a batch write never blocks the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import redis.asyncio as aredis

from fastapi_app.images.batch_writes import BatchWrites
from strangler_bridge.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
SHARED_REDIS_CONNECTIONS = 64


class RequestLoop:
    """An asyncio loop in a daemon thread, the futures of the work handed to it, and its batch writes."""

    def __init__(self, settings: Settings) -> None:
        limit = settings.runware_concurrency
        # Twice the limit: while some images are being stored (slot already given back), others wait for slots.
        self.gate = asyncio.Semaphore(2 * limit)
        self.writes = BatchWrites()
        self.settings = settings
        self.redis: aredis.Redis | None = None  # made on first use, so its connections belong to this loop
        self.loop = asyncio.new_event_loop()
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.loop.run_forever, name="runware-requests", daemon=True)
        self._thread.start()

    def submit(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the loop with the caller's context (its log ids and trace); return at once (failures are
        logged)."""
        future = asyncio.run_coroutine_threadsafe(_in_context(contextvars.copy_context(), work), self.loop)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("runware requests failed; the reconciler will pick them up", exc_info=future.exception())

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the work handed over so far; ``True`` if all of it finished."""
        with self._lock:
            pending = set(self._pending)
        _, not_done = concurrent.futures.wait(pending, timeout=timeout_s)
        return not not_done


async def _in_context(context: contextvars.Context, work: Coroutine[Any, Any, None]) -> None:
    # A task on the loop starts from the loop thread's context; this task's own copy takes the caller's values.
    for var, value in context.items():
        var.set(value)
    await work


_LOOPS: list[RequestLoop] = []
_CREATE = threading.Lock()


def request_loop(settings: Settings) -> RequestLoop:
    """This process's loop, started on first use (with these settings)."""
    with _CREATE:
        if not _LOOPS:
            _LOOPS.append(RequestLoop(settings))
        return _LOOPS[0]


def _running_on() -> RequestLoop | None:
    """This process's request loop if the caller runs on it (``None`` under another loop, an ``asyncio.run``)."""
    if _LOOPS and asyncio.get_running_loop() is _LOOPS[0].loop:
        return _LOOPS[0]
    return None


async def gated(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``, holding a place of the gate when running on this process's request loop."""
    requests = _running_on()
    if requests is None:
        return await work
    async with requests.gate:
        return await work


def batch_writes() -> BatchWrites:
    """The request loop's batch writes when running on it; else new ones for the caller (an ``asyncio.run``).

    Call it once per unit of work and pass the result along: writes combine only within one instance.
    """
    requests = _running_on()
    return BatchWrites() if requests is None else requests.writes


def shared_redis() -> aredis.Redis | None:
    """The request loop's Redis client when running on it; ``None`` elsewhere (the caller makes its own).

    One client for every batch of the process: a new client per batch opened a new connection per image, and
    each new connection costs a Unix or TCP handshake plus redis-py's driver metadata lookup (an
    ``importlib.metadata`` parse): a fifth of a worker's CPU in benchmark 1 (docs/BENCHMARKS.md).
    """
    requests = _running_on()
    if requests is None:
        return None
    if requests.redis is None:
        # Hundreds of images may be in flight: beyond the pool's size they wait for a connection (each use is
        # one short command) instead of failing with "Too many connections".
        pool = aredis.BlockingConnectionPool.from_url(
            requests.settings.redis_url or "", max_connections=SHARED_REDIS_CONNECTIONS, timeout=60
        )
        requests.redis = aredis.Redis(connection_pool=pool)
    return requests.redis


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context per process for the per-batch HTTP clients: building one costs ~25 ms of CPU and ~1 MB,
    which with dozens of batches in flight was most of a worker's memory."""
    return httpx.create_ssl_context()


def drain(timeout_s: float = 10.0) -> None:
    """Let the requests in flight finish before the process stops (bounded by ``timeout_s``)."""
    if _LOOPS and not _LOOPS[0].drain(timeout_s):
        log.warning("stopping with Runware requests in flight; their claims will lapse and be reconciled")
