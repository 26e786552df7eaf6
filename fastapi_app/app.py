"""The service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_app.api import artifact_links, events, flags, health, listing
from fastapi_app.api.client_deadline import ClientDeadlineMiddleware
from fastapi_app.api.errors import install_error_handlers
from fastapi_app.api.limits import BodyLimitMiddleware
from fastapi_app.images import routes as image_routes
from fastapi_app.instrumentation import instrument_api
from fastapi_app.logs import LogContextMiddleware
from fastapi_app.metrics import install_metrics
from fastapi_app.ops import routes as ops_routes
from fastapi_app.pipeline import routes as job_routes
from fastapi_app.renders import routes as render_routes
from fastapi_app.runtime import Runtime
from fastapi_app.store.changes import ChangeHub
from fastapi_app.tts import routes as tts_routes
from strangler_bridge import __version__
from strangler_bridge.settings import Settings

WEBHOOK_PATHS = ("/tts/callback", "/video/render/callback")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app. Nothing connects until the lifespan starts."""
    settings = settings or Settings.load()
    settings.require_for("api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings)
        runtime.warn_if_evicting()
        hub = ChangeHub(runtime.aredis, runtime.keys)
        app.state.runtime = runtime
        app.state.changes = hub
        hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await runtime.aclose()

    app = FastAPI(
        title="strangler-bridge",
        version=__version__,
        summary="GPU orchestration for the video pipeline: TTS on RunPod, images on Runware, video render.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        webhook=settings.max_webhook_bytes,
        webhook_paths=WEBHOOK_PATHS,
    )
    app.add_middleware(ClientDeadlineMiddleware)
    app.include_router(health.router)
    app.include_router(tts_routes.router)
    app.include_router(image_routes.router)
    app.include_router(job_routes.router)
    app.include_router(render_routes.router)
    app.include_router(render_routes.callbacks)
    app.include_router(listing.router)
    app.include_router(artifact_links.router)
    app.include_router(flags.router)
    app.include_router(events.router)
    app.include_router(ops_routes.router)
    app.add_middleware(LogContextMiddleware)
    install_metrics(app)  # last: its middleware is outermost, so it counts every answer
    instrument_api(app)  # with the [otel] extra and OTEL_* set only
    return app
