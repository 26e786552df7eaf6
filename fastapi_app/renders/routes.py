"""The video step's HTTP routes: render a video from segments on the Express service, driven by the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from fastapi_app import cancelling, enqueueing
from fastapi_app.auth import require_token
from fastapi_app.batch_views import (
    CANCEL_ERRORS,
    CREATE_ERRORS,
    ERRORS,
    accepted,
    artifact_response,
    read_batch,
    runtime,
)
from fastapi_app.batches import due_member
from fastapi_app.renders import service
from fastapi_app.renders.video_work import PURPOSE
from fastapi_app.signing import verify
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.contracts.video import VideoRenderCreate, VideoRenderStatus

router = APIRouter(prefix="/video/render", tags=["video"], dependencies=[Depends(require_token)])
callbacks = APIRouter(tags=["video"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


@router.post("", status_code=202, response_model=VideoRenderStatus, summary="Render a video", responses=CREATE_ERRORS)
def create_render(body: VideoRenderCreate, request: Request, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Store the render and hand it to the video service; answers at once with its status."""
    rt = runtime(request)
    batch, created = service.create_render(rt, body, idempotency_key=idempotency_key)
    # The same create again for a batch its client cancelled on giving up: the work is wanted after all.
    batch, resumed = (batch, False) if created else cancelling.resume_if_cancelled_by_client(rt, batch)
    if created or resumed:
        enqueueing.submit_render(rt, batch.id)
    return accepted(service.to_status(batch), created)


@router.get("/{render_id}", response_model=VideoRenderStatus, summary="Read a render (long-poll)", responses=ERRORS)
async def get_render(
    render_id: str,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for a change")] = 0,
    since: Annotated[int | None, Query(ge=0, description="Version already seen; return once it differs")] = None,
) -> VideoRenderStatus:
    """The render's status; with ``wait`` the answer comes as soon as it changes (or is finished)."""
    return service.to_status(await read_batch(request, "vid", render_id, wait=wait, since=since))


@router.post(
    "/{render_id}/cancel", response_model=VideoRenderStatus, summary="Cancel a render", responses=CANCEL_ERRORS
)
def cancel(render_id: str, request: Request) -> VideoRenderStatus:
    """Stop the render, at the video service too; idempotent (a finished render is answered as is)."""
    return service.to_status(cancelling.cancel_requested(runtime(request), "vid", render_id))


@router.get(
    "/{render_id}/video",
    summary="Download the rendered video",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"video/mp4": {}}}},
)
def get_video(render_id: str, request: Request) -> Response:
    """The video file, once the render is completed."""
    return artifact_response(request, "vid", render_id, 0)


@callbacks.post(
    "/video/render/callback",
    summary="Video service callback receiver",
    responses={401: {"model": ErrorResponse, "description": "Missing, forged or expired token"}},
)
async def callback(request: Request, token: Annotated[str | None, Query(max_length=2000)] = None) -> dict[str, str]:
    """Authenticated by the signed token naming the render; a worker asks the video service for the result."""
    rt = runtime(request)
    (render_id,) = verify(rt.settings.secret("webhook_secret"), PURPOSE, token)
    await run_in_threadpool(enqueueing.reconcile, rt, due_member("vid", render_id, 0))
    return {"status": "queued"}
