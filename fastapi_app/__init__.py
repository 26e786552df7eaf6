"""The FastAPI service: routers, auth, webhook receivers, RQ jobs, pipeline, reconciler, limiter."""

from fastapi_app.app import create_app

__all__ = ["create_app"]
