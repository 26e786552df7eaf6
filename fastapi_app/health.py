"""Liveness and readiness."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fastapi_app.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis answers",
    responses={503: {"description": "Redis is unreachable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when Redis answers PING, 503 otherwise."""
    runtime: Runtime = request.app.state.runtime
    try:
        await runtime.aredis.ping()
    except redis.RedisError as exc:
        return JSONResponse({"status": "unavailable", "redis": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ready", "redis": "ok"})
