"""OpenTelemetry tracing when the ``[otel]`` extra is installed and ``OTEL_*`` asks for it; otherwise nothing.

Nothing here imports OpenTelemetry until :func:`setup` turns tracing on, so a process without the extra, without
an exporter in ``OTEL_*``, or with ``OTEL_SDK_DISABLED=true`` runs as if this module did not exist: every helper
is a no-op (:func:`inject` returns ``{}``, :func:`span` only runs its block).

Each process turns tracing on once, at start: the Flask extension, the API's app factory and the worker call
:func:`setup` with their default service name (``OTEL_SERVICE_NAME`` wins). A process that already has a tracer
provider (run under ``opentelemetry-instrument``, or an app that configured its own) keeps it; otherwise one is
built from ``OTEL_*`` (:mod:`strangler_bridge.tracing_sdk`). The library instrumentations (httpx here; Flask,
FastAPI and Redis in the halves) are given that provider.

A trace crosses processes as a W3C trace context in a plain ``dict`` carrier: HTTP headers (the httpx
instrumentation), RQ job meta, and the ``trace`` field of the stored records, so work started later (a webhook,
the reconciler) joins the trace of the record it is about.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer, TracerProvider

log = logging.getLogger(__name__)

#: What a span attribute may hold here (``None`` values are left out).
AttributeValue = str | int | float | bool | None
SpanKindName = Literal["internal", "server", "client", "producer", "consumer"]


@dataclass
class _Tracing:
    provider: TracerProvider
    tracer: Tracer
    owned: bool  # built here (so flushed and stopped by shutdown), not the process's own
    instrumented: list[Any] = field(default_factory=list)


@dataclass
class _Process:
    state: _Tracing | None = None
    missing_said: bool = False  # the missing extra is logged once, not by each app and worker set up


_process = _Process()  # what setup made of this process
_lock = threading.Lock()


def enabled() -> bool:
    """Whether this process traces."""
    return _process.state is not None


def setup(service_name: str, *, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on for this process if it can and should be; whether it is on. Later calls change nothing.

    ``service_name`` is used when neither ``OTEL_SERVICE_NAME`` nor ``OTEL_RESOURCE_ATTRIBUTES`` names the
    service. ``exporter`` sends each span there as it ends instead of where ``OTEL_*`` says (tests pass the
    SDK's in-memory exporter). httpx is instrumented at once: both halves call their services with it.
    """
    with _lock:
        if _process.state is None and not _disabled():
            _process.state = _start(service_name, exporter)
    if _process.state is None:
        return False
    instrument("httpx", request_hook=_url_without_query, async_request_hook=_async_url_without_query)
    return True


def _disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _start(service_name: str, exporter: SpanExporter | None) -> _Tracing | None:
    if exporter is None:
        existing = _process_provider()
        if existing is not None:
            return _Tracing(existing, existing.get_tracer(__name__), owned=False)
        if not _exporter_configured():
            return None
    try:
        from strangler_bridge import tracing_sdk
    except ImportError:
        if not _process.missing_said:
            _process.missing_said = True
            log.warning("OTEL_* asks for traces but the SDK is not installed: pip install 'strangler-bridge[otel]'")
        return None
    provider = tracing_sdk.build_provider(service_name, exporter)
    return None if provider is None else _Tracing(provider, provider.get_tracer(__name__), owned=True)


def _process_provider() -> TracerProvider | None:
    """The tracer provider the process configured before us, if any (none can exist if nothing imported the API)."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return None if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)) else provider


def _exporter_configured() -> bool:
    """Whether ``OTEL_*`` names somewhere to send spans (an exporter other than ``none``, or an OTLP endpoint)."""
    names = os.environ.get("OTEL_TRACES_EXPORTER")
    if names is not None:
        return any(name.strip() and name.strip().lower() != "none" for name in names.split(","))
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def provider() -> TracerProvider | None:
    """The tracer provider in use (``None`` when tracing is off), for instrumentations set up per app."""
    return _process.state.provider if _process.state is not None else None


def instrument(library: str, **options: Any) -> None:
    """Turn on OpenTelemetry's instrumentation of ``library`` (``httpx``, ``redis``: the name of its
    ``opentelemetry_instrumentor`` entry point) with this process's provider and ``options``; nothing when tracing
    is off, the instrumentation is not installed, or the library is already instrumented (``opentelemetry-instrument``
    did it)."""
    state = _process.state
    if state is None:
        return
    from importlib.metadata import entry_points

    with _lock:
        found = list(entry_points(group="opentelemetry_instrumentor", name=library))
        if not found:
            log.warning("tracing: opentelemetry-instrumentation-%s is not installed; not traced", library)
            return
        instrumentor = found[0].load()()  # each instrumentor class is a singleton
        if instrumentor.is_instrumented_by_opentelemetry:
            return
        instrumentor.instrument(tracer_provider=state.provider, **options)
        state.instrumented.append(instrumentor)


def _url_without_query(span: Any, request: Any) -> None:
    """Keep query strings out of client spans: presigned and signed URLs carry their credentials there."""
    url = str(request.url)
    recorded = getattr(span, "attributes", None) or {}
    if "?" in url:
        for key in ("http.url", "url.full"):  # the old and the stable HTTP conventions
            if key in recorded:
                span.set_attribute(key, url.split("?", 1)[0])


async def _async_url_without_query(span: Any, request: Any) -> None:
    _url_without_query(span, request)


def shutdown() -> None:
    """Turn tracing off: undo the instrumentations made here, then flush and stop the provider built here."""
    with _lock:
        state, _process.state = _process.state, None
    if state is None:
        return
    for instrumentor in reversed(state.instrumented):
        instrumentor.uninstrument()
    if state.owned:
        state.provider.shutdown()  # type: ignore[attr-defined]  # an SDK provider (tracing_sdk built it)


def inject() -> dict[str, str]:
    """The current trace context as a W3C carrier (``{"traceparent": ...}``); ``{}`` when there is none."""
    if _process.state is None:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def attached(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Make the trace context of ``carrier`` current for the block (nothing without one)."""
    if _process.state is None or not carrier:
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKindName = "internal",
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[None]:
    """Run the block in a span named ``name``: a child of the current span, or of the context in ``parent``
    when given (an empty carrier starts a new trace). An exception leaving the block is recorded on the span."""
    state = _process.state
    if state is None:
        yield
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    context = propagate.extract(parent) if parent is not None else None
    values = {key: value for key, value in (attributes or {}).items() if value is not None}
    with state.tracer.start_as_current_span(name, context=context, kind=SpanKind[kind.upper()], attributes=values):
        yield
