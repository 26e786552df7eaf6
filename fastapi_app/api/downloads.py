"""Answering a download of an artifact: a redirect to the store, a file, or a stream through the API.

With a store that presigns (S3) and ``STRANGLER_ARTIFACTS_DELIVERY=redirect`` the answer is a 307 to a short-lived
presigned URL, so media never flows through the API; with ``proxy``, or a local directory, the API sends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from fastapi_app.runtime import Runtime
from strangler_bridge.errors import NotFound

#: Lifetime of the presigned URL a download is redirected to: it is followed at once.
REDIRECT_LINK_S = 900
_BLOCK = 1 << 16


def presigned(rt: Runtime, key: str, *, expires_s: int, content_type: str | None = None) -> str | None:
    """A presigned URL of ``key`` when the store makes them and delivery is by redirect, else None."""
    if rt.settings.artifacts_delivery != "redirect":
        return None
    return rt.artifacts.presigned_url(key, expires_s=expires_s, content_type=content_type)


def serve(rt: Runtime, key: str, media_type: str, *, what: str = "artifact") -> Response:
    """The response for a download of ``key``; :class:`NotFound` (naming ``what``) if it is not stored.

    A redirect is answered without asking the store whether the object exists (the record says it does): a
    download then costs the API no call to the store at all.
    """
    filename = key.rsplit("/", 1)[-1]
    url = presigned(rt, key, expires_s=REDIRECT_LINK_S, content_type=media_type)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    path = rt.artifacts.local_path(key)
    if path is not None:
        if not path.is_file():
            raise NotFound(f"{what} is not ready")
        return FileResponse(path, media_type=media_type, filename=filename)
    try:
        handle = rt.artifacts.open(key)
    except NotFound:
        raise NotFound(f"{what} is not ready") from None
    return StreamingResponse(
        _blocks(handle),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _blocks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        yield from iter(lambda: handle.read(_BLOCK), b"")
