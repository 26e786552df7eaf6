"""The outbox on a real Redis: a webhook is owed exactly when a record ends, and a claim holds it for one worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from pydantic import SecretStr

from fastapi_app.runtime import Runtime
from fastapi_app.store.docstore import Effects
from fastapi_app.store.job import JobRecord, fail_step, retry_job, start_step
from fastapi_app.store.outbox import note_attempt
from strangler_bridge.callbacks import new_secret
from strangler_bridge.contracts.callbacks import DeliveryStatus
from strangler_bridge.contracts.jobs import StepName
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.build(settings.model_copy(update={"callback_secret": [SecretStr(new_secret())]}))
    yield runtime
    for key in runtime.redis.scan_iter(f"{settings.redis_prefix}*"):
        runtime.redis.delete(key)
    runtime.close()


def new_job(rt: Runtime, callback_url: str | None = "https://hooks.example/done") -> JobRecord:
    job = JobRecord(id=f"job_{time.monotonic_ns()}", request={"chunks": [], "callback_url": callback_url})
    created, _ = rt.jobs.create(job, Effects())
    return created


def owed(rt: Runtime) -> list[str]:
    return [i.decode() for i in rt.redis.zrange(rt.keys.callbacks_due, 0, -1)]


def test_a_webhook_is_owed_once_per_end_and_a_new_end_owes_a_new_one(rt: Runtime) -> None:
    job = new_job(rt)
    rt.jobs.update(job.id, partial(start_step, name=StepName.TTS, now=1.0))
    assert owed(rt) == []  # running: nothing to announce
    ended, _ = rt.jobs.update(job.id, partial(fail_step, name=StepName.TTS, reason="boom", now=2.0))
    first = f"{job.id}.v{ended.version}"
    assert owed(rt) == [first] and ended.callback is not None and ended.callback.webhook_id == first
    delivery = rt.outbox.load(first)
    assert delivery is not None and delivery.url == "https://hooks.example/done" and '"job.failed"' in delivery.body

    # Noting an attempt changes the record but owes nothing more, and so does any change after the end.
    state = ended.callback.model_copy(update={"attempts": 1, "status": DeliveryStatus.DELIVERED})
    noted, changed = rt.jobs.update(job.id, partial(note_attempt, state=state))
    assert changed and noted.callback is not None and noted.callback.status is DeliveryStatus.DELIVERED
    rt.outbox.save(delivery, None)
    assert owed(rt) == []

    # Retried and failed again: a second end, a second webhook under a new id.
    rt.jobs.update(job.id, retry_job)
    again, _ = rt.jobs.update(job.id, partial(fail_step, name=StepName.TTS, reason="boom again", now=3.0))
    assert owed(rt) == [f"{job.id}.v{again.version}"] != [first]
    # An attempt of the old webhook no longer overwrites the record's state.
    _, stale = rt.jobs.update(job.id, partial(note_attempt, state=state))
    assert not stale


def test_a_record_without_callback_url_owes_nothing(rt: Runtime) -> None:
    job = new_job(rt, callback_url=None)
    ended, _ = rt.jobs.update(job.id, partial(fail_step, name=StepName.TTS, reason="boom", now=2.0))
    assert owed(rt) == [] and ended.callback is None


def test_a_claim_goes_to_one_worker_and_lapses_after_its_lease(rt: Runtime) -> None:
    jobs = [new_job(rt) for _ in range(20)]
    for job in jobs:
        rt.jobs.update(job.id, partial(fail_step, name=StepName.TTS, reason="x", now=1.0))
    now = time.time()
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda _: rt.outbox.claim(now, 30.0, 20), range(4)))
    claimed = [webhook_id for claim in claims for webhook_id in claim]
    assert len(claimed) == len(set(claimed)) == 20  # every entry, each to one claimer
    assert rt.outbox.claim(now + 29, 30.0, 20) == []  # held
    assert len(rt.outbox.claim(now + 31, 30.0, 20)) == 20  # the holder died: the lease lapsed
    assert rt.outbox.backlog(now + 31) == (20, 0)
