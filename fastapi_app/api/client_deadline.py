"""Requests that arrive after their sender gave up are refused before anything is created or paid for.

The Flask side sends ``X-Strangler-Give-Up-At`` (Unix time) with each create: the moment it stops waiting for
the answer. An API process that was paused (or swamped) may read such a request much later, when the Flask side
has already fallen back to its legacy code; creating the work then would only pay for a video that exists.
Such a request gets a 504 in the service's error shape and changes nothing. The sender retries under the same
``Idempotency-Key`` with a fresh header, so nothing is lost when it still waits.
"""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = "X-Strangler-Give-Up-At"
_HEADER_KEY = HEADER.lower().encode()


class ClientDeadlineMiddleware:
    """Answer 504 to a request whose ``X-Strangler-Give-Up-At`` has passed, without running it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = dict(scope.get("headers") or []).get(_HEADER_KEY)
            give_up_at = _number(raw)
            if give_up_at is not None and time.time() > give_up_at:
                await _too_late(send, time.time() - give_up_at)
                return
        await self.app(scope, receive, send)


def _number(raw: bytes | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None  # a malformed header is ignored, not a reason to refuse work


async def _too_late(send: Send, late_s: float) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "client_gave_up",
                "message": f"the request arrived {late_s:.1f} s after its sender stopped waiting; nothing was done",
                "field": None,
            }
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 504, "headers": headers})
    await send({"type": "http.response.body", "body": body})
