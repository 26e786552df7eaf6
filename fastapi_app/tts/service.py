"""Creating TTS batches and presenting them."""

from __future__ import annotations

from fastapi_app.api import limits
from fastapi_app.batching import creating
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch
from strangler_bridge.contracts.common import as_time
from strangler_bridge.contracts.tts import AudioFormat, TtsBatchCreate, TtsBatchStatus, TtsChunkResult


def create_batch(
    rt: Runtime, body: TtsBatchCreate, *, idempotency_key: str | None, job_id: str | None = None
) -> tuple[Batch, bool]:
    """Store a new batch (or find the one made under the same idempotency key) and queue its submission.

    Returns ``(batch, created)``.
    """
    limits.check_items(body.chunks, lambda chunk: chunk.text, rt.settings, field="chunks", part="text", per="batch")
    return creating.create_batch(
        rt,
        "tts",
        body,
        indexes=[index for index, _ in body.indexed()],
        group_size=rt.settings.tts_group_size,
        deadline_s=rt.settings.tts_deadline_s,
        video_id=body.video_id,
        idempotency_key=idempotency_key,
        job_id=job_id,
    )


def to_status(batch: Batch) -> TtsBatchStatus:
    """The public view of a TTS batch."""
    request = TtsBatchCreate.model_validate(batch.request)
    voices = {chunk.index: chunk.voice or request.voice for chunk in request.chunks}
    fmt = request.format
    return TtsBatchStatus(
        id=batch.id,
        status=batch.status,
        video_id=batch.video_id,
        format=fmt,
        created_at=as_time(batch.created_at),
        updated_at=as_time(batch.updated_at),
        progress=batch.progress(),
        chunks=[
            TtsChunkResult(
                index=item.index,
                status=item.status,
                voice=voices.get(item.index, request.voice),
                duration_s=item.duration_s,
                audio_url=f"/tts/batch/{batch.id}/chunks/{item.index}/audio" if item.artifact else None,
                content_type=item.content_type,
                size_bytes=item.size_bytes,
                error=item.error,
                provider_job_id=item.provider_id,
                attempts=batch.group(item.group).attempt,
                cost=item.cost,
                reused=item.reused,
            )
            for item in batch.items
        ],
        version=batch.version,
        error=batch.error,
        metadata=request.metadata,
        callback=batch.callback,
        cost_total=batch.total_cost,
        reused=batch.reused,
        cost_saved=batch.cost_saved,
    )


def artifact_key(batch_id: str, index: int, fmt: AudioFormat, delivery: str) -> str:
    """Where one delivery of a chunk's audio is stored (each delivery its own file: see ``delivery_tag``)."""
    return f"tts/{batch_id}/{index}-{delivery}.{fmt.value}"
