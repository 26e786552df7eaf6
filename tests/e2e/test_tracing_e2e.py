"""One trace per video (issue 21): a pipeline job started from the example Flask app is one connected trace across
the Flask request, the API, every RQ task, the provider calls and the webhook applies.

Everything runs in this process so that the SDK's in-memory exporter sees every span: the simulators and the API
(uvicorn) and the example app (werkzeug) serve real HTTP on loopback in threads, a worker runs RQ's loop and the
webhook inbox in threads, and Redis is the session's private server.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import requests

from examples.legacy_app.serving import ServedApp, stack_config
from strangler_bridge import tracing
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.settings import Settings
from tests.conftest import TEST_TOKEN
from tests.support.in_process import InProcessStack
from tests.support.stack import forget_keys
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

pytest.importorskip("opentelemetry.sdk.trace", reason="needs the [otel] extra")
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

SOURCE = "Dawn came. Boats left. Night fell."
VIDEO_ID = "traced-1"


class OpenSpans(SpanProcessor):
    """Counts the spans started and not yet ended, so the test reads the exporter once the trace is whole."""

    def __init__(self) -> None:
        self.open = 0
        self._lock = threading.Lock()

    def on_start(self, span: object, parent_context: object = None) -> None:
        with self._lock:
            self.open += 1

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.open -= 1


@pytest.fixture
def traced() -> Iterator[tuple[InMemorySpanExporter, OpenSpans]]:
    """Tracing on for this process, into memory; off again (instrumentations undone) afterwards."""
    assert not tracing.enabled()
    exported = InMemorySpanExporter()
    assert tracing.setup("strangler-bridge-test", exporter=exported)
    counter = OpenSpans()
    tracing.provider().add_span_processor(counter)
    try:
        yield exported, counter
    finally:
        tracing.shutdown()


@pytest.fixture
def stack(traced: object, redis_url: str, tmp_path: Path) -> Iterator[InProcessStack]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    base = Settings.load(
        redis_url=redis_url,
        redis_prefix=prefix,
        artifacts_dir=tmp_path / "artifacts",
        api_tokens=[TEST_TOKEN],
        webhook_secret="test-webhook-secret",
        tts_group_size=4,
    )
    running = InProcessStack(
        base,
        log_dir=tmp_path / "logs",
        runpod={"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05},
        runware={"latency_s": 0.05, "image_max_side": 64},
    ).start()
    try:
        yield running
    finally:
        running.stop()
        forget_keys(redis_url, prefix)


@pytest.fixture
def legacy(stack: InProcessStack, tmp_path: Path) -> Iterator[ServedApp]:
    # In callback mode, so that the job's completion webhook (and the app receiving it) joins the trace too.
    port = free_port()
    config = stack_config(
        stack,
        tmp_path / "legacy-output",
        STRANGLER_SERVICE_TIMEOUT_S=60,
        STRANGLER_JOBS_WAIT="callback",
        STRANGLER_CALLBACK_RECEIVER_URL=f"http://127.0.0.1:{port}/strangler/callbacks",
        STRANGLER_CALLBACK_SECRET=",".join(stack.settings.callback_secrets()),
    )
    with ServedApp(config, port=port) as served:
        yield served


def test_a_pipeline_job_from_the_flask_app_is_one_connected_trace(
    traced: tuple[InMemorySpanExporter, OpenSpans], stack: InProcessStack, legacy: ServedApp
) -> None:
    exported, counter = traced
    with stack.client() as client:
        client.put("/flags/jobs", json={"mode": "fastapi"}).raise_for_status()
    exported.clear()

    # requests, not httpx: httpx is instrumented here and would send the app an unsampled trace context.
    answer = requests.post(
        f"{legacy.url}/api/video/create", json={"source_text": SOURCE, "video_id": VIDEO_ID}, timeout=120
    )
    assert answer.status_code == 201, answer.text
    worker = stack.workers[0]
    wait_for(lambda: counter.open == 0 and worker.idle(), timeout=30, what="every span to end")
    spans = exported.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}

    # One trace, rooted in the Flask request, with no span whose parent is missing.
    (root,) = [span for span in spans if span.parent is None]
    assert (root.name, root.kind) == ("POST /api/video/create", SpanKind.SERVER)
    assert {span.context.trace_id for span in spans} == {root.context.trace_id}
    assert [span.name for span in spans if span.parent is not None and span.parent.span_id not in by_id] == []

    # The spans name the bridge's step, the service's tasks and steps, the provider calls and the webhook applies.
    names = {span.name for span in spans}
    assert {"bridge jobs", "POST /jobs", "GET /jobs/{job_id}", "GET /jobs/{job_id}/video"} <= names
    assert {
        "task advance_job",
        "task submit_tts",
        "task submit_images",
        "task submit_render",
        "task reconcile",
    } <= names
    assert {"step tts", "step segments", "step imagegen", "step video"} <= names
    assert {"runpod run", "runware infer", "video submit", "video status", "webhook runpod"} <= names
    for span in spans:
        if span.name.startswith(("bridge ", "task ")):
            assert span.status.status_code is not StatusCode.ERROR, span

    # ... and the ids: one job, this video, each provider's calls with its batch.
    (job_id,) = {_attribute(span, "job_id") for span in spans if span.name.startswith("step ")}
    assert job_id.startswith("job_")
    for span in spans:
        if span.name.startswith("task "):  # the job's tasks name it; a batch's, the batch
            attributes = span.attributes or {}
            assert attributes.get("strangler.job_id") == job_id or "strangler.batch_id" in attributes, span.name
    for span in spans:
        if span.name == "bridge jobs" or span.name.startswith("step "):
            assert _attribute(span, "video_id") == VIDEO_ID, span.name
    batches = {
        _attribute(span, "provider"): _attribute(span, "batch_id").split("_")[0]
        for span in spans
        if span.attributes and "strangler.provider" in span.attributes
    }
    assert batches == {"runpod": "tts", "runware": "img", "video": "vid"}

    # Work started by no request joins the trace of its record: RunPod's webhook under the TTS step that made the
    # batch, the render's callback (a reconcile task) under the video step.
    assert "step tts" in _ancestors(by_id, _named(spans, "webhook runpod"))
    assert "step video" in _ancestors(by_id, _named(spans, "task reconcile"))
    for span in spans:
        if span.name.startswith("task "):
            assert "POST /jobs" in _ancestors(by_id, span), span.name
    # The completion webhook is sent in the job's trace, and the app's receiving request is part of it.
    assert "POST /jobs" in _ancestors(by_id, _named(spans, "callback job"))
    assert "callback job" in _ancestors(by_id, _named(spans, "POST /strangler/callbacks"))
    # Query strings (where signed and presigned URLs keep their credentials) stay out of the URLs of HTTP calls.
    urls = [str((span.attributes or {}).get("http.url")) for span in spans if span.kind is SpanKind.CLIENT]
    assert any("/jobs/job_" in url for url in urls)
    assert [url for url in urls if "?" in url] == []
    stored = worker.rt.jobs.load(job_id)
    assert stored is not None and f"{root.context.trace_id:032x}" in stored.trace["traceparent"]


def _attribute(span: ReadableSpan, name: str) -> str:
    value = (span.attributes or {}).get(f"strangler.{name}")
    assert isinstance(value, str), f"{span.name} has no strangler.{name}"
    return value


def _named(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    return next(span for span in spans if span.name == name)


def _ancestors(by_id: dict[int, ReadableSpan], span: ReadableSpan) -> list[str]:
    """The names of the span's ancestors, nearest first."""
    names = []
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names
