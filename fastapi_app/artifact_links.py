"""Signed, expiring links to artifacts, for services that fetch our files (the video service).

The link names one artifact and expires; no bearer token is needed, like a presigned URL.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from fastapi_app.batch_views import runtime
from fastapi_app.runtime import Runtime
from fastapi_app.signing import sign, verify
from strangler_bridge.artifacts import check_key
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.errors import NotFound, Unauthorized

PURPOSE = "artifact"
CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "json": "application/json",
    "mp4": "video/mp4",
}

router = APIRouter(tags=["artifacts"])


def link(rt: Runtime, key: str, *, now: float | None = None) -> str:
    """An absolute, signed URL serving ``key`` until the webhook token lifetime (counted from ``now``) runs out.

    The same ``now`` gives the same URL, so a request built from links can be rebuilt identically.
    """
    return rt.settings.public_link(signed_path(rt, key, now=now))


def signed_path(rt: Runtime, key: str, *, now: float | None = None) -> str:
    """The path of :func:`link` (``/artifacts/<token>``), for clients of the API itself (the operator page)."""
    encoded = base64.urlsafe_b64encode(check_key(key).encode()).decode().rstrip("=")
    token = sign(rt.settings.secret("webhook_secret"), PURPOSE, [encoded], rt.settings.webhook_token_ttl_s, now=now)
    return f"/artifacts/{token}"


@router.get(
    "/artifacts/{token}",
    summary="Fetch an artifact through a signed link",
    response_class=Response,
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)
def get_artifact(token: Annotated[str, Path(max_length=2000)], request: Request) -> Response:
    """Serve the artifact a valid, unexpired link names."""
    rt = runtime(request)
    (encoded,) = verify(rt.settings.secret("webhook_secret"), PURPOSE, token)
    try:
        key = check_key(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("malformed artifact link") from None
    if not rt.artifacts.exists(key):
        raise NotFound("artifact not found")
    media_type = CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
    path = rt.artifacts.local_path(key)
    if path is not None:
        return FileResponse(path, media_type=media_type)
    handle = rt.artifacts.open(key)
    return StreamingResponse(iter(lambda: handle.read(65536), b""), media_type=media_type)
