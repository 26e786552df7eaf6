"""The images of a batch claimed and completed through combined writes, against a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from fastapi_app.images.batch_writes import BatchWrites
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch, new_batch
from fastapi_app.store.batch_transitions import Claim, ItemResult, claim_group, complete_group
from fastapi_app.store.docstore import Effects
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.integration

IMAGES = 20


@pytest.fixture
def rt(settings: Settings, redis_client: redis.Redis) -> Iterator[Runtime]:
    runtime = Runtime.build(settings)
    yield runtime
    runtime.close()


def _stored(rt: Runtime, batch_id: str) -> Batch:
    batch = rt.batches.load(batch_id)
    assert isinstance(batch, Batch)
    return batch


def test_a_batchs_images_arriving_together_are_claimed_and_completed_in_one_write_each(rt: Runtime) -> None:
    batch = new_batch("img_writes", "img", list(range(IMAGES)), 1, {}, video_id=None)
    rt.batches.create(batch, Effects())
    now = time.time()

    async def claim(writes: BatchWrites, no: int) -> Claim | None:
        return await writes.apply(rt, batch.id, lambda b: claim_group(b, no, now=now, lease_s=30.0, max_attempts=3))

    async def complete(writes: BatchWrites, no: int) -> bool:
        item = ItemResult(index=no, artifact=f"a/{no}.png", content_type="image/png", size_bytes=1)
        return await writes.apply(rt, batch.id, lambda b: complete_group(b, no, [item], max_attempts=3, now=0.0))

    async def scenario() -> tuple[list[Claim | None], list[bool]]:
        writes = BatchWrites()
        # All 20 queue in the step that starts the batch's writer, so they go in its first write.
        claims = await asyncio.gather(*(claim(writes, no) for no in range(IMAGES)))
        assert _stored(rt, batch.id).version == 2
        done = await asyncio.gather(*(complete(writes, no) for no in range(IMAGES)))
        return claims, done

    claims, done = asyncio.run(scenario())
    assert [c.no if c else None for c in claims] == list(range(IMAGES))
    assert len({c.token for c in claims if c}) == IMAGES  # each caller got its own claim
    assert done == [True] * IMAGES
    stored = _stored(rt, batch.id)
    assert stored.version == 3  # created, claimed, completed: three writes for twenty images
    assert stored.status is BatchStatus.COMPLETED
    assert rt.redis.zrange(rt.keys.due, 0, -1) == []  # every claim's deadline went with its completion
