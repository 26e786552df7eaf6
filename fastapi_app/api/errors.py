"""Errors to HTTP, in one place: every error body is ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from strangler_bridge.errors import BridgeError, StoreUnavailable

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """A JSON error response in the service's one shape."""
    body: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into the one error shape."""

    @app.exception_handler(BridgeError)
    async def _bridge_error(_: Request, exc: BridgeError) -> JSONResponse:
        response = error_response(exc.http_status, exc.code, exc.message, exc.field)
        if isinstance(exc, StoreUnavailable):
            response.headers["Retry-After"] = "1"  # the same 503 as a raw Redis error below
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
        field = ".".join(loc) or None
        message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
        return error_response(422, "invalid_input", message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(redis.RedisError)
    async def _redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable: %s", type(exc).__name__)
        err = StoreUnavailable("the state store (Redis) is unavailable; retry shortly")
        response = error_response(err.http_status, err.code, err.message)
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the service log")
