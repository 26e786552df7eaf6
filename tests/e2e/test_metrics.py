"""GET /metrics after a real pipeline run: every counter the operator relies on, with the right values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastapi_app.tts.runpod_work import PURPOSE
from flask_plugin.events import BridgeEvent
from flask_plugin.reporting import EventReporter
from strangler_bridge.cli.devstack import SIM_KEY, DevStack
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.client.service import ServiceClient
from strangler_bridge.contracts.events import EventKind
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.settings import Settings
from strangler_bridge.signing import sign
from tests.support.stack import follow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

VIDEO = "vid-metrics"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[DevStack]:
    # A reconcile deadline well past the run, so every result arrives by webhook (and is counted as one).
    base = settings.model_copy(update={"reconcile_after_s": 10.0, "reconcile_interval_s": 0.2, "tts_group_size": 3})
    with DevStack(
        base,
        runpod={"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05},
        runware={"latency_s": 0.05, "image_max_side": 64},
        log_dir=tmp_path / "stack",
    ) as running:
        yield running


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def job_body(n: int) -> dict[str, Any]:
    return {
        "chunks": [{"text": f"Sentence number {i} of the story."} for i in range(n)],
        "images": {"width": 128, "height": 128},
        "video": {"width": 64, "height": 48, "fps": 5},
        "video_id": VIDEO,
    }


def report_events(stack: DevStack) -> None:
    """What the Flask side's reporter sends: one batch through POST /events."""
    with ServiceClient(stack.api_url, stack.token) as client:
        reporter = EventReporter(client, source="test", interval_s=0.05)
        reporter.submit(BridgeEvent(EventKind.SHADOW_MATCH, Phase.TTS, "v-1", ""))
        reporter.submit(
            BridgeEvent(EventKind.SHADOW_MISMATCH, Phase.TTS, "v-2", "durations differ", {"mismatches": ["x"]})
        )
        reporter.submit(
            BridgeEvent(EventKind.FALLBACK, Phase.TTS, "v-3", "service unreachable", {"code": "unreachable"})
        )
        reporter.submit(BridgeEvent(EventKind.SERVICE, Phase.IMAGEGEN, "v-4", ""))
        assert reporter.flush(10)
        reporter.close()
        assert (reporter.sent, reporter.dropped) == (4, 0)


def test_metrics_after_a_pipeline_run(stack: DevStack) -> None:
    with stack.client() as client:
        created = client.post("/jobs", json=job_body(6), headers={"X-Video-Id": VIDEO})
        assert created.status_code == 202, created.text
        job = follow(client, f"/jobs/{created.json()['id']}", timeout=90)
        assert job["status"] == "completed", job

        # RunPod delivers a result again, and someone posts with a forged token.
        tts_batch = job["steps"][0]["batch_id"]
        secret = stack.settings.secret("webhook_secret")
        token = sign(secret, PURPOSE, [tts_batch, "0", "1"], 60)
        again = {"id": "rp-again", "status": "COMPLETED", "output": {"chunks": []}}
        duplicate = httpx.post(f"{stack.api_url}/tts/callback", params={"token": token}, json=again)
        assert duplicate.json() == {"status": "queued"}
        forged = httpx.post(f"{stack.api_url}/tts/callback", params={"token": "forged.token"}, json=again)
        assert forged.status_code == 401
        report_events(stack)

        def duplicate_applied() -> bool:
            applied = value(scrape(client), "strangler_webhook_results_total", source="runpod", outcome="duplicate")
            return applied == 1

        wait_for(duplicate_applied, timeout=20, interval=0.1, what="a worker applying the duplicate")

        samples = scrape(client)
        recent = client.get("/events").json()

    # Jobs by state and the pipeline's steps, each attempt counted once.
    states = ("queued", "running", "completed", "failed", "cancelled")
    jobs = {state: value(samples, "strangler_jobs", state=state) for state in states}
    assert jobs == {"queued": 0, "running": 0, "completed": 1, "failed": 0, "cancelled": 0}
    for step in ("tts", "segments", "imagegen", "video"):
        assert value(samples, "strangler_step_duration_seconds_count", step=step, status="completed") == 1, step
    assert (value(samples, "strangler_step_duration_seconds_sum", step="tts", status="completed") or 0) > 0

    # Webhooks: one per TTS group (6 chunks in groups of 3), then the duplicate and the forgery; the workers
    # applied the queued ones.
    runpod = {
        o: value(samples, "strangler_webhook_deliveries_total", source="runpod", outcome=o)
        for o in ("deferred", "rejected")
    }
    assert runpod == {"deferred": 3, "rejected": 1}
    results = {
        o: value(samples, "strangler_webhook_results_total", source="runpod", outcome=o)
        for o in ("accepted", "duplicate", "error")
    }
    assert results == {"accepted": 2, "duplicate": 1, "error": 0}
    assert value(samples, "strangler_webhook_inbox_pending") == 0
    assert (value(samples, "strangler_webhook_deliveries_total", source="video", outcome="deferred") or 0) >= 1

    # Provider calls by outcome, and their latency.
    calls = "strangler_provider_calls_total"
    assert value(samples, calls, provider="runpod", operation="run", outcome="ok") == 2
    assert value(samples, calls, provider="runware", operation="infer", outcome="ok") == 6
    assert value(samples, calls, provider="video", operation="submit", outcome="ok") == 1
    assert (value(samples, calls, provider="video", operation="status", outcome="ok") or 0) >= 1
    latency = "strangler_provider_call_duration_seconds"
    assert value(samples, f"{latency}_count", provider="runpod", operation="run") == 2
    assert value(samples, f"{latency}_bucket", provider="runpod", operation="run", le="+Inf") == 2
    assert (value(samples, f"{latency}_sum", provider="runware", operation="infer") or 0) > 0
    assert value(samples, "strangler_limiter_wait_seconds_count", limiter="runware") == 6

    # Requests by route template and status.
    http = "strangler_http_requests_total"
    assert value(samples, http, method="POST", route="/jobs", status="202") == 1
    assert value(samples, http, method="POST", route="/tts/callback", status="200") == 3
    assert value(samples, http, method="POST", route="/tts/callback", status="401") == 1
    assert (value(samples, http, method="GET", route="/jobs/{job_id}", status="200") or 0) >= 1

    # Queues are drained and watched; the limiter is idle.
    assert value(samples, "strangler_queue_depth", queue="work") == 0
    assert value(samples, "strangler_workers", queue="work") == 1
    assert value(samples, "strangler_limiter_slots_in_use", limiter="runware") == 0
    assert value(samples, "strangler_limiter_slots_limit", limiter="runware") == stack.settings.runware_concurrency

    # What the Flask side reported.
    events = "strangler_bridge_events_total"
    assert value(samples, events, phase="tts", kind="fallback") == 1
    assert value(samples, events, phase="tts", kind="shadow_mismatch") == 1
    assert value(samples, events, phase="tts", kind="shadow_match") == 1
    assert value(samples, events, phase="imagegen", kind="service") == 1
    assert value(samples, events, phase="video", kind="fallback") == 0
    assert [(e["kind"], e["video_id"]) for e in recent["recent"]] == [("fallback", "v-3"), ("shadow_mismatch", "v-2")]
    assert recent["counters"]["tts"]["fallback"] == 1


