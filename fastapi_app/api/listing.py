"""Recent jobs and batches, newest first, for operators and tools."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from fastapi_app.api.auth import require_token
from fastapi_app.api.deps import RuntimeDep
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch
from fastapi_app.store.job import JobRecord
from strangler_bridge.contracts.common import ErrorResponse, ItemStatus, Progress, as_time
from strangler_bridge.contracts.listing import RecentItem, RecentList

router = APIRouter(tags=["listing"], dependencies=[Depends(require_token)])
Limit = Annotated[int, Query(ge=1, le=200)]


def job_item(job: JobRecord) -> RecentItem:
    """A job as a listing line (progress counts steps)."""
    done = sum(step.status is ItemStatus.COMPLETED for step in job.steps)
    failed = sum(step.status is ItemStatus.FAILED for step in job.steps)
    return RecentItem(
        id=job.id,
        kind="job",
        status=job.status,
        video_id=job.video_id,
        created_at=as_time(job.created_at),
        updated_at=as_time(job.updated_at),
        progress=Progress(done=done, failed=failed, total=len(job.steps)),
        error=job.error,
        callback=job.callback,
    )


def batch_item(batch: Batch) -> RecentItem:
    """A batch as a listing line."""
    return RecentItem(
        id=batch.id,
        kind=batch.kind,
        status=batch.status,
        video_id=batch.video_id,
        created_at=as_time(batch.created_at),
        updated_at=as_time(batch.updated_at),
        progress=batch.progress(),
        error=batch.error,
        reused=batch.reused,
        cost_saved=batch.cost_saved,
        callback=batch.callback,
    )


def recent_jobs(rt: Runtime, limit: int, video_id: str | None = None) -> list[RecentItem]:
    """The newest jobs (optionally of one video)."""
    jobs = rt.jobs.recent("job", limit if video_id is None else 1000)
    return [job_item(j) for j in jobs if video_id is None or j.video_id == video_id][:limit]


def recent_batches(rt: Runtime, kinds: list[str], limit: int) -> list[RecentItem]:
    """The newest batches of the given kinds, merged newest first."""
    batches = [b for kind in kinds for b in rt.batches.recent(kind, limit)]
    batches.sort(key=lambda b: b.created_at, reverse=True)
    return [batch_item(b) for b in batches[:limit]]


@router.get("/jobs", response_model=RecentList, summary="Recent jobs", responses={401: {"model": ErrorResponse}})
async def list_jobs(
    rt: RuntimeDep, limit: Limit = 50, video_id: Annotated[str | None, Query(max_length=200)] = None
) -> RecentList:
    """The newest jobs first; ``video_id`` keeps only that video's jobs."""
    return RecentList(items=await run_in_threadpool(recent_jobs, rt, limit, video_id))


@router.get("/batches", response_model=RecentList, summary="Recent batches", responses={401: {"model": ErrorResponse}})
async def list_batches(
    rt: RuntimeDep, limit: Limit = 50, kind: Literal["tts", "img", "vid"] | None = None
) -> RecentList:
    """The newest TTS batches, image batches and renders first (or one kind)."""
    kinds: list[str] = [kind] if kind else ["tts", "img", "vid"]
    return RecentList(items=await run_in_threadpool(recent_batches, rt, kinds, limit))
