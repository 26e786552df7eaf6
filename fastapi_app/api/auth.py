"""Bearer-token auth for every route but webhooks and health."""

from __future__ import annotations

import hmac

from fastapi import Request

from strangler_bridge.errors import Unauthorized


def require_token(request: Request) -> None:
    """FastAPI dependency: accept any configured token (rotation), compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: send Authorization: Bearer <token>")
    accepted = request.app.state.settings.token_values()
    # Compare against every token so the time taken does not reveal which one (or whether any) matched.
    matches = [hmac.compare_digest(token.encode(), candidate.encode()) for candidate in accepted]
    if not any(matches):
        raise Unauthorized("invalid bearer token")
