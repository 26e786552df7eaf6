"""The Runware simulator as a FastAPI app: Runware's REST surface (``POST /v1``), the image host
(``GET /image/{imageUUID}.{ext}``) and control routes that are not part of Runware's API (``/_sim/...``).

See ``docs/simulators/runware.md`` for the behaviour and every knob.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from strangler_bridge.providers.runware.models import is_uuid4
from strangler_bridge.simulators.runware import images
from strangler_bridge.simulators.runware.config import RunwareSimConfig
from strangler_bridge.simulators.runware.engine import INJECTED_ERRORS, RunwareSim
from strangler_bridge.simulators.runware.state import TaskRecord
from strangler_bridge.simulators.runware.validation import error_item, validate_inference

BAD_BODY = "The request body must be a JSON array of task objects."
#: Code of a getResponse error for a taskUUID the account never submitted (Runware does not document it; its
#: SDKs list ``taskFailedOrNotFound`` as the not-found code).
NOT_FOUND_CODE = "taskFailedOrNotFound"


def create_app(config: RunwareSimConfig | None = None) -> FastAPI:
    """A new simulator app with its own state; ``app.state.sim`` is the :class:`RunwareSim` behind it."""
    sim = RunwareSim(config or RunwareSimConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    app = FastAPI(
        title="Runware simulator (strangler-bridge)", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.sim = sim
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    _add_runware_routes(app, sim)
    _add_control_routes(app, sim)
    return app


def _add_runware_routes(app: FastAPI, sim: RunwareSim) -> None:
    @app.post("/v1")
    async def v1(request: Request) -> Response:
        tasks = _task_list(await request.body())
        auth_only = tasks is not None and all(task.get("taskType") == "authentication" for task in tasks)
        if auth_only:
            sim.counters.authentications += 1  # a key check (e.g. strangler-bridge doctor), not work
        else:
            sim.counters.requests_received += 1
            sim.counters.first_request_at = sim.counters.first_request_at or time.time()
        if tasks is None:
            return _errors(400, [error_item("validationFailed", BAD_BODY)])
        key = _bearer(request)
        if tasks and tasks[0].get("taskType") == "authentication":
            key = key or tasks[0].get("apiKey")
            tasks = tasks[1:]
        if not isinstance(key, str) or not key:
            return _errors(401, [_auth_error("missingApiKey", "An API key is required.")])
        if sim.config.api_key is not None and key != sim.config.api_key:
            return _errors(401, [_auth_error("invalidApiKey", INJECTED_ERRORS[401][1])])
        # Injected faults are for work: a key check alone (start-up checks, doctor) must not consume them.
        status = None if auth_only else sim.injected_status()
        if status is not None:
            code, message = INJECTED_ERRORS[status]
            return _errors(status, [error_item(code, message)])
        return await _answer(request, sim, tasks)

    @app.get("/image/{name}")
    async def image(name: str, request: Request, direct: bool = False) -> Response:
        image_uuid, _, extension = name.rpartition(".")
        spec = sim.images.get(image_uuid)
        if spec is None or images.FORMATS[spec.output_format][1] != extension:
            return _errors(404, [error_item("notFound", f"No image {name}.")])
        if sim.config.redirect_image_urls and not direct:
            sim.counters.image_redirects += 1
            return RedirectResponse(str(request.url.include_query_params(direct="true")), status_code=302)
        return Response(await sim.draw(spec), media_type=images.FORMATS[spec.output_format][2])


async def _answer(request: Request, sim: RunwareSim, tasks: list[dict[str, Any]]) -> Response:
    """Validate and run the tasks of an authenticated request."""
    data: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []
    failed = 0
    for task in tasks:
        kind = task.get("taskType")
        problem: dict[str, Any] | None = None
        if kind == "imageInference":
            sim.counters.tasks_received += 1
            problem = validate_inference(task, lambda u: sim.known(u) or any(u == t["taskUUID"] for t in accepted))
            if problem is None:
                accepted.append(task)
            else:
                sim.counters.tasks_rejected += 1
        elif kind == "getResponse":
            sim.counters.get_response_calls += 1
            problem = _get_response(sim, task, data, errors)
        elif kind == "ping":
            data.append({"taskType": "ping", "pong": True})
        else:
            problem = error_item(
                "unsupportedTaskType", f"Unsupported taskType {kind!r}.", parameter="taskType", task=task
            )
        if problem is not None:
            errors.append(problem)
            failed += 1
    if tasks and failed == len(tasks):
        return _errors(400, errors)
    if not accepted:
        return _envelope(data, errors)
    if not sim.acquire():
        message = f"Queue capacity exceeded: at most {sim.config.concurrency_cap} requests at once; retry with backoff."
        return _errors(429, [error_item("rateLimitExceeded", message)])
    drop = sim.take_drop()
    if drop == "lose":
        sim.release()
        return _CutConnection()
    base_url = (sim.config.public_url or str(request.base_url)).rstrip("/")
    for record in sim.start_tasks(accepted, base_url):
        await _collect(record, data, errors)
    if drop == "close" or (drop == "hang" and await _hold(request, sim.config.drop_hang_s)):
        return _CutConnection()
    return _envelope(data, errors)


async def _collect(record: TaskRecord, data: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
    if not record.waits_for_answer:
        data.append({"taskType": "imageInference", "taskUUID": record.task_uuid})
        return
    await record.finished.wait()
    data.extend(record.items)
    if record.error is not None:
        errors.append(record.error)


def _get_response(
    sim: RunwareSim, task: dict[str, Any], data: list[dict[str, Any]], errors: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Add a getResponse answer to ``data``/``errors``; returns the error if the taskUUID is bad or unknown."""
    task_uuid = task.get("taskUUID")
    if not is_uuid4(task_uuid):
        return error_item("invalidTaskUUID", "taskUUID must be a UUID v4.", parameter="taskUUID", task=task)
    answer = sim.poll(str(task_uuid))
    if answer is None:
        message = "No task with this taskUUID was found (it never ran, or it expired)."
        return error_item(NOT_FOUND_CODE, message, parameter="taskUUID", task=task, status="error")
    data.extend(answer[0])
    errors.extend(answer[1])
    return None


