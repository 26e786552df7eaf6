"""Tracing of the legacy app (with the ``[otel]`` extra and ``OTEL_*`` set; see strangler_bridge.tracing).

Each request of the app is a span (Flask), each call to the service a child span (httpx) whose ``traceparent``
header carries the trace into the service; a routed step is a span of its own (:mod:`flask_plugin.step`).
"""

from __future__ import annotations

import logging

from flask import Flask

from strangler_bridge import tracing

log = logging.getLogger(__name__)


def instrument_app(app: Flask) -> None:
    """Trace ``app``'s requests and its calls to the service if tracing is on for this process; the service
    name defaults to the app's name."""
    if not tracing.setup(app.name):
        return
    try:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
    except ImportError:
        log.warning("tracing: opentelemetry-instrumentation-flask is not installed; requests are not traced")
        return
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):  # e.g. under opentelemetry-instrument
        FlaskInstrumentor.instrument_app(app, tracer_provider=tracing.provider())  # type: ignore[no-untyped-call]
