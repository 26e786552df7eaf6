"""The service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_app import health
from fastapi_app.errors import install_error_handlers
from fastapi_app.runtime import Runtime
from strangler_bridge import __version__
from strangler_bridge.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app. Nothing connects until the lifespan starts."""
    settings = settings or Settings.load()
    settings.require("redis_url")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.aclose()

    app = FastAPI(
        title="strangler-bridge",
        version=__version__,
        summary="GPU orchestration for the video pipeline: TTS on RunPod, images on Runware, video render.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    return app
