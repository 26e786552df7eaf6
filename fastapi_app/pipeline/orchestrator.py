"""Moving a pipeline job through ``tts -> segments -> imagegen -> video``.

:func:`advance` is the job's one driver. It runs as an RQ task whenever something may have changed (the
job was created or retried, one of its batches settled, or the job's deadline in the due index passed) and
does whatever the first unfinished step needs. Each of the TTS, image and video steps is a batch (a video
render is a batch of one) followed the same way. It is safe to run twice: batches are created under
idempotency keys derived from the job id (in a namespace no client's key reaches), and every record change is an
atomic transition.

The ``segments.json`` gate: the image batch is created only from the stored ``segments.json``, which
exists only once every TTS chunk is completed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi_app.api.artifact_links import link
from fastapi_app.batching import cancel as cancelling
from fastapi_app.batching.kinds import BATCH_WORK
from fastapi_app.batching.updates import count_failure
from fastapi_app.images import service as image_service
from fastapi_app.renders import service as render_service
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import GroupStatus
from fastapi_app.store.docstore import Effects
from fastapi_app.store.job import JobRecord, StepRecord, fail_step, finish_step, job_due, start_step
from fastapi_app.tts import service as tts_service
from strangler_bridge import tracing
from strangler_bridge.contracts.common import BatchStatus, ItemStatus
from strangler_bridge.contracts.images import MAX_PROMPT_CHARS, ImageBatchCreate, ImageIn
from strangler_bridge.contracts.jobs import JobCreate, StepName, VideoOptions
from strangler_bridge.contracts.tts import TtsBatchCreate, TtsChunkIn
from strangler_bridge.contracts.video import RenderSegmentIn, VideoRenderCreate
from strangler_bridge.errors import BridgeError, RecordNotFound
from strangler_bridge.keys import DueKind
from strangler_bridge.segments import SegmentInput, Segments, load_builder

log = logging.getLogger(__name__)

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
        attributes = {"strangler.step": step.name.value, "strangler.job_id": job.id, "strangler.video_id": job.video_id}
        with tracing.span(f"step {step.name.value}", attributes=attributes):
            moved_on = STEPS[step.name](rt, job, step)
        if not moved_on:
            break
    # A safety net: if the event that should wake this job is lost, the reconciler brings it back.
    job = rt.jobs.load(job_id)
    if job is not None and not job.status.terminal:
        rt.redis.zadd(rt.keys.due, {job_due(job).format(): time.time() + max(rt.settings.reconcile_after_s, 5.0)})


def _batch_step(rt: Runtime, job: JobRecord, step: StepRecord, create: BatchFactory) -> bool:
    """The TTS, image and video steps: create (or find) the step's batch, then follow it to the end."""
    if step.status is ItemStatus.PENDING:
        try:
            batch_id = step.batch_id or create(rt, job)
        except BridgeError as exc:
            _fail(rt, job, step.name, exc.message)
            return False
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
        BATCH_WORK[DueKind(batch.kind)].submit(rt, batch.id)
    return False


def _create_tts(rt: Runtime, job: JobRecord) -> str:
    request = JobCreate.model_validate(job.request)
    body = TtsBatchCreate(
        chunks=[TtsChunkIn(text=c.text, index=c.index, voice=c.voice) for c in request.chunks],
        voice=request.voice,
        video_id=request.video_id,
        metadata={"job_id": job.id},
        reuse=request.reuse is not False,
    )
    batch, _ = tts_service.create_batch(rt, body, idempotency_key=None, job_id=job.id)
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
        count_failure(rt, "segments", "builder_failed")
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
        raise BridgeError("segments.json must exist before any image work")  # the gate, checked again
    request = JobCreate.model_validate(job.request)
    segments = read_segments(rt, job)
    # A prompt taken from a long text is cut so that, with the style, it fits Runware's limit (JobCreate has
    # already refused a prompt the client wrote that would not).
    room = MAX_PROMPT_CHARS - (len(request.image_style) + 2 if request.image_style else 0)
    body = ImageBatchCreate(
        images=[
            ImageIn(prompt=s.image_prompt[:room], index=s.index, seed=request.images.seed) for s in segments.segments
        ],
        width=request.images.width,
        height=request.images.height,
        model=request.images.model,
        style=request.image_style,
        format=request.images.format,
        video_id=request.video_id,
        metadata={"job_id": job.id},
        reuse=request.reuse,
    )
    batch, _ = image_service.create_batch(rt, body, idempotency_key=None, job_id=job.id)
    return batch.id


def _tts(rt: Runtime, job: JobRecord, step: StepRecord) -> bool:
    return _batch_step(rt, job, step, _create_tts)


def _images(rt: Runtime, job: JobRecord, step: StepRecord) -> bool:
    return _batch_step(rt, job, step, _create_images)


def _create_render(rt: Runtime, job: JobRecord) -> str:
    request = JobCreate.model_validate(job.request)
    segments = read_segments(rt, job)
    tts = rt.batches.load(job.step(StepName.TTS).batch_id or "")
    images = rt.batches.load(job.step(StepName.IMAGEGEN).batch_id or "")
    if tts is None or images is None:
        raise BridgeError("the job's audio or images expired")
    # Links signed from a stored time, not the clock: building the render again (after a crash between creating
    # it and recording it on the job) gives the same body, so the Idempotency-Key finds the first render.
    signed_at = job.step(StepName.IMAGEGEN).finished_at or job.created_at
    body = VideoRenderCreate(
        segments=[
            RenderSegmentIn(
                index=s.index,
                start_s=s.start_s,
                end_s=s.end_s,
                text=s.text,
                audio_url=link(rt, tts.item(s.index).artifact or "", now=signed_at),
                image_url=link(rt, images.item(s.index).artifact or "", now=signed_at),
            )
            for s in segments.segments
        ],
        options=request.video or VideoOptions(),
        video_id=request.video_id,
        metadata={"job_id": job.id},
    )
    batch, _ = render_service.create_render(rt, body, idempotency_key=None, job_id=job.id)
    return batch.id


def _video(rt: Runtime, job: JobRecord, step: StepRecord) -> bool:
    if JobCreate.model_validate(job.request).video is None:
        # No render asked for (an app without a render step): the job ends with its images; no video_url.
        rt.jobs.update(job.id, lambda j: finish_step(j, StepName.VIDEO, now=time.time()))
        return True
    return _batch_step(rt, job, step, _create_render)


def _fail(rt: Runtime, job: JobRecord, name: StepName, reason: str) -> None:
    rt.jobs.update(job.id, lambda j: fail_step(j, name, reason, now=time.time()))


def cancel_provider_work(rt: Runtime, job_id: str) -> None:
    """Cancel what a cancelled job may still have running at the providers (best effort)."""
    job = rt.jobs.load(job_id)
    if job is None:
        return
    for name in (StepName.TTS, StepName.IMAGEGEN, StepName.VIDEO):
        batch_id = job.step(name).batch_id
        if batch_id is None:
            continue
        try:
            batch, running = cancelling.stop_batch(rt, batch_id)
        except RecordNotFound:
            continue
        cancelling.cancel_at_provider(rt, batch.kind, running)


STEPS = {StepName.TTS: _tts, StepName.SEGMENTS: _segments, StepName.IMAGEGEN: _images, StepName.VIDEO: _video}
