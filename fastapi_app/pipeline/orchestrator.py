"""Moving a pipeline job through ``tts -> segments -> imagegen -> video``.

:func:`advance` is the job's one driver. It runs as an RQ task whenever something may have changed (the
job was created or retried, a batch of it settled, the video service called back, or the job's deadline in
the due index passed) and does whatever the first unfinished step needs. It is safe to run twice: batches
are created under idempotency keys derived from the job id, renders under a render id derived from it,
and every record change is an atomic transition.

The ``segments.json`` gate: the image batch is created only from the stored ``segments.json``, which
exists only once every TTS chunk is completed.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable

from fastapi_app import enqueueing
from fastapi_app.artifact_links import link
from fastapi_app.batch_ops import update_batch
from fastapi_app.batches import Batch, GroupStatus, cancel_batch
from fastapi_app.docstore import Effects
from fastapi_app.images import service as image_service
from fastapi_app.pipeline.records import JobRecord, StepRecord, fail_step, finish_step, job_due, set_render, start_step
from fastapi_app.runtime import Runtime
from fastapi_app.signing import sign
from fastapi_app.tts import service as tts_service
from strangler_bridge.contracts.common import BatchStatus, ItemStatus
from strangler_bridge.contracts.images import ImageBatchCreate, ImageIn
from strangler_bridge.contracts.jobs import JobCreate, StepName
from strangler_bridge.contracts.tts import TtsBatchCreate, TtsChunkIn
from strangler_bridge.errors import BridgeError, ProviderError, ProviderNotFound, ProviderRejected
from strangler_bridge.providers.video import RenderOptions, RenderRequest, RenderSegment, RenderState
from strangler_bridge.segments import SegmentInput, Segments, load_builder

log = logging.getLogger(__name__)
VIDEO_PURPOSE = "video"

#: Creates (or finds, by idempotency key) a step's batch and returns its id.
BatchFactory = Callable[[Runtime, JobRecord], str]


def advance(rt: Runtime, job_id: str) -> None:
    """Do what the job's first unfinished step needs; move on while steps complete."""
    for _ in range(8):
        job = rt.jobs.load(job_id)
        if job is None or job.status.terminal:
            return
        step = job.current()
        if step is None:
            return
        if not STEPS[step.name](rt, job, step):
            break
    # A safety net: if the event that should wake this job is lost, the reconciler brings it back.
    job = rt.jobs.load(job_id)
    if job is not None and not job.status.terminal:
        rt.redis.zadd(rt.batches.due_key, {job_due(job_id): time.time() + max(rt.settings.reconcile_after_s, 5.0)})


def _batch_step(rt: Runtime, job: JobRecord, step: StepRecord, create: BatchFactory) -> bool:
    """Shared by the TTS and image steps: create (or find) the batch, then follow it."""
    if step.status is ItemStatus.PENDING:
        batch_id = step.batch_id or create(rt, job)
        rt.jobs.update(job.id, lambda j: start_step(j, step.name, now=time.time(), batch_id=batch_id))
        step.batch_id = batch_id
    batch = rt.batches.load(step.batch_id or "")
    if batch is None:
        _fail(rt, job, step.name, "the step's batch expired or was deleted")
        return False
    if batch.status is BatchStatus.COMPLETED:
        ids = [g.provider_id for g in batch.groups if g.provider_id]
        rt.jobs.update(
            job.id, lambda j: finish_step(j, step.name, now=time.time(), cost=batch.total_cost, provider_ids=ids)
        )
        return True
    if batch.status is BatchStatus.FAILED:
        _fail(rt, job, step.name, batch.error or "the batch failed")
    elif any(g.status is GroupStatus.PENDING for g in batch.groups):
        _submit(rt, batch)
    return False


def _submit(rt: Runtime, batch: Batch) -> None:
    if batch.kind == "tts":
        enqueueing.submit_tts(rt, batch.id)
    else:
        enqueueing.submit_images(rt, batch.id)


