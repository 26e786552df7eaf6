"""Signed, expiring links to artifacts, for services that fetch our files (the video service).

The link names one artifact and expires; no bearer token is needed, like a presigned URL.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from fastapi_app.api import downloads
from fastapi_app.api.deps import RuntimeDep
from fastapi_app.runtime import Runtime
from strangler_bridge.artifacts import check_key
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.errors import InvalidInput, Unauthorized
from strangler_bridge.signing import sign, verify

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
def get_artifact(token: Annotated[str, Path(max_length=2000)], rt: RuntimeDep) -> Response:
    """Serve the artifact a valid, unexpired link names."""
    key = key_of(rt, token)
    return downloads.serve(rt, key, media_type_of(key))


def key_of(rt: Runtime, token: str) -> str:
    """The artifact key a valid, unexpired link token names; :class:`Unauthorized` otherwise."""
    (encoded,) = verify(rt.settings.secret("webhook_secret"), PURPOSE, token)
    try:
        return check_key(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
    except (ValueError, UnicodeDecodeError, InvalidInput):
        raise Unauthorized("malformed artifact link") from None


def fetch_url(rt: Runtime, url: str) -> str:
    """Where a provider should fetch ``url`` from: straight from the store when it is one of our signed links and
    the store presigns (``STRANGLER_ARTIFACTS_DELIVERY=redirect``), so media skips the API; else ``url`` itself.

    The presigned URL lives as long as the link would have (``STRANGLER_WEBHOOK_TOKEN_TTL_S``, at most 7 days).
    """
    prefix = rt.settings.public_link("/artifacts/")
    if not url.startswith(prefix):
        return url
    try:
        key = key_of(rt, url[len(prefix) :])
    except Unauthorized:
        return url  # expired or foreign: the provider gets the link and its answer
    expires_s = rt.settings.webhook_token_ttl_s
    return downloads.presigned(rt, key, expires_s=expires_s, content_type=media_type_of(key)) or url


def media_type_of(key: str) -> str:
    """The content type of an artifact, from its extension."""
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
