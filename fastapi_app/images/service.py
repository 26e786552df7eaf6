"""Creating image batches and presenting them."""

from __future__ import annotations

from fastapi_app.api import limits
from fastapi_app.batching import creating
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch
from strangler_bridge.contracts.common import as_time
from strangler_bridge.contracts.images import (
    MAX_PROMPT_CHARS,
    ImageBatchCreate,
    ImageBatchStatus,
    ImageFormat,
    ImageResult,
)


def create_batch(
    rt: Runtime, body: ImageBatchCreate, *, idempotency_key: str | None, job_id: str | None = None
) -> tuple[Batch, bool]:
    """Store a new image batch (one provider task per image) and queue its submission. Returns ``(batch, created)``."""
    limits.check_items(
        body.images,
        body.prompt_for,
        rt.settings,
        field="images",
        part="prompt",
        per="batch",
        max_chars=min(rt.settings.max_text_chars, MAX_PROMPT_CHARS),
        counted="with the style, ",
    )
    return creating.create_batch(
        rt,
        "img",
        body,
        indexes=[image.index or 0 for image in body.images],
        group_size=1,
        deadline_s=rt.settings.imagegen_deadline_s,
        video_id=body.video_id,
        idempotency_key=idempotency_key,
        job_id=job_id,
    )


def to_status(batch: Batch) -> ImageBatchStatus:
    """The public view of an image batch."""
    request = ImageBatchCreate.model_validate(batch.request)
    return ImageBatchStatus(
        id=batch.id,
        status=batch.status,
        video_id=batch.video_id,
        created_at=as_time(batch.created_at),
        updated_at=as_time(batch.updated_at),
        progress=batch.progress(),
        images=[
            ImageResult(
                index=item.index,
                status=item.status,
                image_url=f"/imagegen/batch/{batch.id}/images/{item.index}" if item.artifact else None,
                content_type=item.content_type,
                size_bytes=item.size_bytes,
                cost=item.cost,
                error=item.error,
                provider_task_uuid=item.provider_id or batch.group(item.group).provider_id,
                attempts=batch.group(item.group).attempt,
                reused=item.reused,
            )
            for item in batch.items
        ],
        cost_total=batch.total_cost,
        version=batch.version,
        error=batch.error,
        metadata=request.metadata,
        callback=batch.callback,
        reused=batch.reused,
        cost_saved=batch.cost_saved,
    )


def artifact_key(batch_id: str, index: int, fmt: ImageFormat, delivery: str) -> str:
    """Where one delivery of an image is stored (each delivery its own file: see ``delivery_tag``)."""
    return f"img/{batch_id}/{index}-{delivery}.{fmt.extension}"