def _create_tts(rt: Runtime, job: JobRecord) -> str:
    request = JobCreate.model_validate(job.request)
    body = TtsBatchCreate(
        chunks=[TtsChunkIn(text=c.text, index=c.index, voice=c.voice) for c in request.chunks],
        voice=request.voice,
        video_id=request.video_id,
        metadata={"job_id": job.id},
    )
    batch, created = tts_service.create_batch(rt, body, idempotency_key=f"job-{job.id}-tts", job_id=job.id)
    if created:
        enqueueing.submit_tts(rt, batch.id)
    return batch.id


def _segments(rt: Runtime, job: JobRecord, step: StepRecord) -> bool:
    """Build ``segments.json`` from the TTS durations and store it: the gate before any image work."""
    request = JobCreate.model_validate(job.request)
    tts = rt.batches.load(job.step(StepName.TTS).batch_id or "")
    if tts is None or tts.status is not BatchStatus.COMPLETED:
        _fail(rt, job, StepName.SEGMENTS, "the TTS batch is missing or not completed")
        return False
    chunks = {chunk.index: chunk for chunk in request.chunks}
    inputs = [
        SegmentInput(
            index=item.index,
            text=chunks[item.index].text,
            duration_s=item.duration_s or 0.0,
            image_prompt=chunks[item.index].image_prompt,
            voice=chunks[item.index].voice or request.voice,
        )
        for item in tts.items
    ]
    try:
        segments = load_builder(rt.settings.segments_builder)(inputs)
        document = Segments(
            job_id=job.id, total_duration_s=round(sum(s.duration_s for s in segments), 6), segments=segments
        )
    except (BridgeError, ValueError, TypeError) as exc:
        _fail(rt, job, StepName.SEGMENTS, f"segments builder failed: {exc}")
        return False
    key = f"jobs/{job.id}/segments.json"
    rt.artifacts.put(key, document.model_dump_json(indent=2).encode())

    def complete(j: JobRecord) -> tuple[Effects, bool]:
        start_step(j, StepName.SEGMENTS, now=time.time())
        j.segments_key = key
        return finish_step(j, StepName.SEGMENTS, now=time.time())

    rt.jobs.update(job.id, complete)
    return True


def read_segments(rt: Runtime, job: JobRecord) -> Segments:
    """The stored ``segments.json`` of a job."""
    with rt.artifacts.open(job.segments_key or "") as handle:
        return Segments.model_validate_json(handle.read())


def _create_images(rt: Runtime, job: JobRecord) -> str:
    if job.segments_key is None or not rt.artifacts.exists(job.segments_key):
        raise AssertionError("segments.json must exist before any image work")  # the gate, checked again
    request = JobCreate.model_validate(job.request)
    segments = read_segments(rt, job)
    body = ImageBatchCreate(
        images=[ImageIn(prompt=s.image_prompt, index=s.index) for s in segments.segments],
        width=request.images.width,
        height=request.images.height,
        model=request.images.model,
        style=request.image_style,
        format=request.images.format,
        video_id=request.video_id,
        metadata={"job_id": job.id},
    )
    batch, created = image_service.create_batch(rt, body, idempotency_key=f"job-{job.id}-img", job_id=job.id)
    if created:
        enqueueing.submit_images(rt, batch.id)
    return batch.id


def _tts(rt: Runtime, job: JobRecord, step: StepRecord) -> bool:
    return _batch_step(rt, job, step, _create_tts)


def _images(rt: Runtime, job: JobRecord, step: StepRecord) -> bool:
    return _batch_step(rt, job, step, _create_images)


