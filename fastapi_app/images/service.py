"""Creating image batches and presenting them."""

from __future__ import annotations

import time

from fastapi_app.batch_views import as_time
from fastapi_app.batches import Batch, new_batch, open_groups_due, request_hash
from fastapi_app.docstore import Effects
from fastapi_app.runtime import Runtime
from strangler_bridge.contracts.images import ImageBatchCreate, ImageBatchStatus, ImageFormat, ImageResult
from strangler_bridge.errors import InvalidInput
from strangler_bridge.ids import new_id
from strangler_bridge.settings import Settings


def check_limits(body: ImageBatchCreate, settings: Settings) -> None:
    """Enforce the configured limits, naming the field at fault."""
    if len(body.images) > settings.max_chunks:
        raise InvalidInput(f"images: at most {settings.max_chunks} images per batch", field="images")
    for position, image in enumerate(body.images):
        if len(body.prompt_for(image)) > min(settings.max_text_chars, 3000):
            raise InvalidInput(
                f"images.{position}.prompt: with the style, at most {min(settings.max_text_chars, 3000)} characters",
                field=f"images.{position}.prompt",
            )


def create_batch(
    rt: Runtime, body: ImageBatchCreate, *, idempotency_key: str | None, job_id: str | None = None
) -> tuple[Batch, bool]:
    """Store a new image batch (one provider task per image). Returns ``(batch, created)``."""
    check_limits(body, rt.settings)
    indexes = [image.index or 0 for image in body.images]
    batch = new_batch(
        new_id("img"), "img", indexes, 1, body.model_dump(mode="json"), video_id=body.video_id, job_id=job_id
    )
    effects = Effects(due=open_groups_due(batch, time.time() + rt.settings.reconcile_after_s))
    # A pipeline job's step is made under the job's own key, in a namespace no client key can reach.
    key = f"{job_id}:img" if job_id else idempotency_key
    idem = (key, request_hash(body)) if key else None
    return rt.batches.create(batch, effects, idem=idem, internal_idem=job_id is not None, index="img")


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
            )
            for item in batch.items
        ],
        cost_total=batch.total_cost,
        version=batch.version,
        error=batch.error,
        metadata=request.metadata,
    )


def artifact_key(batch_id: str, index: int, fmt: ImageFormat) -> str:
    """Where an image is stored."""
    return f"img/{batch_id}/{index}.{fmt.extension}"
