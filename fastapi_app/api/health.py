"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from fastapi_app.api.auth import require_token
from fastapi_app.runtime import Runtime
from strangler_bridge.doctor import run_checks

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis answers (deep=1: and the configuration checks of `strangler-bridge doctor` pass)",
    responses={
        401: {"description": "deep=1 without a valid API token"},
        503: {"description": "Redis is unreachable, or (deep=1) a check found a problem"},
    },
)
async def readyz(request: Request, deep: Annotated[bool, Query()] = False) -> JSONResponse:
    """200 when Redis answers PING, 503 otherwise. ``deep=1`` (API token required, as it calls every provider)
    adds ``checks``, one finding per line of ``strangler-bridge doctor``, and answers 503 if any is a problem."""
    runtime: Runtime = request.app.state.runtime
    if deep:
        require_token(request)
    try:
        await runtime.aredis.ping()
    except redis.RedisError as exc:
        return JSONResponse({"status": "unavailable", "redis": type(exc).__name__}, status_code=503)
    if not deep:
        return JSONResponse({"status": "ready", "redis": "ok"})
    findings = await run_in_threadpool(run_checks, runtime.settings)
    problems = [finding for finding in findings if finding.problem]
    body = {
        "status": "misconfigured" if problems else "ready",
        "redis": "ok",
        "problems": len(problems),
        "checks": [finding.to_dict() for finding in findings],
    }
    return JSONResponse(body, status_code=503 if problems else 200)
