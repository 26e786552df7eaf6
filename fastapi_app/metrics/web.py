"""``GET /metrics`` in Prometheus' text format, and the middleware counting requests and webhook deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi_app.metrics.census import JobCensus, gauges
from fastapi_app.metrics.families import HTTP_DURATION, HTTP_REQUESTS, WEBHOOKS
from fastapi_app.metrics.store import MetricBuffer, stored_families
from fastapi_app.runtime import Runtime
from strangler_bridge.keys import Keys

log = logging.getLogger(__name__)

#: Webhook routes and the provider that calls each.
WEBHOOK_SOURCES = {"/tts/callback": "runpod", "/video/render/callback": "video"}
#: How often the API process moves its buffered counts to Redis.
FLUSH_INTERVAL_S = 1.0
FINAL_FLUSH_S = 5.0
UNMATCHED = "<unmatched>"

router = APIRouter(tags=["health"])


class _Snapshot(Collector):
    """Metric families gathered before rendering (the gathering does I/O; rendering must not)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        """The gathered families."""
        return iter(self.families)


def collect(rt: Runtime, census: JobCensus) -> list[Metric]:
    """Every family: counters and histograms stored in Redis, then the scrape-time gauges (blocking I/O)."""
    return [*gauges(rt, census), *stored_families(rt.redis, rt.keys)]


@router.get(
    "/metrics",
    summary="Prometheus metrics of the whole deployment (API and workers)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 503: {"description": "Redis is unreachable"}},
)
async def metrics(request: Request) -> Response:
    """Counters and histograms from every process (kept in Redis), and gauges computed from Redis now.

    Unauthenticated like the health routes: it shows counts by route template, phase and state, never ids
    or secrets. Restrict it at the proxy if that is still too much (see docs/OPERATIONS.md).
    """
    rt: Runtime = request.app.state.runtime
    buffer: MetricBuffer = request.app.state.metrics_buffer
    await buffer.flush(rt.aredis)
    families = await run_in_threadpool(collect, rt, request.app.state.job_census)
    return Response(generate_latest(_Snapshot(families)), media_type=CONTENT_TYPE_LATEST)


class HttpMetricsMiddleware:
    """Counts every response by method, route template and status, and webhook deliveries by outcome.

    Counted when the response *starts*, so a client that has its answer finds it counted by its next scrape.
    """

    def __init__(self, app: ASGIApp, *, buffer: MetricBuffer) -> None:
        self.app = app
        self.buffer = buffer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        counted = False

        async def counting_send(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                self._count(scope, int(message["status"]), time.monotonic() - started)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except BaseException:
            if not counted:
                self._count(scope, 500, time.monotonic() - started)
            raise

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or UNMATCHED
        method = str(scope.get("method", ""))
        self.buffer.inc(HTTP_REQUESTS, (method, route, str(status)))
        self.buffer.observe(HTTP_DURATION, (method, route), seconds)
        source = WEBHOOK_SOURCES.get(scope.get("path", ""))
        if source is not None:
            self.buffer.inc(WEBHOOKS, (source, _webhook_outcome(status)))


def _webhook_outcome(status: int) -> str:
    if status >= 500:
        return "error"
    return "rejected" if status >= 400 else "deferred"


async def _flush_forever(app: FastAPI, buffer: MetricBuffer) -> None:
    failing = False
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        try:
            await buffer.flush(app.state.runtime.aredis)
            failing = False
        except redis.RedisError as exc:
            if not failing:  # once per outage, not once a second
                log.warning("metrics flush failed: redis unavailable (%s); counts kept in memory", type(exc).__name__)
            failing = True


def install_metrics(app: FastAPI) -> None:
    """Add ``GET /metrics``, the counting middleware, and a lifespan task flushing the API's counts to Redis."""
    buffer = MetricBuffer(Keys(app.state.settings.redis_prefix))
    app.state.metrics_buffer = buffer
    app.state.job_census = JobCensus()
    app.include_router(router)
    app.add_middleware(HttpMetricsMiddleware, buffer=buffer)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: FastAPI) -> AsyncIterator[Any]:
        async with inner(target) as state:
            flusher = asyncio.create_task(_flush_forever(target, buffer))
            try:
                yield state
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                with contextlib.suppress(redis.RedisError, asyncio.TimeoutError):  # never hold up a shutdown
                    await asyncio.wait_for(buffer.flush(target.state.runtime.aredis), FINAL_FLUSH_S)

    app.router.lifespan_context = lifespan
