"""The tracer provider built from ``OTEL_*`` (imported only once tracing is on: it needs the ``[otel]`` extra).

The SDK reads most of ``OTEL_*`` itself: the service name and resource attributes (``Resource.create``), the
sampler (``TracerProvider``), the OTLP endpoint, headers, timeout and compression (the exporter), the batch sizes
(``BatchSpanProcessor``). What is chosen here is which exporters ``OTEL_TRACES_EXPORTER`` names, looked up
like the SDK does, by their ``opentelemetry_traces_exporter`` entry points; two things differ from the SDK's own
auto-configuration: an unset ``OTEL_TRACES_EXPORTER`` means OTLP only when an OTLP endpoint is set (nothing
otherwise), and ``otlp`` means OTLP over HTTP (the exporter the extra installs) unless the protocol is ``grpc``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from importlib.metadata import entry_points

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)


class ParentedClientSpans(Sampler):
    """Samples as ``inner`` does, but drops client spans that have no parent.

    Redis and httpx are instrumented for the whole process, and the service's background loops (the reconciler,
    the webhook inbox, RQ's own polling, metrics flushes, the Flask side's flag refresh) call them all the time
    outside any request or task: each call would start a trace of one span. Inside traced work they have a parent.
    """

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(  # noqa: PLR0917  (the SDK's signature)
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Drop a parentless client span; decide any other as the configured sampler does."""
        if kind is SpanKind.CLIENT and not get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        """The sampler's name, as the SDK shows it."""
        return f"ParentedClientSpans{{{self.inner.get_description()}}}"


def build_provider(service_name: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """A provider exporting to ``exporter`` (each span as it ends) or else to the exporters ``OTEL_*`` configures
    (in batches); ``None`` if none of those can be loaded."""
    processors: list[SpanProcessor]
    if exporter is not None:
        processors = [SimpleSpanProcessor(exporter)]
    else:
        processors = [BatchSpanProcessor(found) for name in _exporter_names() if (found := _exporter(name))]
    if not processors:
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    # Wrapped before any tracer exists: each tracer takes the provider's sampler when it is created.
    provider.sampler = ParentedClientSpans(provider.sampler)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def _exporter_names() -> list[str]:
    configured = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    return [name.strip() for name in configured.split(",") if name.strip() and name.strip().lower() != "none"]


def _exporter(name: str) -> SpanExporter | None:
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        name = "otlp_proto_grpc" if (protocol or "").strip() == "grpc" else "otlp_proto_http"
    found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
    if not found:
        log.warning("tracing: no installed package provides the %r span exporter (OTEL_TRACES_EXPORTER)", name)
        return None
    exporter: SpanExporter = found[0].load()()
    return exporter
