"""Phase 2 HTTP routes: create, read and download image batches."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from fastapi_app.api.auth import require_token
from fastapi_app.api.deps import IdempotencyKey, RuntimeDep, Since, Wait
from fastapi_app.api.views import (
    CANCEL_ERRORS,
    CREATE_ERRORS,
    ERRORS,
    accepted,
    artifact_response,
    read_batch,
)
from fastapi_app.batching import cancel as cancelling
from fastapi_app.images import service
from strangler_bridge.contracts.images import ImageBatchCreate, ImageBatchStatus

router = APIRouter(prefix="/imagegen", tags=["imagegen"], dependencies=[Depends(require_token)])


@router.post(
    "/batch", status_code=202, response_model=ImageBatchStatus, summary="Create an image batch", responses=CREATE_ERRORS
)
def create_batch(body: ImageBatchCreate, rt: RuntimeDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Store the batch and queue its images for Runware; answers at once with the batch status.

    Repeating the request with the same ``Idempotency-Key`` and body returns the same batch (200).
    """
    batch, created = service.create_batch(rt, body, idempotency_key=idempotency_key)
    return accepted(service.to_status(batch), created)


@router.get(
    "/batch/{batch_id}",
    response_model=ImageBatchStatus,
    summary="Read an image batch, optionally long-polling for a change",
    responses=ERRORS,
)
async def get_batch(
    batch_id: str,
    request: Request,
    wait: Wait = 0,
    since: Since = None,
) -> ImageBatchStatus:
    """The batch's status; with ``wait`` the answer comes as soon as the batch changes (or is finished)."""
    return service.to_status(await read_batch(request, "img", batch_id, wait=wait, since=since))


@router.get(
    "/batch/{batch_id}/images/{index}",
    summary="Download one image",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/png": {}}, "description": "The image bytes"}},
)
def get_image(batch_id: str, index: int, request: Request) -> Response:
    """Stream the image with its content type (404 until it is completed)."""
    return artifact_response(request, "img", batch_id, index)


@router.post(
    "/batch/{batch_id}/cancel",
    response_model=ImageBatchStatus,
    summary="Cancel an image batch",
    responses=CANCEL_ERRORS,
)
def cancel(batch_id: str, rt: RuntimeDep) -> ImageBatchStatus:
    """Stop submitting its images; idempotent (a finished batch is answered as is).

    Runware cannot cancel a request in flight: such an image finishes and is kept by its taskUUID for reuse.
    """
    return service.to_status(cancelling.cancel_requested(rt, "img", batch_id))
