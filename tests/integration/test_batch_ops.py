"""Several transitions of one batch written in one atomic update, against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from fastapi_app.batching.updates import Transition, update_batch_many
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch, new_batch
from fastapi_app.store.batch_transitions import Claim, claim_group
from fastapi_app.store.docstore import Effects
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def rt(settings: Settings, redis_client: redis.Redis) -> Iterator[Runtime]:
    runtime = Runtime.build(settings)
    yield runtime
    runtime.close()


def _claim(no: int, now: float) -> Transition[Claim | None]:
    return lambda batch: claim_group(batch, no, now=now, lease_s=30.0, max_attempts=3)


def test_transitions_apply_in_order_as_one_write(rt: Runtime) -> None:
    batch = new_batch("img_many", "img", [0, 1, 2], 1, {}, video_id=None)
    rt.batches.create(batch, Effects())
    now = time.time()
    stored, claims = update_batch_many(rt, batch.id, [_claim(0, now), _claim(1, now), _claim(0, now)])
    assert [type(c) for c in claims] == [Claim, Claim, type(None)]  # the repeated claim sees the first one
    assert stored.version == 2  # one write for all three
    reloaded = rt.batches.load(batch.id)
    assert isinstance(reloaded, Batch)
    assert [g.status.value for g in reloaded.groups] == ["submitting", "submitting", "pending"]
    due = {m.decode(): s for m, s in rt.redis.zrange(rt.keys.due, 0, -1, withscores=True)}
    assert due == {"img:img_many:0": pytest.approx(now + 30.0), "img:img_many:1": pytest.approx(now + 30.0)}
