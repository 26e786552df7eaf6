"""Creating a batch and queueing its submission: what the TTS, image and video creates (and a job's steps) share.

A batch is stored first, with its groups already due in the reconciler's index, and its submission is queued
only once it exists: if the process dies in between, the reconciler submits it. A create replayed under the
same ``Idempotency-Key`` finds the stored batch and queues nothing, unless its client had cancelled it on
giving up (:func:`~fastapi_app.batching.cancel.resume_if_cancelled_by_client`): that work is wanted again.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from fastapi_app.api import limits

# Modules, not names: the task module imports the work modules, which import the services that import this.
from fastapi_app.batching import cancel as cancelling
from fastapi_app.batching import kinds
from fastapi_app.reuse import assign_keys
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch, Kind, new_batch, open_groups_due, request_hash
from fastapi_app.store.docstore import Effects
from strangler_bridge.ids import new_id
from strangler_bridge.keys import DueKind


def create_batch(
    rt: Runtime,
    kind: Kind,
    body: BaseModel,
    *,
    indexes: list[int],
    group_size: int,
    deadline_s: float,
    video_id: str | None,
    idempotency_key: str | None,
    job_id: str | None,
) -> tuple[Batch, bool]:
    """Store a new batch (or find the one made under the same key) and queue its submission if it is new.

    Returns ``(batch, created)``. A pipeline job's step is made under the job's own key (``job_id``), in a
    namespace no client's key can reach.
    """
    limits.check_callback(getattr(body, "callback_url", None), rt.settings)  # every create body may name one
    batch = new_batch(
        new_id(kind),
        kind,
        indexes,
        group_size,
        body.model_dump(mode="json"),
        video_id=video_id,
        job_id=job_id,
        deadline_s=deadline_s,
        now=time.time(),
    )
    assign_keys(rt.settings, batch, body)  # what decides reuse is fixed once, at creation
    effects = Effects(due=open_groups_due(batch, time.time() + rt.settings.reconcile_after_s))
    key = f"{job_id}:{kind}" if job_id else idempotency_key
    idem = (key, request_hash(body)) if key else None
    batch, created = rt.batches.create(batch, effects, idem=idem, internal_idem=job_id is not None, index=kind)
    batch, resumed = (batch, False) if created else cancelling.resume_if_cancelled_by_client(rt, batch)
    if created or resumed:
        kinds.BATCH_WORK[DueKind(batch.kind)].submit(rt, batch.id)
    return batch, created
