"""Falling back fast, and not paying for work nobody waits for: the example legacy app against the real service,
a stopped one, a paused one (SIGSTOP) and one whose provider never finishes.

The legacy app talks to its own RunPod simulator (``/runsync``), so a stuck provider behind the service does not
hold up the legacy code; the service's RunPod simulator counts what the service submitted (``/run``) and cancelled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from examples.legacy_app.serving import ServedApp, stack_config
from flask_plugin import BridgeClient
from strangler_bridge.cli.devstack import SIM_KEY, DevStack
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.contracts.tts import TtsBatchCreate
from tests.conftest import TEST_TOKEN
from tests.support.stack import follow, forget_keys, legacy_stack, tts_body
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SOURCE = "Dawn came. Boats left. Night fell."
CHUNKS = 3
PHASES = ("tts", "imagegen", "video", "jobs")
FAST_RUNPOD = {"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05}


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    root = tmp_path_factory.mktemp("fallback-stack")
    running = legacy_stack(
        redis_url, root, prefix, TEST_TOKEN, runpod=FAST_RUNPOD, runware={"latency_s": 0.05, "image_max_side": 64}
    )
    try:
        yield running
    finally:
        running.stop()
        forget_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def legacy_runpod() -> Iterator[ThreadedServer]:
    """The legacy code's own RunPod endpoint (a simulator that always answers quickly)."""
    from strangler_bridge.simulators.runpod.app import create_app as runpod_app
    from strangler_bridge.simulators.runpod.config import RunPodSimConfig

    server = ThreadedServer(runpod_app(RunPodSimConfig.model_validate({"api_key": SIM_KEY, **FAST_RUNPOD}))).start()
    try:
        yield server
    finally:
        server.stop()


LegacyFactory = Callable[..., ServedApp]


@pytest.fixture
def legacy_app(stack: DevStack, legacy_runpod: ThreadedServer, tmp_path: Path) -> Iterator[LegacyFactory]:
    """``legacy_app(**config)``: the example app over HTTP (tts etc. on the legacy simulators); all shut down after."""
    with contextlib.ExitStack() as started:

        def start(**config: Any) -> ServedApp:
            output = tmp_path / f"output-{uuid.uuid4().hex[:8]}"
            settings = stack_config(
                stack,
                output,
                runpod_url=f"{legacy_runpod.url}/v2/sim",
                STRANGLER_SERVICE_TIMEOUT_S=60,
                STRANGLER_SERVICE_REQUEST_TIMEOUT_S=1,
                STRANGLER_BREAKER_COOLDOWN_S=120,  # stays open for the whole test
                **config,
            )
            return started.enter_context(ServedApp(settings))

        yield start


def set_flags(stack: DevStack, **modes: str) -> None:
    """Every phase to ``legacy`` unless named, through the service's flag API."""
    with stack.client() as client:
        for phase in PHASES:
            client.put(f"/flags/{phase}", json={"mode": modes.get(phase, "legacy")}).raise_for_status()


def service_runs(stack: DevStack) -> int:
    """RunPod jobs the service submitted (the legacy code uses ``/runsync`` on its own simulator)."""
    return int(stack.counters("runpod")["jobs_received"].get("run", 0))


def service_fallbacks(stack: DevStack) -> int:
    """TTS fallbacks as the service counted them (``GET /events``)."""
    with stack.client() as client:
        return int(client.get("/events").raise_for_status().json()["counters"]["tts"]["fallback"])


def metric(stack: DevStack, name: str, **labels: str) -> float | None:
    """One sample of the service's ``/metrics``."""
    with stack.client() as client:
        text = client.get("/metrics").raise_for_status().text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def _assert_tts_service_mode(app: ServedApp) -> None:
    phase = app.get("/strangler/health")["flags"]["phases"]["tts"]
    assert (phase["mode"], phase["fallback"]) == ("fastapi", True)


# --- the API stopped ----------------------------------------------------------------------------------------


