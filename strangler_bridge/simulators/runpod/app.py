"""The RunPod simulator as an ASGI app: RunPod's routes under ``/v2/{endpoint_id}/...`` plus control routes
under ``/_sim/...`` (not part of RunPod's API) to change knobs, read counters and reset.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from strangler_bridge.simulators.runpod.config import Operation, RunPodSimConfig
from strangler_bridge.simulators.runpod.engine import RunPodEngine
from strangler_bridge.simulators.runpod.jobs import SimError

API = "/v2/{endpoint_id}"


def create_app(config: RunPodSimConfig | None = None) -> FastAPI:
    """A fresh simulator; its engine is ``app.state.simulator``. Raises ``ValueError`` for a bad handler."""
    engine = RunPodEngine(config or RunPodSimConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="RunPod serverless simulator", lifespan=lifespan)
    app.state.simulator = engine
    app.add_exception_handler(SimError, _sim_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(_api(engine))
    app.include_router(_control(engine))
    return app


async def _sim_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SimError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"internal simulator error: {type(exc).__name__}"}, status_code=500)


def _api(engine: RunPodEngine) -> APIRouter:
    router = APIRouter()

    def admit(operation: Operation, endpoint_id: str, request: Request) -> None:
        engine.admit(operation, endpoint_id, request.headers.get("authorization"))

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @router.post(API + "/run")
    async def run(endpoint_id: str, request: Request) -> dict[str, Any]:
        admit("run", endpoint_id, request)
        body = await _json_body(request, engine.config.max_run_bytes, "/run")
        job = engine.submit(body, sync=False, base_url=base_url(request), endpoint_id=endpoint_id)
        if engine.config.run_response_delay_s:
            # The job exists and may finish (and fire its webhook) before the caller learns its id.
            await asyncio.sleep(engine.config.run_response_delay_s)
        return {"id": job.id, "status": "IN_QUEUE"}

    @router.post(API + "/runsync")
    async def runsync(endpoint_id: str, request: Request) -> dict[str, Any]:
        admit("runsync", endpoint_id, request)
        wait_ms = _wait_ms(request, engine.config)
        body = await _json_body(request, engine.config.max_runsync_bytes, "/runsync")
        job = engine.submit(body, sync=True, base_url=base_url(request), endpoint_id=endpoint_id)
        await engine.wait(job, wait_ms / 1000)
        return job.status_object()

    # One route per method, each with its own operation id, so the OpenAPI document has no duplicates.
    @router.get(API + "/status/{job_id}", operation_id="status")
    @router.post(API + "/status/{job_id}", operation_id="status_post")
    async def status(endpoint_id: str, job_id: str, request: Request) -> dict[str, Any]:
        admit("status", endpoint_id, request)  # ?ttl= is accepted and ignored
        return engine.get(job_id).status_object()

    @router.get(API + "/status-sync/{job_id}", operation_id="status_sync")
    @router.post(API + "/status-sync/{job_id}", operation_id="status_sync_post")
    async def status_sync(endpoint_id: str, job_id: str, request: Request) -> dict[str, Any]:
        admit("status-sync", endpoint_id, request)
        job = engine.get(job_id)
        await engine.wait(job, _wait_ms(request, engine.config) / 1000)
        return job.status_object()

    @router.post(API + "/cancel/{job_id}")
    async def cancel(endpoint_id: str, job_id: str, request: Request) -> dict[str, Any]:
        admit("cancel", endpoint_id, request)
        return engine.cancel(job_id).status_object()

    @router.post(API + "/retry/{job_id}")
    async def retry(endpoint_id: str, job_id: str, request: Request) -> dict[str, Any]:
        admit("retry", endpoint_id, request)
        job = engine.retry(job_id)
        return {"id": job.id, "status": job.status.value}

    @router.post(API + "/purge-queue")
    async def purge_queue(endpoint_id: str, request: Request) -> dict[str, Any]:
        admit("purge-queue", endpoint_id, request)
        return {"removed": engine.purge(), "status": "completed"}

    @router.get(API + "/health")
    async def health(endpoint_id: str, request: Request) -> dict[str, Any]:
        admit("health", endpoint_id, request)
        return engine.health()

    @router.get(API + "/audio/{name}.wav")
    async def audio(endpoint_id: str, name: str) -> Response:
        # Like a presigned URL: no Authorization header needed.
        data = engine.audio.get(name)
        if data is None:
            raise SimError(404, f"audio {name}.wav not found")
        return Response(data, media_type="audio/wav")

    return router


def _control(engine: RunPodEngine) -> APIRouter:
    router = APIRouter(prefix="/_sim", tags=["simulator control (not RunPod's API)"])

    @router.get("/config")
    async def get_config() -> Response:
        return JSONResponse(engine.config.model_dump(mode="json"))

    @router.patch("/config")
    async def patch_config(request: Request) -> Response:
        patch = await _json_body(request, 1_000_000, "/_sim/config")
        if not isinstance(patch, dict):
            raise SimError(422, "expected a JSON object of knobs")
        return JSONResponse(engine.configure(patch).model_dump(mode="json"))

    @router.get("/counters")
    async def counters() -> dict[str, Any]:
        return {**engine.counters.snapshot(), **engine.live()}

    @router.post("/reset")
    async def reset(config: bool = False) -> dict[str, Any]:
        engine.reset(restore_config=config)
        return {"reset": True, "config_restored": config}

    @router.post("/webhooks/release")
    async def release_webhooks() -> dict[str, Any]:
        return {"released": engine.webhooks.release()}

    return router


async def _json_body(request: Request, limit: int, path: str) -> Any:
    """The request's JSON body; 413 over ``limit`` bytes, 400 if empty or not JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise SimError(413, f"request body of {declared} bytes exceeds the {limit} byte limit of {path}")
    body = await request.body()
    if len(body) > limit:
        raise SimError(413, f"request body of {len(body)} bytes exceeds the {limit} byte limit of {path}")
    if not body.strip():
        raise SimError(400, "request body is empty; expected a JSON object")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise SimError(400, f"request body is not valid JSON: {exc}") from None


def _wait_ms(request: Request, config: RunPodSimConfig) -> int:
    """``?wait=`` in ms, clamped to RunPod's range; the default wait when absent."""
    raw = request.query_params.get("wait")
    if raw is None:
        return config.runsync_wait_ms
    try:
        wait = int(raw)
    except ValueError:
        raise SimError(400, f"wait must be an integer number of milliseconds, got {raw!r}") from None
    return min(max(wait, config.runsync_wait_min_ms), config.runsync_wait_max_ms)
