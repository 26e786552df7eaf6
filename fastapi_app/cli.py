"""``strangler-bridge api`` and ``strangler-bridge worker``."""

from __future__ import annotations

import click

from strangler_bridge.doctor import warn_in_background
from strangler_bridge.settings import Settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--log-level", default="info", show_default=True)
def api(host: str, port: int, log_level: str) -> None:
    """Serve the FastAPI service (needs STRANGLER_REDIS_URL); the checks of ``doctor`` run in the background and
    log what they find as warnings."""
    import uvicorn

    from fastapi_app import create_app
    from fastapi_app.logs import configure_logging
    from strangler_bridge.cli.servers import KEEP_ALIVE_S

    settings = Settings.load()
    configure_logging(log_level, settings)
    app = create_app(settings)
    warn_in_background(settings, "api")
    # log_config=None: uvicorn's own records go through the JSON handler configured above.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        log_config=None,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


@click.command()
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--name", default=None, help="Worker name (defaults to RQ's).")
def worker(burst: bool, name: str | None) -> None:
    """Run an RQ worker for the service's queues (needs STRANGLER_REDIS_URL); the checks of ``doctor`` run in the
    background and log what they find as warnings."""
    from fastapi_app.logs import configure_logging
    from fastapi_app.worker import run_worker

    settings = Settings.load()
    configure_logging("INFO", settings)
    warn_in_background(settings, "worker")
    run_worker(settings, burst=burst, name=name)