def test_with_the_api_stopped_the_breaker_opens_in_the_first_video_and_fallbacks_reach_the_service_later(
    stack: DevStack, legacy_app: LegacyFactory
) -> None:
    set_flags(stack, tts="fastapi")
    app = legacy_app()
    _assert_tts_service_mode(app)
    before = service_fallbacks(stack)
    assert stack.api is not None
    stack.api.stop()
    try:
        body = app.create("stop-1", SOURCE, voice="narrator")
        assert body["segments"] == CHUNKS  # the legacy code made the video
        assert app.breaker() == "open"  # within the first failing video
        app.create("stop-2", SOURCE, voice="narrator")
        app.create("stop-3", SOURCE, voice="narrator")
        fallbacks = app.fallbacks()
        assert [f["video_id"] for f in fallbacks[:3]] == ["stop-3", "stop-2", "stop-1"]
        # Once open, the service is not even tried.
        assert [f["data"]["code"] for f in fallbacks[:2]] == ["breaker_open", "breaker_open"]
        assert app.get("/strangler/events")["counters"]["tts"]["fallback"] == 3
    finally:
        stack.start_api()
    # The events waited in the app's buffer and arrive once the service is back: /events and /metrics count them.
    wait_for(lambda: service_fallbacks(stack) == before + 3, timeout=60, what="the buffered fallbacks")
    assert metric(stack, "strangler_bridge_events_total", phase="tts", kind="fallback") == before + 3
    with stack.client() as client:
        breakers = client.get("/events/breakers").raise_for_status().json()["breakers"]
    tts = [b for b in breakers if b["phase"] == "tts"]
    assert tts and tts[0]["state"] == "open" and tts[0]["failures"] >= 3
    assert set(tts[0]) == {"source", "phase", "state", "since", "failures"}
    assert metric(stack, "strangler_bridge_breakers", phase="tts", state="open") == 1


# --- the API paused -----------------------------------------------------------------------------------------


def test_with_the_api_paused_the_breaker_opens_and_nothing_is_created_when_it_resumes(
    stack: DevStack, legacy_app: LegacyFactory
) -> None:
    set_flags(stack, tts="fastapi")
    app = legacy_app()
    _assert_tts_service_mode(app)
    runs = service_runs(stack)
    assert stack.api is not None
    group = stack.api.proc.pid  # the API runs in its own process group
    os.killpg(group, signal.SIGSTOP)
    try:
        app.create("pause-1", SOURCE, voice="narrator")
        assert app.breaker() == "open"
        app.create("pause-2", SOURCE, voice="narrator")
        fallbacks = app.fallbacks()
        assert [f["video_id"] for f in fallbacks[:2]] == ["pause-2", "pause-1"]
        assert fallbacks[0]["data"]["code"] == "breaker_open"
        # The requests the paused API may still read say when the app stopped waiting for them.
        gave_up = time.time()
        wait_for(lambda: time.time() > gave_up + 3, timeout=10, what="the app's last give-up time to pass")
    finally:
        os.killpg(group, signal.SIGCONT)
    # The API works again; a batch made now completes, and it is the only RunPod job since the pause: the creates
    # the paused API read late were refused, not run for videos the legacy code had already made.
    with stack.client() as client:
        created = client.post("/tts/batch", json=tts_body(2))
        assert created.status_code == 202, created.text
        assert follow(client, f"/tts/batch/{created.json()['id']}")["status"] == "completed"
        recent = client.get("/batches", params={"limit": 50}).raise_for_status().json()
    assert service_runs(stack) == runs + 1
    assert not [item for item in recent["items"] if (item.get("video_id") or "").startswith("pause-")]


# --- the provider stuck -------------------------------------------------------------------------------------


