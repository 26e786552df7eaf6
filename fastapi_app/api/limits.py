"""The service's configured input limits: request bodies (413 before a body is read whole) and batch sizes (422).

The request models carry the fixed limits of the contract; what a deployment configures (``max_chunks``,
``max_text_chars``) is checked here, once for every create.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strangler_bridge.errors import InvalidInput, ProviderRejected, ProviderUnavailable
from strangler_bridge.fetch import check_url
from strangler_bridge.settings import Settings

T = TypeVar("T")


def check_items(
    items: Sequence[T],
    text: Callable[[T], str],
    settings: Settings,
    *,
    field: str,
    part: str,
    per: str,
    max_chars: int | None = None,
    counted: str = "",
) -> None:
    """Refuse more than ``max_chunks`` items, or an item whose ``text`` is over the limit, naming the field.

    ``field`` names the list (``chunks``), ``part`` the text of one item (``text``), ``per`` what the list
    belongs to (``batch``); ``max_chars`` defaults to ``max_text_chars`` and ``counted`` says what the length
    includes (``"with the style, "``).
    """
    if len(items) > settings.max_chunks:
        raise InvalidInput(f"{field}: at most {settings.max_chunks} {field} per {per}", field=field)
    limit = settings.max_text_chars if max_chars is None else max_chars
    for position, item in enumerate(items):
        if len(text(item)) > limit:
            name = f"{field}.{position}.{part}"
            raise InvalidInput(f"{name}: {counted}at most {limit} characters", field=name)


def check_callback(url: str | None, settings: Settings) -> None:
    """Refuse a ``callback_url`` the service could never call: no signing secret is set, or its host is private or
    loopback and not in ``STRANGLER_CALLBACK_ALLOW_HOSTS``. A name that does not resolve now is accepted (each
    attempt checks it again)."""
    if url is None:
        return
    if not settings.callback_secret:
        raise InvalidInput(
            "callback_url: this service sends no completion webhooks (STRANGLER_CALLBACK_SECRET is not set)",
            field="callback_url",
        )
    try:
        check_url(url, settings.callback_allow_hosts)
    except ProviderRejected:
        raise InvalidInput(
            "callback_url: its host is private, loopback or reserved; list it in STRANGLER_CALLBACK_ALLOW_HOSTS "
            "to allow it",
            field="callback_url",
        ) from None
    except ProviderUnavailable:
        pass


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit.

    An ``HTTPException`` so that FastAPI's body parsing re-raises it (instead of turning it into a 400) and
    the service's error handler answers 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodyLimitMiddleware:
    """Reject bodies over ``default`` bytes (``webhook`` bytes on webhook paths) by header or while streaming."""

    def __init__(self, app: ASGIApp, *, default: int, webhook: int, webhook_paths: tuple[str, ...]) -> None:
        self.app = app
        self.default = default
        self.webhook = webhook
        self.webhook_paths = webhook_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.webhook if scope["path"].startswith(self.webhook_paths) else self.default
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _reject(send, limit)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, limit)


async def _reject(send: Send, limit: int) -> None:
    body: dict[str, Any] = {"error": {"code": "payload_too_large", "message": f"request body over {limit} bytes"}}
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