def test_logs_are_json_carry_the_video_id_into_workers_and_hide_secrets(stack: DevStack) -> None:
    with stack.client() as client:
        created = client.post("/jobs", json=job_body(3), headers={"X-Video-Id": VIDEO})
        job = follow(client, f"/jobs/{created.json()['id']}", timeout=90)
        assert job["status"] == "completed", job
    stack.stop()  # flushes and closes every log

    worker_lines = [json.loads(line) for w in stack.workers for line in w.output().splitlines() if line.strip()]
    assert worker_lines, "the worker logged nothing"
    assert all(
        {"time", "level", "logger", "message", "job_id", "batch_id", "video_id"} <= set(line) for line in worker_lines
    )
    mine = [line for line in worker_lines if line["video_id"] == VIDEO]
    assert {line["job_id"] for line in mine} == {job["id"]}
    assert {line["batch_id"] for line in mine} >= {step["batch_id"] for step in job["steps"] if step["batch_id"]}

    everything = "".join(child.output() for child in [*stack.workers, stack.api] if child is not None)
    for secret in (stack.token, stack.settings.secret("webhook_secret"), SIM_KEY):
        assert secret not in everything


def test_the_reporter_never_blocks_or_fails_the_caller_when_the_service_is_down() -> None:
    with ServiceClient(f"http://127.0.0.1:{free_port()}", "token", timeout_s=1.0) as client:
        reporter = EventReporter(client, interval_s=0.05, capacity=3)
        for n in range(5):
            reporter.submit(BridgeEvent(EventKind.FALLBACK, Phase.TTS, f"v-{n}", "down"))
        assert not reporter.flush(0.5)  # undeliverable: kept for later, never raised
        reporter.close()
    # Over capacity: the two oldest were dropped (counted); the rest wait for the service.
    assert (reporter.sent, reporter.dropped, reporter.pending) == (0, 2, 3)


def test_events_kept_during_an_outage_arrive_with_the_count_of_those_dropped(stack: DevStack) -> None:
    with stack.client() as api:
        before = value(scrape(api), "strangler_bridge_events_dropped_total")
    with ServiceClient(stack.api_url, stack.token) as client:
        reporter = EventReporter(client, source="outage", interval_s=0.05, capacity=2)
        assert stack.api is not None
        stack.api.stop()
        try:
            for n in range(3):
                reporter.submit(BridgeEvent(EventKind.FALLBACK, Phase.VIDEO, f"out-{n}", "down"))
            assert not reporter.flush(0.5)
        finally:
            stack.start_api()
        assert reporter.flush(30)
        reporter.close()
    assert (reporter.sent, reporter.dropped, reporter.pending) == (2, 1, 0)
    with stack.client() as api:
        recent = api.get("/events", params={"limit": 200}).raise_for_status().json()["recent"]
        assert [e["video_id"] for e in recent if e["source"] == "outage"] == ["out-2", "out-1"]
        assert value(scrape(api), "strangler_bridge_events_dropped_total") == (before or 0) + 1