def _video(rt: Runtime, job: JobRecord, step: StepRecord) -> bool:
    """Submit the render (once per attempt, idempotent by render id), then follow it to the video file."""
    if step.status is ItemStatus.PENDING:
        rt.jobs.update(job.id, lambda j: start_step(j, StepName.VIDEO, now=time.time()))
        job = rt.jobs.load(job.id) or job
    if job.render_id is None:
        render_id = f"{job.id}-r{job.step(StepName.VIDEO).attempts}"
        due = time.time() + rt.settings.reconcile_after_s
        rt.jobs.update(job.id, lambda j: set_render(j, render_id, due_at=due))
        return _submit_render(rt, job, render_id)
    try:
        status = rt.video.status(job.render_id)
    except ProviderNotFound:
        return _submit_render(rt, job, job.render_id)
    except ProviderError as exc:
        log.warning("video status of job %s failed: %s", job.id, exc)
        return False
    if status.status is RenderState.COMPLETED:
        key = f"jobs/{job.id}/video.mp4"
        buffer = io.BytesIO()
        try:
            rt.video.download(status.video_url or job.render_id, buffer)
        except ProviderError as exc:
            log.warning("video download of job %s failed: %s", job.id, exc)
            return False
        rt.artifacts.put(key, buffer.getvalue())

        def complete(j: JobRecord) -> tuple[Effects, bool]:
            j.video_key = key
            return finish_step(j, StepName.VIDEO, now=time.time())

        rt.jobs.update(job.id, complete)
        return True
    if status.status.terminal:
        _fail(rt, job, StepName.VIDEO, f"render {status.status.value}: {status.error or 'no reason given'}")
    return False


def _submit_render(rt: Runtime, job: JobRecord, render_id: str) -> bool:
    request = JobCreate.model_validate(job.request)
    segments = read_segments(rt, job)
    tts = rt.batches.load(job.step(StepName.TTS).batch_id or "")
    images = rt.batches.load(job.step(StepName.IMAGEGEN).batch_id or "")
    if tts is None or images is None:
        _fail(rt, job, StepName.VIDEO, "the job's audio or images expired")
        return False
    token = sign(rt.settings.secret("webhook_secret"), VIDEO_PURPOSE, [job.id], rt.settings.webhook_token_ttl_s)
    render = RenderRequest(
        render_id=render_id,
        segments=[
            RenderSegment(
                index=s.index,
                start_s=s.start_s,
                end_s=s.end_s,
                text=s.text,
                audio_url=link(rt, tts.item(s.index).artifact or ""),
                image_url=link(rt, images.item(s.index).artifact or ""),
            )
            for s in segments.segments
        ],
        options=RenderOptions(width=request.video.width, height=request.video.height, fps=request.video.fps),
        callback_url=f"{rt.settings.public_url.rstrip('/')}/video/callback?token={token}",
        metadata={"job_id": job.id, "video_id": request.video_id},
    )
    try:
        rt.video.submit(render)
    except ProviderRejected as exc:
        _fail(rt, job, StepName.VIDEO, f"the video service rejected the render: {exc}")
    except ProviderError as exc:
        # Transient: the render id is recorded, and resubmitting it is idempotent; the due index retries.
        log.warning("video submit of job %s failed: %s", job.id, exc)
    return False


def _fail(rt: Runtime, job: JobRecord, name: StepName, reason: str) -> None:
    rt.jobs.update(job.id, lambda j: fail_step(j, name, reason, now=time.time()))


def cancel_provider_work(rt: Runtime, job_id: str) -> None:
    """Cancel what a cancelled job may still have running at the providers (best effort)."""
    job = rt.jobs.load(job_id)
    if job is None:
        return
    for name in (StepName.TTS, StepName.IMAGEGEN):
        batch_id = job.step(name).batch_id
        if batch_id is None:
            continue
        try:
            _, running = update_batch(rt, batch_id, cancel_batch)
        except KeyError:
            continue
        if name is StepName.TTS:
            for provider_id in running:
                try:
                    rt.runpod.cancel(provider_id)
                except ProviderError as exc:
                    log.info("runpod cancel of %s failed: %s", provider_id, exc)
    if job.render_id and job.step(StepName.VIDEO).status is not ItemStatus.COMPLETED:
        try:
            rt.video.cancel(job.render_id)
        except ProviderError as exc:
            log.info("video cancel of %s failed: %s", job.render_id, exc)


STEPS = {StepName.TTS: _tts, StepName.SEGMENTS: _segments, StepName.IMAGEGEN: _images, StepName.VIDEO: _video}
