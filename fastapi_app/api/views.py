"""What the TTS and image routers share: reading a batch (with long-polling) and serving its artifacts."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from fastapi_app.api import downloads
from fastapi_app.api.deps import runtime
from fastapi_app.store.batch import NOUNS, Batch, Kind, batch_not_found, check_id
from fastapi_app.store.changes import wait_for_change
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.errors import NotFound

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or invalid bearer token"},
    404: {"model": ErrorResponse, "description": "No such batch (or it expired)"},
    422: {"model": ErrorResponse, "description": "Invalid input; `field` names the field"},
}
CREATE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorResponse, "description": "Idempotency-Key reused with another body"},
    413: {"model": ErrorResponse, "description": "Body too large"},
}

CANCEL_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorResponse, "description": "The batch belongs to a pipeline job: cancel the job"},
}


def accepted(status: BaseModel, created: bool) -> JSONResponse:
    """202 with the status of a new record; 200 for a replay under the same ``Idempotency-Key``."""
    return JSONResponse(status.model_dump(mode="json"), status_code=202 if created else 200)


async def read_batch(request: Request, kind: Kind, batch_id: str, *, wait: float, since: int | None) -> Batch:
    """The batch, after waiting up to ``wait`` seconds for a change from version ``since``."""
    rt = runtime(request)
    check_id(kind, batch_id)

    batch = await wait_for_change(
        request.app.state.changes, batch_id, lambda: rt.batches.aload(rt.aredis, batch_id), since=since, wait_s=wait
    )
    if batch is None or batch.kind != kind:
        raise batch_not_found(kind, batch_id)
    return batch


def artifact_response(request: Request, kind: Kind, batch_id: str, index: int) -> Response:
    """Stream an item's artifact with its content type (404 until the item is completed)."""
    rt = runtime(request)
    batch = rt.batches.load(check_id(kind, batch_id))
    if batch is None or batch.kind != kind:
        raise batch_not_found(kind, batch_id)
    try:
        item = batch.item(index)
    except KeyError:
        raise NotFound(f"{NOUNS[kind]} {batch_id} has no item {index}") from None
    if item.artifact is None:
        raise NotFound(f"item {index} has no output yet (status {item.status.value})")
    return downloads.serve(rt, item.artifact, item.content_type or "application/octet-stream", what=f"item {index}")
