"""A cluster-wide concurrency limit in Redis: a semaphore whose slots are expiring leases.

Every worker (in any process, on any machine) takes a slot before each provider request and gives it back
after. A slot is a member of a sorted set scored by its lease's expiry; a holder renews its lease while its
request runs, so a worker that is killed simply stops renewing and its slots expire after ``lease_s``.
Expiry uses the Redis server's clock, so workers on several machines agree on it.

A waiter retries every 5-30 ms (a slot freed by another process, or an expired lease), and a slot given back
by this process wakes one of this process's waiters at once: with polling alone a freed slot sat idle for
~17 ms on average, 4% of a 0.4 s image (docs/BENCHMARKS.md, benchmark 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator

import redis.asyncio as aredis

_ACQUIRE = """
redis.replicate_commands()
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
  return 1
end
return 0
"""

_RENEW = """
redis.replicate_commands()
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], t + tonumber(ARGV[1]), ARGV[2])
  return 1
end
return 0
"""

_IN_USE = """
redis.replicate_commands()
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
return redis.call('ZCARD', KEYS[1])
"""


POLL_S = (0.005, 0.03)  # a waiter's retry interval, drawn at random between these (seconds)
# Per event loop, per limiter key: this process's waiters, in arrival order.
_WAITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, deque[asyncio.Future[None]]]] = (
    weakref.WeakKeyDictionary()
)


def _waiters(key: str) -> deque[asyncio.Future[None]]:
    return _WAITERS.setdefault(asyncio.get_running_loop(), {}).setdefault(key, deque())


class Limiter:
    """At most ``limit`` slots held at once across the cluster."""

    def __init__(self, client: aredis.Redis, key: str, limit: int, *, lease_s: float = 15.0) -> None:
        self.client = client
        self.key = key
        self.limit = limit
        self.lease_s = lease_s
        # EVALSHA with a fallback to EVAL: the script text is not sent with every call.
        self._acquire = client.register_script(_ACQUIRE)
        self._renew_lease = client.register_script(_RENEW)
        self._in_use = client.register_script(_IN_USE)

    async def try_acquire(self, token: str) -> bool:
        """Take a slot for ``token`` if one is free."""
        return bool(await self._acquire(keys=[self.key], args=[self.limit, self.lease_s, token]))

    async def release(self, token: str) -> None:
        """Give the slot back."""
        await self.client.zrem(self.key, token)

    async def in_use(self) -> int:
        """Slots currently held (expired leases are dropped first)."""
        return int(await self._in_use(keys=[self.key]))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a slot for the block; yields how long it took to get one."""
        token = secrets.token_hex(8)
        started = time.monotonic()
        while not await self.try_acquire(token):
            await self._wait_for_a_slot()
        waited = time.monotonic() - started
        renewer = asyncio.create_task(self._renew(token))
        try:
            yield waited
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.release(token)
            self._wake_one()

    async def _wait_for_a_slot(self) -> None:
        """Until this process gives a slot back, or a short random poll interval passes."""
        waiters = _waiters(self.key)
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(woken)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken, random.uniform(*POLL_S))
        finally:
            with contextlib.suppress(ValueError):  # already taken off by _wake_one
                waiters.remove(woken)

    def _wake_one(self) -> None:
        waiters = _waiters(self.key)
        while waiters:
            woken = waiters.popleft()
            if not woken.done():
                woken.set_result(None)
                return

    async def _renew(self, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            await self._renew_lease(keys=[self.key], args=[self.lease_s, token])
