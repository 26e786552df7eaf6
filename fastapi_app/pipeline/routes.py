"""Phase 3 HTTP routes: the whole pipeline behind ``POST /jobs``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from fastapi_app.api import downloads
from fastapi_app.api.auth import require_token
from fastapi_app.api.deps import IdempotencyKey, RuntimeDep, Since, Wait
from fastapi_app.api.views import CREATE_ERRORS, ERRORS, accepted
from fastapi_app.pipeline import service
from fastapi_app.runtime import Runtime
from fastapi_app.store.changes import wait_for_change
from fastapi_app.store.job import JobRecord
from strangler_bridge.contracts.common import BatchStatus, ErrorResponse
from strangler_bridge.contracts.jobs import JobCreate, JobFiles, JobStatus, StepName
from strangler_bridge.errors import NotFound
from strangler_bridge.ids import is_valid_id

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_token)])
CONFLICT: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorResponse, "description": "The job is not in a state that allows this"},
}


def _check(job_id: str) -> str:
    if not is_valid_id(job_id, "job"):
        raise NotFound(f"no job {job_id!r}")
    return job_id


async def _status(rt: Runtime, job: JobRecord) -> JobStatus:
    batches = await rt.batches.aload_many(rt.aredis, [step.batch_id for step in job.steps if step.batch_id])
    return service.to_status(job, batches)


def _load(rt: Runtime, job_id: str) -> JobRecord:
    job = rt.jobs.load(_check(job_id))
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


@router.post("", status_code=202, response_model=JobStatus, summary="Create a pipeline job", responses=CREATE_ERRORS)
async def create_job(body: JobCreate, rt: RuntimeDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Store the job and start it: TTS, then segments.json, then images, then the video render.

    Repeating the request with the same ``Idempotency-Key`` and body returns the same job (200).
    """
    job, created = await run_in_threadpool(service.create_job, rt, body, idempotency_key=idempotency_key)
    return accepted(await _status(rt, job), created)


@router.get("/{job_id}", response_model=JobStatus, summary="Read a job, optionally long-polling", responses=ERRORS)
async def get_job(
    job_id: str,
    request: Request,
    rt: RuntimeDep,
    wait: Wait = 0,
    since: Since = None,
) -> JobStatus:
    """The job with per-step status and progress; with ``wait``, as soon as the job changes (or finishes).

    Progress inside a step (chunks or images done) does not change the job's version; poll with a short
    ``wait`` to follow it.
    """
    _check(job_id)

    job = await wait_for_change(
        request.app.state.changes, job_id, lambda: rt.jobs.aload(rt.aredis, job_id), since=since, wait_s=wait
    )
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return await _status(rt, job)


@router.post("/{job_id}/retry", response_model=JobStatus, summary="Resume a failed job", responses=CONFLICT)
async def retry_job(job_id: str, rt: RuntimeDep) -> JobStatus:
    """Resume from the first unfinished step, reusing every chunk, image and file already produced."""
    job = await run_in_threadpool(service.retry, rt, _check(job_id))
    return await _status(rt, job)


@router.post("/{job_id}/cancel", response_model=JobStatus, summary="Cancel a job", responses=CONFLICT)
async def cancel_job(job_id: str, rt: RuntimeDep) -> JobStatus:
    """Stop new submissions now and cancel provider work where the provider allows it."""
    job = await run_in_threadpool(service.cancel, rt, _check(job_id))
    return await _status(rt, job)


def _artifact(rt: Runtime, key: str | None, what: str, media_type: str) -> Response:
    if key is None:
        raise NotFound(f"{what} is not ready")
    return downloads.serve(rt, key, media_type, what=what)


@router.get("/{job_id}/files", response_model=JobFiles, summary="Links to the job's files", responses=ERRORS)
def get_files(job_id: str, rt: RuntimeDep) -> JobFiles:
    """Signed, expiring links (no token needed) to the audio, images, segments.json and video made so far."""
    return service.files(rt, _load(rt, job_id))


@router.get(
    "/{job_id}/segments.json",
    summary="The job's segments.json (the gate before images)",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"application/json": {}}}},
)
def get_segments(job_id: str, rt: RuntimeDep) -> Response:
    """Segments with start/end times from the TTS durations and one image prompt each."""
    return _artifact(rt, _load(rt, job_id).segments_key, "segments.json", "application/json")


@router.get(
    "/{job_id}/video",
    summary="The rendered video",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"video/mp4": {}}}},
)
def get_video(job_id: str, rt: RuntimeDep) -> Response:
    """The video file, once the job is completed."""
    job = _load(rt, job_id)
    render = rt.batches.load(job.step(StepName.VIDEO).batch_id or "")
    key = render.items[0].artifact if render is not None and job.status is BatchStatus.COMPLETED else None
    return _artifact(rt, key, "the video", "video/mp4")
