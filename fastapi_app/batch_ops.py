"""Changing a batch, and what follows when a batch that belongs to a pipeline job settles."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi_app import enqueueing
from fastapi_app.batches import Batch
from fastapi_app.docstore import Effects
from fastapi_app.runtime import Runtime

R = TypeVar("R")


def update_batch(rt: Runtime, batch_id: str, transition: Callable[[Batch], tuple[Effects, R]]) -> tuple[Batch, R]:
    """Apply a transition atomically; if it settled a pipeline job's batch, wake the job."""
    before: list[bool] = []

    def tracked(batch: Batch) -> tuple[Effects, R]:
        before[:] = [batch.status.terminal]
        return transition(batch)

    batch, result = rt.batches.update(batch_id, tracked)
    if batch.job_id and batch.status.terminal and before and not before[0]:
        enqueueing.advance_job(rt, batch.job_id)
    return batch, result
