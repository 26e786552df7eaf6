"""Creating TTS batches and presenting them."""

from __future__ import annotations

import time

from fastapi_app.batch_views import as_time
from fastapi_app.batches import Batch, new_batch, open_groups_due, request_hash
from fastapi_app.docstore import Effects
from fastapi_app.runtime import Runtime
from strangler_bridge.contracts.tts import AudioFormat, TtsBatchCreate, TtsBatchStatus, TtsChunkResult
from strangler_bridge.errors import InvalidInput
from strangler_bridge.ids import new_id
from strangler_bridge.settings import Settings


def check_limits(body: TtsBatchCreate, settings: Settings) -> None:
    """Enforce the configured limits, naming the field at fault."""
    if len(body.chunks) > settings.max_chunks:
        raise InvalidInput(f"chunks: at most {settings.max_chunks} chunks per batch", field="chunks")
    for position, chunk in enumerate(body.chunks):
        if len(chunk.text) > settings.max_text_chars:
            raise InvalidInput(
                f"chunks.{position}.text: at most {settings.max_text_chars} characters", field=f"chunks.{position}.text"
            )


def create_batch(
    rt: Runtime, body: TtsBatchCreate, *, idempotency_key: str | None, job_id: str | None = None
) -> tuple[Batch, bool]:
    """Store a new batch (or find the one made under the same idempotency key). Returns ``(batch, created)``."""
    check_limits(body, rt.settings)
    indexes = [index for index, _ in body.indexed()]
    batch = new_batch(
        new_id("tts"),
        "tts",
        indexes,
        rt.settings.tts_group_size,
        body.model_dump(mode="json"),
        video_id=body.video_id,
        job_id=job_id,
    )
    # Every group is due for a look even before it is submitted: if the API dies between storing the batch
    # and enqueueing its submission, the reconciler submits it.
    effects = Effects(due=open_groups_due(batch, time.time() + rt.settings.reconcile_after_s))
    # A pipeline job's step is made under the job's own key, in a namespace no client key can reach.
    key = f"{job_id}:tts" if job_id else idempotency_key
    idem = (key, request_hash(body)) if key else None
    return rt.batches.create(batch, effects, idem=idem, internal_idem=job_id is not None, index="tts")


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
            )
            for item in batch.items
        ],
        version=batch.version,
        error=batch.error,
        metadata=request.metadata,
    )


def artifact_key(batch_id: str, index: int, fmt: AudioFormat) -> str:
    """Where a chunk's audio is stored."""
    return f"tts/{batch_id}/{index}.{fmt.value}"
