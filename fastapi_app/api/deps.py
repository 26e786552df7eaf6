"""What the routes share as FastAPI dependencies: ``Annotated`` aliases, as in FastAPI's full-stack template.

A handler names what it needs (``rt: RuntimeDep``, ``idempotency_key: IdempotencyKey = None``) and FastAPI
supplies it; the parameter's validation and OpenAPI description are written once, here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from fastapi_app.runtime import Runtime


def runtime(request: Request) -> Runtime:
    """The process's runtime."""
    rt: Runtime = request.app.state.runtime
    return rt


async def _runtime(request: Request) -> Runtime:
    # A coroutine, so FastAPI resolves it on the event loop instead of in a pool thread.
    return runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
Wait = Annotated[float, Query(ge=0, le=60, description="Seconds to wait for a change")]
Since = Annotated[int | None, Query(ge=0, description="Version already seen; return once it differs")]
#: The signed token a provider's callback carries in its URL (it names what the callback is about).
CallbackToken = Annotated[str | None, Query(max_length=2000)]
