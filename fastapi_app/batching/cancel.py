"""Cancelling a batch: stop its submissions now, then cancel at the provider what may still be running.

Shared by the pipeline's job cancel (``orchestrator.cancel_provider_work``) and the batch routes
``POST /tts/batch/{id}/cancel``, ``POST /imagegen/batch/{id}/cancel`` and ``POST /video/render/{id}/cancel``,
which the Flask side calls when it gives up waiting. The record changes at once (atomic, idempotent: a second
cancel changes nothing); the provider calls run in a worker. A result that still arrives is kept for reuse:
the same create sent again (same ``Idempotency-Key`` and body) resumes a batch its client cancelled
(:func:`resume_if_cancelled_by_client`), reusing every item already made.
"""

from __future__ import annotations

import logging
import time

from fastapi_app import tasks
from fastapi_app.batching.updates import update_batch
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import NOUNS, Batch, GroupStatus, Kind, batch_not_found, check_id
from fastapi_app.store.batch_transitions import cancel_batch, retry_failed
from fastapi_app.store.docstore import Effects
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.errors import Conflict, ProviderError, RecordNotFound

#: Why a batch cancelled through its route ended (shown as its ``error``).
CANCELLED_BY_CLIENT = "cancelled by the client"

log = logging.getLogger(__name__)


def stop_batch(rt: Runtime, batch_id: str, reason: str = "cancelled") -> tuple[Batch, list[str]]:
    """Cancel the batch's unfinished work (``RecordNotFound`` if there is no such batch).

    Returns the batch and the provider ids of submissions that may still be running.
    """
    return update_batch(rt, batch_id, lambda batch: cancel_batch(batch, reason))


def cancel_at_provider(rt: Runtime, kind: str, provider_ids: list[str]) -> None:
    """Ask the provider to stop each submission (best effort; Runware has no cancel)."""
    # An image in flight at Runware finishes and is kept by its taskUUID for a retry.
    cancel = {"tts": rt.runpod.cancel, "vid": rt.video.cancel}.get(kind)
    if cancel is None:
        return
    for provider_id in provider_ids:
        try:
            cancel(provider_id)
        except ProviderError as exc:
            log.info("%s cancel of %s failed: %s", kind, provider_id, exc)


def cancel_batch_at_provider(rt: Runtime, batch_id: str) -> None:
    """Ask the provider to stop every submission of a cancelled batch that it may still be running."""
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status is not BatchStatus.CANCELLED:
        return
    running = [g.provider_id for g in batch.groups if g.status is GroupStatus.CANCELLED and g.provider_id]
    cancel_at_provider(rt, batch.kind, running)


def cancel_requested(rt: Runtime, kind: Kind, batch_id: str, reason: str = CANCELLED_BY_CLIENT) -> Batch:
    """The cancel route of a batch: stop it now, cancel provider work in a worker; the batch as it stands.

    404 for an unknown batch (or one of another kind); 409 for a batch of a pipeline job (cancel the job).
    """
    check_id(kind, batch_id)

    def cancel_own(batch: Batch) -> tuple[Effects, list[str] | None]:
        if batch.kind != kind or batch.job_id is not None:
            return Effects(changed=False), None
        return cancel_batch(batch, reason)

    try:
        batch, running = update_batch(rt, batch_id, cancel_own)
    except RecordNotFound:
        raise batch_not_found(kind, batch_id) from None
    if batch.kind != kind:
        raise batch_not_found(kind, batch_id)
    if running is None:
        raise Conflict(f"{NOUNS[kind]} {batch_id} belongs to job {batch.job_id}: cancel the job instead")
    if running:
        tasks.cancel_at_provider.enqueue(rt, batch_id)
    return batch


def resume_if_cancelled_by_client(rt: Runtime, batch: Batch) -> tuple[Batch, bool]:
    """A create replayed for a batch its client cancelled: resume it (completed items kept). ``(batch, resumed)``.

    A client that gave up waiting cancels its batch; when it asks for the same work again, that work is wanted
    after all, and the items already made (or still arriving) are reused instead of answering "cancelled".
    """
    if batch.status is not BatchStatus.CANCELLED or batch.error != CANCELLED_BY_CLIENT or batch.job_id:
        return batch, False
    resumed, again = update_batch(rt, batch.id, lambda b: retry_failed(b, now=time.time()))
    return resumed, again > 0
