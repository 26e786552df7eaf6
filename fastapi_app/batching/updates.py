"""Changing a batch, and what follows when a batch that belongs to a pipeline job settles."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from fastapi_app import tasks
from fastapi_app.metrics.families import TERMINAL_FAILURES
from fastapi_app.metrics.store import Increments, record
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import STEP_NAMES, Batch
from fastapi_app.store.batch_transitions import ItemResult, expire_batch
from fastapi_app.store.docstore import Effects
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.errors import RecordNotFound

R = TypeVar("R")
Transition = Callable[[Batch], tuple[Effects, R]]


def update_batch(rt: Runtime, batch_id: str, transition: Transition[R]) -> tuple[Batch, R]:
    """Apply a transition atomically; share what it finished (reuse); if it settled a pipeline job's batch, wake
    the job."""
    from fastapi_app.reuse import work as reuse  # it updates batches through here: imported when first used

    before: list[bool] = []
    opened: dict[int, str | None] = {}

    def tracked(batch: Batch) -> tuple[Effects, R]:
        before[:] = [batch.status.terminal]
        opened.clear()
        opened.update(reuse.open_items(batch))
        return transition(batch)

    batch, result = rt.batches.update(batch_id, tracked)
    reuse.after_update(rt, batch, opened)
    settled = batch.status.terminal and bool(before) and not before[0]
    if settled and batch.status is BatchStatus.FAILED:
        count_failure(rt, STEP_NAMES[batch.kind], batch.error_code.value if batch.error_code else "unknown")
    if settled and batch.job_id:
        tasks.advance_job.enqueue(rt, batch.job_id)
    return batch, result


def count_failure(rt: Runtime, phase: str, reason: str) -> None:
    """Count one terminal failure of a step's batch (or of the segments step) by its reason code."""
    increments = Increments()
    increments.inc(TERMINAL_FAILURES, (phase, reason))
    record(rt.redis, rt.keys, increments)


def discard_unrecorded(rt: Runtime, batch: Batch, results: Sequence[ItemResult]) -> None:
    """Remove the stored files of results the batch did not record (another delivery of the item won)."""
    for result in results:
        if batch.item(result.index).artifact != result.artifact:
            rt.artifacts.delete(result.artifact)


def update_batch_many(rt: Runtime, batch_id: str, transitions: Sequence[Transition[R]]) -> tuple[Batch, list[R]]:
    """Apply several transitions, in order, in one atomic update; their results in the same order.

    Parsing and rewriting a batch document is most of a transition's cost, so results that arrive together
    (the images of one batch, the webhooks of one batch) are written once instead of once each.
    """
    if len(transitions) == 1:
        batch, result = update_batch(rt, batch_id, transitions[0])
        return batch, [result]

    def combined(batch: Batch) -> tuple[Effects, list[R]]:
        effects, results = [], []
        for transition in transitions:
            effect, result = transition(batch)
            effects.append(effect)
            results.append(result)
        return merge_effects(effects), results

    return update_batch(rt, batch_id, combined)


def merge_effects(effects: Sequence[Effects]) -> Effects:
    """The effects of transitions applied one after the other, as one (a later one wins for the same member)."""
    merged = Effects(changed=False)
    for effect in effects:
        # Within one Effects the due-index additions are applied before the removals (DocStore._apply_effects).
        for member, deadline in effect.due.items():
            merged.undue.discard(member)
            merged.due[member] = deadline
        for member in effect.undue:
            merged.due.pop(member, None)
            merged.undue.add(member)
        merged.changed = merged.changed or effect.changed
    return merged


def past_deadline(rt: Runtime, batch: Batch) -> bool:
    """Fail the batch if its step's deadline has passed (the reconciler's check); whether it had passed."""
    if batch.deadline_at is None or time.time() < batch.deadline_at:
        return False
    with contextlib.suppress(RecordNotFound):  # the record expired meanwhile
        update_batch(rt, batch.id, lambda b: expire_batch(b, now=time.time()))
    return True
