"""Changing a batch, and what follows when a batch that belongs to a pipeline job settles."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from fastapi_app import enqueueing
from fastapi_app.batches import Batch
from fastapi_app.docstore import Effects
from fastapi_app.runtime import Runtime

R = TypeVar("R")
Transition = Callable[[Batch], tuple[Effects, R]]


def update_batch(rt: Runtime, batch_id: str, transition: Transition[R]) -> tuple[Batch, R]:
    """Apply a transition atomically; if it settled a pipeline job's batch, wake the job."""
    before: list[bool] = []

    def tracked(batch: Batch) -> tuple[Effects, R]:
        before[:] = [batch.status.terminal]
        return transition(batch)

    batch, result = rt.batches.update(batch_id, tracked)
    if batch.job_id and batch.status.terminal and before and not before[0]:
        enqueueing.advance_job(rt, batch.job_id)
    return batch, result


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
