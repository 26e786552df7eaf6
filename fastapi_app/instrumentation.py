"""Tracing of the API and the workers (with the ``[otel]`` extra and ``OTEL_*`` set; see strangler_bridge.tracing).

The API traces each request (FastAPI) and both processes trace their Redis commands and HTTP calls (Redis,
httpx); the spans of the work itself (``task ...``, ``step ...``, provider calls, webhook applies) are made where
that work runs. Providers' webhooks, signed artifact links and the probes get no request span: a webhook carries
no trace, so its apply joins the trace stored on its batch instead; a link's path is its credential; probes would
only add a trace per scrape.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from strangler_bridge import tracing

log = logging.getLogger(__name__)

API_SERVICE = "strangler-bridge-api"
WORKER_SERVICE = "strangler-bridge-worker"
#: Paths (regular expressions, as OTEL_PYTHON_FASTAPI_EXCLUDED_URLS takes them) that get no request span.
UNTRACED_PATHS = ("/tts/callback", "/video/render/callback", "/artifacts/", "/healthz", "/readyz", "/metrics")


def instrument_api(app: FastAPI) -> None:
    """Trace ``app``'s requests, Redis commands and outbound HTTP if tracing is on for this process."""
    if not tracing.setup(API_SERVICE):
        return
    tracing.instrument("redis")
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:
        log.warning("tracing: opentelemetry-instrumentation-fastapi is not installed; requests are not traced")
        return
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):  # e.g. under opentelemetry-instrument
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracing.provider(),
            excluded_urls=_excluded_urls(),
            exclude_spans=["receive", "send"],  # a span per ASGI message would outnumber the request's own
        )


def instrument_worker() -> None:
    """Trace the worker's Redis commands and outbound HTTP if tracing is on for this process (tasks trace
    themselves: :class:`~fastapi_app.store.queues.Task`)."""
    if tracing.setup(WORKER_SERVICE):
        tracing.instrument("redis")


def _excluded_urls() -> str:
    # Passing a list replaces the one from the environment: keep the operator's exclusions too.
    configured = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
    return ",".join([*UNTRACED_PATHS, *([configured] if configured else [])])
