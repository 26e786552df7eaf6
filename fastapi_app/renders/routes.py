"""The video step's HTTP routes: render a video from segments on the Express service, driven by the service."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from fastapi_app import tasks
from fastapi_app.api.auth import require_token
from fastapi_app.api.deps import CallbackToken, IdempotencyKey, RuntimeDep, Since, Wait
from fastapi_app.api.views import (
    CANCEL_ERRORS,
    CREATE_ERRORS,
    ERRORS,
    accepted,
    artifact_response,
    read_batch,
)
from fastapi_app.batching import cancel as cancelling
from fastapi_app.renders import service
from fastapi_app.renders.video_work import PURPOSE
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.contracts.video import VideoRenderCreate, VideoRenderStatus
from strangler_bridge.keys import DueKind, DueMember
from strangler_bridge.signing import verify

router = APIRouter(prefix="/video/render", tags=["video"], dependencies=[Depends(require_token)])
callbacks = APIRouter(tags=["video"])


@router.post("", status_code=202, response_model=VideoRenderStatus, summary="Render a video", responses=CREATE_ERRORS)
def create_render(body: VideoRenderCreate, rt: RuntimeDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Store the render and hand it to the video service; answers at once with its status."""
    batch, created = service.create_render(rt, body, idempotency_key=idempotency_key)
    return accepted(service.to_status(batch), created)


@router.get("/{render_id}", response_model=VideoRenderStatus, summary="Read a render (long-poll)", responses=ERRORS)
async def get_render(
    render_id: str,
    request: Request,
    wait: Wait = 0,
    since: Since = None,
) -> VideoRenderStatus:
    """The render's status; with ``wait`` the answer comes as soon as it changes (or is finished)."""
    return service.to_status(await read_batch(request, "vid", render_id, wait=wait, since=since))


@router.post(
    "/{render_id}/cancel", response_model=VideoRenderStatus, summary="Cancel a render", responses=CANCEL_ERRORS
)
def cancel(render_id: str, rt: RuntimeDep) -> VideoRenderStatus:
    """Stop the render, at the video service too; idempotent (a finished render is answered as is)."""
    return service.to_status(cancelling.cancel_requested(rt, "vid", render_id))


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
async def callback(rt: RuntimeDep, token: CallbackToken = None) -> dict[str, str]:
    """Authenticated by the signed token naming the render; a worker asks the video service for the result."""
    (render_id,) = verify(rt.settings.secret("webhook_secret"), PURPOSE, token)
    await run_in_threadpool(tasks.reconcile.enqueue, rt, DueMember(DueKind.VIDEO, render_id).format())
    return {"status": "queued"}
