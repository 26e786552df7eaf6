"""What the TTS and image routers share: reading a batch (with long-polling) and serving its artifacts."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from fastapi_app.batches import Batch, Kind
from fastapi_app.changes import wait_for_change
from fastapi_app.runtime import Runtime
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.errors import NotFound
from strangler_bridge.ids import is_valid_id

NOUNS = {"tts": "TTS batch", "img": "image batch", "vid": "video render"}

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


def runtime(request: Request) -> Runtime:
    """The process's runtime."""
    rt: Runtime = request.app.state.runtime
    return rt


def check_id(kind: Kind, batch_id: str) -> str:
    """``batch_id`` if it is well formed for ``kind``; 404 otherwise (odd ids never reach Redis or disk)."""
    if not is_valid_id(batch_id, kind):
        raise NotFound(f"no {NOUNS[kind]} {batch_id!r}")
    return batch_id


async def read_batch(request: Request, kind: Kind, batch_id: str, *, wait: float, since: int | None) -> Batch:
    """The batch, after waiting up to ``wait`` seconds for a change from version ``since``."""
    rt = runtime(request)
    check_id(kind, batch_id)

    async def load() -> Batch | None:
        raw = await rt.aredis.get(rt.batches.key(batch_id))
        return None if raw is None else Batch.model_validate_json(raw)

    batch = await wait_for_change(
        request.app.state.changes,
        batch_id,
        load,
        version=lambda b: b.version,
        final=lambda b: b.status.terminal,
        since=since,
        wait_s=wait,
    )
    if batch is None or batch.kind != kind:
        raise NotFound(f"no {NOUNS[kind]} {batch_id!r}")
    return batch


def artifact_response(request: Request, kind: Kind, batch_id: str, index: int) -> Response:
    """Stream an item's artifact with its content type (404 until the item is completed)."""
    rt = runtime(request)
    batch = rt.batches.load(check_id(kind, batch_id))
    if batch is None or batch.kind != kind:
        raise NotFound(f"no {NOUNS[kind]} {batch_id!r}")
    try:
        item = batch.item(index)
    except KeyError:
        raise NotFound(f"{NOUNS[kind]} {batch_id} has no item {index}") from None
    if item.artifact is None:
        raise NotFound(f"item {index} has no output yet (status {item.status.value})")
    media_type = item.content_type or "application/octet-stream"
    path = rt.artifacts.local_path(item.artifact)
    if path is not None and path.is_file():
        return FileResponse(path, media_type=media_type, filename=path.name)
    handle = rt.artifacts.open(item.artifact)
    return StreamingResponse(iter(lambda: handle.read(65536), b""), media_type=media_type)


def as_time(epoch: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch, timezone.utc)
