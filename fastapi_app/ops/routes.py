"""Serving the operator page and its assets from the package (no CDN, nothing fetched from elsewhere).

The HTML shell and its assets are public and hold no data. The page asks for an API token, keeps it in
the tab's ``sessionStorage`` (gone when the tab closes) and sends it as ``Authorization: Bearer`` on every
call to the JSON API, which does the authorisation as for any other client. A strict Content Security
Policy allows only the page's own script, styles and API.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from strangler_bridge.errors import NotFound

router = APIRouter(prefix="/ops", tags=["operator page"], include_in_schema=False)

ASSETS = {"ops.js": "text/javascript; charset=utf-8", "ops.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@cache
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


@router.get("")
def page() -> Response:
    """The page's HTML shell (public: it holds no data; the script asks for a token)."""
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
    return Response(_asset("ops.html"), media_type="text/html; charset=utf-8", headers=headers)


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    """The page's script and stylesheet."""
    if name not in ASSETS:
        raise NotFound(f"no asset {name!r}")
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return Response(_asset(name), media_type=ASSETS[name], headers=headers)
