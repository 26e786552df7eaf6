"""Creating video renders and presenting them."""

from __future__ import annotations

import time

from fastapi_app.batch_views import as_time
from fastapi_app.batches import Batch, new_batch, open_groups_due, request_hash
from fastapi_app.docstore import Effects
from fastapi_app.runtime import Runtime
from strangler_bridge.contracts.video import VideoRenderCreate, VideoRenderStatus
from strangler_bridge.ids import new_id


def create_render(
    rt: Runtime, body: VideoRenderCreate, *, idempotency_key: str | None, job_id: str | None = None
) -> tuple[Batch, bool]:
    """Store a new render (a batch of one item). Returns ``(batch, created)``."""
    batch = new_batch(new_id("vid"), "vid", [0], 1, body.model_dump(mode="json"), video_id=body.video_id, job_id=job_id)
    effects = Effects(due=open_groups_due(batch, time.time() + rt.settings.reconcile_after_s))
    # A pipeline job's step is made under the job's own key, in a namespace no client key can reach.
    key = f"{job_id}:vid" if job_id else idempotency_key
    idem = (key, request_hash(body)) if key else None
    return rt.batches.create(batch, effects, idem=idem, internal_idem=job_id is not None, index="vid")


def to_status(batch: Batch) -> VideoRenderStatus:
    """The public view of a render."""
    item = batch.items[0]
    return VideoRenderStatus(
        id=batch.id,
        status=batch.status,
        video_id=batch.video_id,
        created_at=as_time(batch.created_at),
        updated_at=as_time(batch.updated_at),
        progress=batch.progress(),
        video_url=f"/video/render/{batch.id}/video" if item.artifact else None,
        size_bytes=item.size_bytes,
        error=batch.error or item.error,
        attempts=batch.groups[0].attempt,
        version=batch.version,
        metadata=VideoRenderCreate.model_validate(batch.request).metadata,
    )


def artifact_key(batch_id: str) -> str:
    """Where the rendered video is stored."""
    return f"vid/{batch_id}/video.mp4"
