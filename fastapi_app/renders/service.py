"""Creating video renders and presenting them."""

from __future__ import annotations

from fastapi_app.batching import creating
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch
from strangler_bridge.contracts.common import as_time
from strangler_bridge.contracts.video import VideoRenderCreate, VideoRenderStatus


def create_render(
    rt: Runtime, body: VideoRenderCreate, *, idempotency_key: str | None, job_id: str | None = None
) -> tuple[Batch, bool]:
    """Store a new render (a batch of one item) and queue it for the video service. Returns ``(batch, created)``."""
    return creating.create_batch(
        rt,
        "vid",
        body,
        indexes=[0],
        group_size=1,
        deadline_s=rt.settings.video_deadline_s,
        video_id=body.video_id,
        idempotency_key=idempotency_key,
        job_id=job_id,
    )


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
        callback=batch.callback,
    )


def artifact_key(batch_id: str, delivery: str) -> str:
    """Where one delivery of the rendered video is stored (each delivery its own file: see ``delivery_tag``)."""
    return f"vid/{batch_id}/video-{delivery}.mp4"
