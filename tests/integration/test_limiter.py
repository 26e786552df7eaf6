"""The cluster-wide limiter against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis

from fastapi_app.store import limiter as limiter_module
from fastapi_app.store.limiter import Limiter
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.integration


def test_never_more_than_the_limit_in_flight(settings: Settings) -> None:
    async def main() -> int:
        peak = 0
        active = 0
        async with (
            aredis.Redis.from_url(settings.redis_url or "") as one,
            aredis.Redis.from_url(settings.redis_url or "") as two,
        ):
            # Two limiters on two connections stand for two workers sharing the key.
            limiters = [Limiter(c, f"{settings.redis_prefix}:lim", 3, lease_s=5) for c in (one, two)]

            async def use(limiter: Limiter) -> None:
                nonlocal peak, active
                async with limiter.slot():
                    active += 1
                    peak = max(peak, active)
                    await asyncio.sleep(0.01)
                    active -= 1

            await asyncio.gather(*(use(limiters[i % 2]) for i in range(40)))
            assert await limiters[0].in_use() == 0
        return peak

    assert asyncio.run(main()) == 3


def test_a_dead_holders_slot_expires(settings: Settings) -> None:
    async def main() -> None:
        async with aredis.Redis.from_url(settings.redis_url or "") as client:
            limiter = Limiter(client, f"{settings.redis_prefix}:lim2", 1, lease_s=0.3)
            assert await limiter.try_acquire("crashed-worker")  # taken and never released nor renewed
            assert not await limiter.try_acquire("other")
            deadline = asyncio.get_running_loop().time() + 5
            while not await limiter.try_acquire("other"):
                assert asyncio.get_running_loop().time() < deadline, "lease never expired"
                await asyncio.sleep(0.05)

    asyncio.run(main())


def test_a_live_holder_keeps_its_slot_past_the_lease(settings: Settings) -> None:
    async def main() -> None:
        async with aredis.Redis.from_url(settings.redis_url or "") as client:
            limiter = Limiter(client, f"{settings.redis_prefix}:lim3", 1, lease_s=0.3)
            async with limiter.slot():
                await asyncio.sleep(1.0)  # three leases long: renewal must keep it
                assert not await limiter.try_acquire("intruder")
            assert await limiter.in_use() == 0

    asyncio.run(main())


def test_a_slot_given_back_wakes_a_waiter_of_the_same_process(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With polling an hour apart, only the release's wake-up can hand the slot over within the deadline.
    monkeypatch.setattr(limiter_module, "POLL_S", (3600.0, 3600.0))

    async def main() -> list[str]:
        order: list[str] = []
        async with aredis.Redis.from_url(settings.redis_url or "") as client:
            limiter = Limiter(client, f"{settings.redis_prefix}:lim4", 1, lease_s=5)
            holding = asyncio.Event()

            async def first() -> None:
                async with limiter.slot():
                    holding.set()
                    while not limiter_module._waiters(limiter.key):  # until the second waits for this slot
                        await asyncio.sleep(0.001)
                    order.append("first")

            async def second() -> None:
                await holding.wait()
                async with limiter.slot():
                    order.append("second")

            await asyncio.wait_for(asyncio.gather(first(), second()), timeout=30)
        return order

    assert asyncio.run(main()) == ["first", "second"]