def test_a_stuck_provider_is_given_up_at_the_stall_time_and_its_batch_cancelled(
    stack: DevStack, legacy_app: LegacyFactory
) -> None:
    set_flags(stack, tts="fastapi")
    app = legacy_app(STRANGLER_SERVICE_STALL_S=3)
    _assert_tts_service_mode(app)
    cancels = stack.counters("runpod")["requests"].get("cancel", 0)
    stack.set_knobs("runpod", queue_delay_s=3600.0)  # jobs are accepted, then never leave the queue
    try:
        body = app.create("stuck-1", SOURCE, voice="narrator")
        assert body["segments"] == CHUNKS
        fallback = app.fallbacks()[0]
        assert (fallback["video_id"], fallback["data"]["code"]) == ("stuck-1", "step_stalled")
        assert app.breaker() == "open"
        (batch_id,) = fallback["data"]["abandoned"]
        with stack.client() as client:
            status = follow(client, f"/tts/batch/{batch_id}", timeout=30)
        assert status["status"] == "cancelled"
        wait_for(
            lambda: stack.counters("runpod")["requests"].get("cancel", 0) == cancels + 1,
            timeout=30,
            what="RunPod's cancel of the stuck job",
        )
        runs = service_runs(stack)
    finally:
        stack.set_knobs("runpod", queue_delay_s=0.0)
    # After the cancel nothing more is submitted for that batch: a batch made later completes, and RunPod got
    # exactly its one job.
    with stack.client() as client:
        created = client.post("/tts/batch", json=tts_body(2))
        assert follow(client, f"/tts/batch/{created.json()['id']}")["status"] == "completed"
        assert client.get(f"/tts/batch/{batch_id}").json()["status"] == "cancelled"
    assert service_runs(stack) == runs + 1


# --- flags ----------------------------------------------------------------------------------------------------


def test_a_flag_flip_after_an_outage_reaches_every_request_of_a_burst(
    stack: DevStack, legacy_app: LegacyFactory
) -> None:
    set_flags(stack)  # all legacy
    cache_s, fetch_s = 1.0, 1.0
    app = legacy_app(STRANGLER_FLAGS_CACHE_S=cache_s)
    assert app.get("/strangler/health")["flags"]["phases"]["tts"]["mode"] == "legacy"
    assert stack.api is not None
    stack.api.stop()
    try:
        app.create("burst-0", SOURCE, voice="narrator")  # during the outage: the last known flags (tts legacy)
    finally:
        stack.start_api()
    set_flags(stack, tts="fastapi")
    flipped = time.monotonic()
    wait_for(lambda: time.monotonic() > flipped + cache_s + fetch_s, timeout=10, what="the promised window")
    runs = service_runs(stack)
    answers: list[int] = []
    burst = [
        threading.Thread(target=lambda n=n: answers.append(len(app.create(f"burst-{n}", SOURCE, voice="narrator"))))
        for n in range(1, 7)
    ]
    for thread in burst:
        thread.start()
    for thread in burst:
        thread.join(120)
    assert len(answers) == 6
    assert service_runs(stack) == runs + 6  # every request of the burst sent its TTS to the service
    assert app.get("/strangler/events")["counters"]["tts"]["service"] == 6


def test_a_batch_its_client_cancelled_resumes_when_the_same_create_comes_again(stack: DevStack) -> None:
    body = TtsBatchCreate.model_validate({**tts_body(2), "video_id": "again-1"})
    with BridgeClient(stack.api_url, stack.token) as client:
        stack.set_knobs("runpod", queue_delay_s=3600.0)
        try:
            first = client.create_tts_batch(body)
            cancelled = client.cancel_tts_batch(first.id)
            assert client.cancel_tts_batch(first.id).status is BatchStatus.CANCELLED  # idempotent
        finally:
            stack.set_knobs("runpod", queue_delay_s=0.0)
        assert (cancelled.status, cancelled.error) == (BatchStatus.CANCELLED, "cancelled by the client")
        again = client.run_tts_batch(body, 60)  # the same request: the same key and body
    assert (again.id, again.status) == (first.id, BatchStatus.COMPLETED)
    with stack.client() as api:
        assert api.post(f"/tts/batch/tts_{'0' * 32}/cancel").status_code == 404
