"""Tracing is optional (issue 21): off, nothing is imported and nothing changes; on, OTEL_* configures it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

#: What the Flask half does at start and per routed call, with tracing off (a legacy app has no FastAPI or Redis).
FLASK_HALF = """
import sys
from examples.legacy_app.app import create_app
from strangler_bridge import tracing

create_app({"STRANGLER_SERVICE_URL": "http://127.0.0.1:1", "STRANGLER_SERVICE_TOKEN": "t0ken-123"})
with tracing.span("bridge tts", parent={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}):
    assert tracing.inject() == {}
assert not tracing.enabled() and tracing.provider() is None
loaded = sorted(name for name, module in sys.modules.items() if name.startswith("opentelemetry") and module)
print("loaded:", loaded)
"""

#: What the API and a worker do at start and per task, with tracing off. FastAPI (which has its own telemetry) and
#: redis-py (its own observability) import parts of OpenTelemetry when it is installed: the service adds nothing.
SERVICE = """
import sys
import fastapi, flask, redis, rq

def otel() -> set[str]:
    return {name for name, module in sys.modules.items() if name.startswith("opentelemetry") and module}

theirs = otel()
import logging
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
from examples.legacy_app.app import create_app as legacy_app
from fastapi_app import create_app
from fastapi_app.instrumentation import instrument_worker
from fastapi_app.store.queues import Task, stored_trace
from strangler_bridge import tracing
from strangler_bridge.settings import Settings

settings = Settings.load(redis_url="redis://127.0.0.1:1/0", api_tokens=["t0ken-123"], webhook_secret="s3cret-456")
create_app(settings)
legacy_app({"STRANGLER_SERVICE_URL": "http://127.0.0.1:1", "STRANGLER_SERVICE_TOKEN": "t0ken-123"})
instrument_worker()
ran = []
Task(lambda: ran.append(1), job_id=lambda: "j", queue_name="q", timeout_s=1)()
assert ran == [1] and not tracing.enabled() and tracing.provider() is None
assert stored_trace(None, ["tts_0123456789abcdef0123456789abcdef"]) == {}  # no read of the record
print("loaded:", sorted(otel() - theirs))
"""

#: Makes what the extra installs unimportable (FastAPI itself requires opentelemetry-api).
WITHOUT_THE_EXTRA = """
import sys
for name in ("opentelemetry.sdk", "opentelemetry.instrumentation", "opentelemetry.exporter"):
    sys.modules[name] = None
"""


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STRANGLER_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**clean, **env},
        timeout=120,
    )


OFF = [
    pytest.param({}, id="no-exporter-configured"),
    pytest.param({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, id="none"),
    pytest.param({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, id="sdk-disabled"),
]


@pytest.mark.parametrize("env", OFF)
def test_with_tracing_off_the_flask_half_imports_nothing_of_opentelemetry(env: dict[str, str]) -> None:
    result = _run(FLASK_HALF, **env)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


@pytest.mark.parametrize("env", [OFF[0], OFF[2]])
def test_with_tracing_off_the_service_adds_nothing(env: dict[str, str]) -> None:
    result = _run(SERVICE, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loaded: []" in result.stdout


def test_without_the_extra_asking_for_traces_changes_nothing_but_a_warning() -> None:
    result = _run(WITHOUT_THE_EXTRA + SERVICE, OTEL_TRACES_EXPORTER="console")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loaded: []" in result.stdout
    assert result.stdout.count("pip install 'strangler-bridge[otel]'") == 1, result.stdout


def test_otel_variables_configure_the_exporter_and_the_service_name() -> None:
    code = """
        from strangler_bridge import tracing
        assert tracing.setup("strangler-bridge-api")
        with tracing.span("task advance_job", kind="consumer", attributes={"strangler.job_id": "job_1", "none": None}):
            carrier = tracing.inject()
        assert carrier["traceparent"].startswith("00-")
        tracing.shutdown()  # flushes the console exporter
        assert not tracing.enabled() and tracing.inject() == {}
    """
    result = _run(code, OTEL_TRACES_EXPORTER="console")
    assert result.returncode == 0, result.stderr
    assert '"name": "task advance_job"' in result.stdout
    assert '"kind": "SpanKind.CONSUMER"' in result.stdout
    assert '"strangler.job_id": "job_1"' in result.stdout
    assert '"service.name": "strangler-bridge-api"' in result.stdout  # the process's default

    named = _run(code, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="video-api")
    assert '"service.name": "video-api"' in named.stdout, named.stderr


def test_an_otlp_endpoint_alone_turns_on_otlp_over_http() -> None:
    code = """
        from strangler_bridge import tracing
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        assert tracing.setup("strangler-bridge-worker")
        (processor,) = tracing.provider()._active_span_processor._span_processors
        assert isinstance(processor.span_exporter, OTLPSpanExporter), processor.span_exporter
    """
    result = _run(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode == 0, result.stderr


def test_a_process_that_has_its_own_tracer_provider_keeps_it() -> None:
    code = """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        own = TracerProvider()
        trace.set_tracer_provider(own)
        from strangler_bridge import tracing
        assert tracing.setup("strangler-bridge-flask") and tracing.provider() is own
    """
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_client_spans_without_a_parent_are_dropped() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from strangler_bridge.tracing_sdk import build_provider

    exported = InMemorySpanExporter()
    provider = build_provider("test", exported)
    assert provider is not None
    tracer = provider.get_tracer(__name__)
    with tracer.start_as_current_span("XREADGROUP", kind=SpanKind.CLIENT):  # a background loop's Redis command
        pass
    with (
        tracer.start_as_current_span("task advance_job", kind=SpanKind.CONSUMER),
        tracer.start_as_current_span("GET", kind=SpanKind.CLIENT),
    ):
        pass
    assert sorted(span.name for span in exported.get_finished_spans()) == ["GET", "task advance_job"]
    provider.shutdown()
