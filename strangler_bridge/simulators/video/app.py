"""The video service simulator as an ASGI app: the default contract of :mod:`strangler_bridge.providers.video.client`.

Contract routes (``/renders...``, ``/healthz``) obey the fault knobs; control routes under ``/_sim`` never do:
``GET/PATCH /_sim/config``, ``GET /_sim/counters``, ``GET /_sim/info``, ``POST /_sim/reset``.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strangler_bridge.providers.video.client import RenderRequest, RenderState, RenderStatus
from strangler_bridge.simulators.video.config import VideoSimConfig
from strangler_bridge.simulators.video.state import Render, SimState


class SimError(Exception):
    """An error answered as ``{"error": {"code", "message", "field"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """The simulator's one error shape."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


class FaultMiddleware:
    """Applies downtime, injected failures and answer delay to every route outside ``/_sim``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            await self.app(scope, receive, send)
            return
        sim: SimState = scope["app"].state.sim
        delay = sim.config.response_delay_s

        async def delayed_send(message: Message) -> None:
            # The request is handled first and the answer held back: a client that times out has still
            # had its request served (the "unknown outcome" case of a paid submit).
            if message["type"] == "http.response.start":
                await asyncio.sleep(delay)
            await send(message)

        status = sim.fault_status()
        if status is None:
            await self.app(scope, receive, delayed_send if delay else send)
            return
        kind = "down" if status == 503 and sim.is_down() else "injected"
        await error_response(status, f"simulated_{kind}", f"simulated {kind} failure (HTTP {status})")(
            scope, receive, send
        )


def get_sim(request: Request) -> SimState:
    """The simulator state of this app."""
    sim: SimState = request.app.state.sim
    return sim


Sim = Annotated[SimState, Depends(get_sim)]


def require_token(request: Request, sim: Sim) -> None:
    """401 without a bearer token, 403 with a wrong one (only when the ``token`` knob is set)."""
    token = sim.config.token
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not given:
        raise SimError(401, "unauthorized", "missing Authorization: Bearer <token>")
    if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise SimError(403, "forbidden", "wrong bearer token")


def _render(sim: SimState, render_id: str) -> Render:
    item = sim.renders.get(render_id)
    if item is None:
        raise SimError(404, "not_found", f"no render {render_id!r}")
    return item


def _check(request: RenderRequest, config: VideoSimConfig) -> None:
    if len(request.segments) > config.max_segments:
        raise SimError(422, "invalid_input", f"at most {config.max_segments} segments per render", "segments")
    for n, segment in enumerate(request.segments):
        for name in ("audio_url", "image_url"):
            if not getattr(segment, name).startswith(("http://", "https://")):
                raise SimError(422, "invalid_input", f"{name} must be an http(s) URL", f"segments.{n}.{name}")
    if request.callback_url is not None and not request.callback_url.startswith(("http://", "https://")):
        raise SimError(422, "invalid_input", "callback_url must be an http(s) URL", "callback_url")


def _api_router() -> APIRouter:
    router = APIRouter()
    authed = APIRouter(dependencies=[Depends(require_token)])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @authed.post("/renders", status_code=202, response_model=RenderStatus)
    async def submit(body: RenderRequest, request: Request, response: Response, sim: Sim) -> RenderStatus:
        _check(body, sim.config)
        item, new = sim.submit(body, str(request.base_url))
        if not new:
            response.headers["Idempotent-Replayed"] = "true"
        return item.status

    @authed.get("/renders/{render_id}", response_model=RenderStatus)
    async def status(render_id: str, sim: Sim) -> RenderStatus:
        return _render(sim, render_id).status

    @authed.post("/renders/{render_id}/cancel", response_model=RenderStatus)
    async def cancel(render_id: str, sim: Sim) -> RenderStatus:
        return sim.cancel(_render(sim, render_id))

    @authed.get("/renders/{render_id}/video", response_model=None)
    async def video(render_id: str, request: Request, sim: Sim, direct: bool = False) -> Response:
        item = _render(sim, render_id)
        if item.status.status is not RenderState.COMPLETED or item.output is None:
            raise SimError(409, "not_ready", f"render {render_id!r} is {item.status.status.value}, not completed")
        if sim.config.redirect_downloads and not direct:
            sim.counters.download_redirects += 1
            return RedirectResponse(str(request.url.include_query_params(direct="true")), status_code=302)
        sim.counters.downloads += 1
        if item.status.placeholder:
            media, name = "text/plain; charset=utf-8", f"{render_id}.placeholder.txt"
        else:
            media, name = "video/mp4", f"{render_id}.mp4"
        headers = {"X-Placeholder": str(item.status.placeholder).lower()}
        return FileResponse(item.output, media_type=media, filename=name, headers=headers)

    router.include_router(authed)
    return router


def _control_router() -> APIRouter:
    router = APIRouter(prefix="/_sim")

    @router.get("/config")
    async def get_config(sim: Sim) -> dict[str, Any]:
        return sim.config.model_dump(mode="json")

    @router.patch("/config")
    async def patch_config(sim: Sim, patch: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        try:
            config = sim.update_config(patch)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            raise SimError(422, "invalid_input", f"{field}: {first['msg']}", field) from None
        await sim.gate.poke()
        return config.model_dump(mode="json")

    @router.get("/counters")
    async def counters(sim: Sim) -> dict[str, Any]:
        return sim.counters_dict()

    @router.get("/info")
    async def info(sim: Sim) -> dict[str, Any]:
        encoder = "placeholder" if sim.ffmpeg is None or sim.config.force_placeholder else "ffmpeg"
        return {"encoder": encoder, "ffmpeg": sim.ffmpeg, "renders": len(sim.renders)}

    @router.post("/reset")
    async def reset(sim: Sim) -> dict[str, bool]:
        await sim.reset()
        return {"reset": True}

    return router


def _install_error_handlers(app: FastAPI) -> None:
    async def sim_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SimError)
        return error_response(exc.status, exc.code, exc.message, exc.field)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(part) for part in first["loc"] if part != "body") or None
        return error_response(422, "invalid_input", f"{field or 'body'}: {first['msg']}", field)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, "http_error", str(exc.detail))

    async def crash(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal_error", "the simulator hit an unexpected error")

    app.add_exception_handler(SimError, sim_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crash)


def create_app(config: VideoSimConfig | None = None) -> FastAPI:
    """A new simulator app; its state, HTTP client and work directory live in the app's lifespan."""
    start = config or VideoSimConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        work_dir = start.work_dir or Path(tempfile.mkdtemp(prefix="strangler-video-sim-"))
        work_dir.mkdir(parents=True, exist_ok=True)
        async with httpx.AsyncClient(timeout=start.fetch_timeout_s, follow_redirects=True) as http:
            app.state.sim = SimState(start, work_dir, http)
            try:
                yield
            finally:
                await app.state.sim.close()
                if start.work_dir is None:
                    shutil.rmtree(work_dir, ignore_errors=True)

    app = FastAPI(
        title="strangler-bridge video service simulator",
        description="The default video render contract (see docs/simulators/video.md), with fault knobs.",
        lifespan=lifespan,
    )
    app.add_middleware(FaultMiddleware)
    _install_error_handlers(app)
    app.include_router(_api_router())
    app.include_router(_control_router())
    return app