async def _hold(request: Request, seconds: float) -> bool:
    """Hold an answer until the client gives up (``True``) or ``seconds`` pass (``False``: answer late)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(0.05)
    return False


class _CutConnection(Response):
    """Starts a 200 answer and stops mid-body; the server then closes the connection, so the client cannot know
    the outcome (uvicorn logs "ASGI callable returned without completing response")."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})


def _add_control_routes(app: FastAPI, sim: RunwareSim) -> None:
    @app.get("/_sim/config")
    async def get_config() -> dict[str, Any]:
        return sim.config.model_dump(mode="json")

    @app.patch("/_sim/config")
    async def patch_config(request: Request) -> Response:
        try:
            patch = json.loads(await request.body())
            if not isinstance(patch, dict):
                raise ValueError("the body must be a JSON object of knobs")
            config = sim.configure(patch)
        except ValidationError as exc:
            return JSONResponse({"detail": json.loads(exc.json(include_url=False))}, status_code=422)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return JSONResponse(config.model_dump(mode="json"))

    @app.get("/_sim/counters")
    async def counters() -> dict[str, Any]:
        return sim.counters.snapshot()

    @app.post("/_sim/reset")
    async def reset() -> dict[str, str]:
        sim.reset()
        return {"status": "reset"}


def _task_list(body: bytes) -> list[dict[str, Any]] | None:
    try:
        tasks = json.loads(body)
    except ValueError:
        return None
    if not isinstance(tasks, list) or not tasks or not all(isinstance(task, dict) for task in tasks):
        return None
    return tasks


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _auth_error(code: str, message: str) -> dict[str, Any]:
    return error_item(code, message, parameter="apiKey", taskType="authentication")


def _envelope(data: list[dict[str, Any]], errors: list[dict[str, Any]]) -> JSONResponse:
    body: dict[str, Any] = {"data": data}
    if errors:
        body["errors"] = errors
    return JSONResponse(body)


def _errors(status: int, errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    code = {404: "notFound", 405: "methodNotAllowed"}.get(exc.status_code, "invalidRequest")
    message = f"{request.method} {request.url.path}: {exc.detail}. Runware's API is POST /v1."
    return _errors(exc.status_code, [error_item(code, message)])
