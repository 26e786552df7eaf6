"""Signed tokens for URLs that providers call back or fetch (webhooks, artifact links).

A token names what it is for (``purpose`` and the ids) and when it expires, and carries an HMAC-SHA256 of
both under ``STRANGLER_WEBHOOK_SECRET``. The URL itself identifies the work item, so a payload's own ids are
never trusted alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from strangler_bridge.errors import Unauthorized

_SEP = "."


def sign(secret: str, purpose: str, parts: list[str], ttl_s: int, *, now: float | None = None) -> str:
    """A URL-safe token for ``purpose`` and ``parts`` valid for ``ttl_s`` seconds."""
    expires = int((now if now is not None else time.time()) + ttl_s)
    payload = _SEP.join([purpose, *parts, str(expires)])
    return _b64(payload.encode()) + _SEP + _mac(secret, payload)


def verify(secret: str, purpose: str, token: str | None, *, now: float | None = None) -> list[str]:
    """The ``parts`` a valid, unexpired token for ``purpose`` was signed with; :class:`Unauthorized` otherwise."""
    if not token or _SEP not in token or len(token) > 2000:
        raise Unauthorized("missing or malformed token")
    encoded, mac = token.rsplit(_SEP, 1)
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("malformed token") from None
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise Unauthorized("invalid token signature")
    fields = payload.split(_SEP)
    if len(fields) < 2 or fields[0] != purpose:
        raise Unauthorized("token is not valid for this route")
    if not fields[-1].isdigit() or int(fields[-1]) < (now if now is not None else time.time()):
        raise Unauthorized("token expired")
    return fields[1:-1]


def _mac(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return _b64(digest)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
