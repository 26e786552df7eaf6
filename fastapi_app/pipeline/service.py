"""Creating, reading, retrying and cancelling pipeline jobs."""

from __future__ import annotations

import contextlib
import time

from fastapi_app import tasks
from fastapi_app.api import limits
from fastapi_app.api.artifact_links import signed_path
from fastapi_app.batching.updates import update_batch
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch, request_hash
from fastapi_app.store.batch_transitions import cancel_batch, retry_failed
from fastapi_app.store.docstore import Effects
from fastapi_app.store.job import JobRecord, cancel_job, job_due, retry_job
from strangler_bridge.contracts.common import BatchStatus, ItemStatus, Progress, as_time
from strangler_bridge.contracts.jobs import JobCreate, JobFile, JobFiles, JobStatus, StepName, StepStatus
from strangler_bridge.errors import Conflict, NotFound, RecordNotFound
from strangler_bridge.ids import new_id


def create_job(rt: Runtime, body: JobCreate, *, idempotency_key: str | None) -> tuple[JobRecord, bool]:
    """Store a new job (or find the one made under the same idempotency key) and start it if it is new.

    Returns ``(job, created)``.
    """
    limits.check_items(body.chunks, lambda chunk: chunk.text, rt.settings, field="chunks", part="text", per="job")
    limits.check_callback(body.callback_url, rt.settings)
    job = JobRecord(id=new_id("job"), request=body.model_dump(mode="json"), video_id=body.video_id)
    # Due at once in the reconciler's index: if the process dies before the job is queued, it is started.
    effects = Effects(due={job_due(job): time.time() + rt.settings.reconcile_after_s})
    idem = (idempotency_key, request_hash(body)) if idempotency_key else None
    job, created = rt.jobs.create(job, effects, idem=idem, index="job")
    if created:
        tasks.advance_job.enqueue(rt, job.id)
    return job, created


def files(rt: Runtime, job: JobRecord) -> JobFiles:
    """Signed links to the job's files that exist so far, with each chunk's and image's state and attempts."""

    def listed(batch_id: str | None) -> list[JobFile]:
        batch = rt.batches.load(batch_id or "")
        if batch is None:
            return []
        return [
            JobFile(
                index=item.index,
                status=item.status,
                url=signed_path(rt, item.artifact) if item.artifact and item.status is ItemStatus.COMPLETED else None,
                attempts=batch.group(item.group).attempt,
                error=item.error,
            )
            for item in sorted(batch.items, key=lambda i: i.index)
        ]

    render = rt.batches.load(job.step(StepName.VIDEO).batch_id or "")
    video = render.items[0].artifact if render is not None and render.status is BatchStatus.COMPLETED else None
    return JobFiles(
        id=job.id,
        segments=signed_path(rt, job.segments_key) if job.segments_key else None,
        video=signed_path(rt, video) if video else None,
        audio=listed(job.step(StepName.TTS).batch_id),
        images=listed(job.step(StepName.IMAGEGEN).batch_id),
    )


def to_status(job: JobRecord, batches: dict[str, Batch]) -> JobStatus:
    """The public view of a job; ``batches`` are its steps' batches, for per-step progress."""
    steps = []
    for record in job.steps:
        batch = batches.get(record.batch_id or "")
        done = record.status is ItemStatus.COMPLETED
        progress = batch.progress() if batch else Progress(done=int(done), total=1)
        finished = record.finished_at
        steps.append(
            StepStatus(
                name=record.name,
                status=record.status,
                attempts=record.attempts,
                started_at=as_time(record.started_at) if record.started_at else None,
                finished_at=as_time(finished) if finished else None,
                duration_s=round(finished - record.started_at, 3) if finished and record.started_at else None,
                progress=progress,
                batch_id=record.batch_id,
                provider_ids=record.provider_ids,
                cost=record.cost if record.cost is not None else (batch.total_cost if batch else None),
                error=record.error,
                reused=batch.reused if batch else 0,
                cost_saved=batch.cost_saved if batch else None,
            )
        )
    costs = [step.cost for step in steps if step.cost is not None]
    saved = [step.cost_saved for step in steps if step.cost_saved is not None]
    current = job.current()
    rendered = job.step(StepName.VIDEO).batch_id is not None  # a job created with "video": null has no video
    return JobStatus(
        id=job.id,
        status=job.status,
        video_id=job.video_id,
        created_at=as_time(job.created_at),
        updated_at=as_time(job.updated_at),
        current_step=current.name if current and not job.status.terminal else None,
        steps=steps,
        progress=Progress(
            done=sum(s.status is ItemStatus.COMPLETED for s in steps),
            failed=sum(s.status is ItemStatus.FAILED for s in steps),
            total=len(steps),
        ),
        segments_url=f"/jobs/{job.id}/segments.json" if job.segments_key else None,
        video_url=f"/jobs/{job.id}/video" if job.status is BatchStatus.COMPLETED and rendered else None,
        cost_total=round(sum(costs), 6) if costs else None,
        version=job.version,
        error=job.error,
        metadata=JobCreate.model_validate(job.request).metadata,
        callback=job.callback,
        reused=sum(step.reused for step in steps),
        cost_saved=round(sum(saved), 6) if saved else None,
    )


def retry(rt: Runtime, job_id: str) -> JobRecord:
    """Resume a failed or cancelled job from its first unfinished step, reusing everything already made."""
    try:
        job, step = rt.jobs.update(job_id, retry_job)
    except RecordNotFound:
        raise NotFound(f"no job {job_id!r}") from None
    if step is None:
        raise Conflict(f"job {job_id} is {job.status.value}; only failed or cancelled jobs can be retried")
    for name in (StepName.TTS, StepName.IMAGEGEN, StepName.VIDEO):
        batch_id = job.step(name).batch_id
        # An expired batch (RecordNotFound) fails the step again with that reason.
        if batch_id and job.step(name).status is not ItemStatus.COMPLETED:
            with contextlib.suppress(RecordNotFound):
                update_batch(rt, batch_id, lambda b: retry_failed(b, now=time.time()))
    tasks.advance_job.enqueue(rt, job_id)
    return job


def cancel(rt: Runtime, job_id: str) -> JobRecord:
    """Stop new submissions at once; provider work still running is cancelled by a worker."""
    try:
        job, running = rt.jobs.update(job_id, lambda j: cancel_job(j, now=time.time()))
    except RecordNotFound:
        raise NotFound(f"no job {job_id!r}") from None
    if job.status is not BatchStatus.CANCELLED:
        raise Conflict(f"job {job_id} is already {job.status.value}")
    if running is not None and running.batch_id:
        with contextlib.suppress(RecordNotFound):
            update_batch(rt, running.batch_id, cancel_batch)
    tasks.cancel_provider_work.enqueue(rt, job_id)
    return job
