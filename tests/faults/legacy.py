"""The "service down entirely" scenario: the legacy Flask app keeps making videos through its fallback.

The service's API and workers are stopped; the example legacy app (``examples/legacy_app``) is served over real
HTTP with ``STRANGLER_SERVICE_URL`` pointing at the stopped API, the ``tts`` flag at ``fastapi`` with ``fallback``
on (static config: the service cannot be asked), and its legacy provider code talking to the same simulators.
Each ``POST /api/video/create`` must still publish a video, made by the legacy code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from werkzeug.serving import WSGIRequestHandler, make_server

from strangler_bridge.cli.devstack import SIM_KEY, DevStack
from strangler_bridge.cli.redis_server import RedisServer, free_port
from tests.faults.harness import (
    BASE_RUNPOD,
    BASE_RUNWARE,
    BASE_VIDEO,
    CHUNKS_PER_JOB,
    TOKEN,
    Outcome,
    base_settings,
    extra_executions,
)

if TYPE_CHECKING:
    from flask import Flask

    from tests.faults.harness import Scenario


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without its access log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing."""


@contextmanager
def serve_wsgi(app: Flask) -> Iterator[str]:
    """Serve a WSGI app on loopback in a thread (threaded: the video service fetches media while a request runs)."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="legacy-app", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def legacy_config(stack: DevStack, workdir: Path, public_url: str) -> dict[str, Any]:
    """The legacy app's config: simulators for its own provider calls, the stopped service for the bridge."""
    return {
        "OUTPUT_DIR": str(workdir / "legacy-output"),
        "PUBLIC_URL": public_url,
        "RUNPOD_ENDPOINT_URL": f"{stack.servers['runpod'].url}/v2/sim",
        "RUNPOD_API_KEY": SIM_KEY,
        "RUNWARE_URL": f"{stack.servers['runware'].url}/v1",
        "RUNWARE_API_KEY": SIM_KEY,
        "VIDEO_SERVICE_URL": stack.servers["video"].url,
        "HTTP_TIMEOUT_S": 30.0,
        "STEP_TIMEOUT_S": 60.0,
        "POLL_INTERVAL_S": 0.05,
        "STRANGLER_SERVICE_URL": stack.api_url,
        "STRANGLER_SERVICE_TOKEN": TOKEN,
        "STRANGLER_SERVICE_TIMEOUT_S": 10.0,
        "STRANGLER_FLAGS_CACHE_S": 0,
        "STRANGLER_FLAGS": {"tts": {"mode": "fastapi", "fallback": True}},
    }


def _source(number: int) -> str:
    return " ".join(f"Fallback job {number} sentence {k}." for k in range(CHUNKS_PER_JOB))


def _published(client: httpx.Client, body: dict[str, Any]) -> int:
    """Lost files of one video: the published MP4, its segments.json and its audio, fetched from the app."""
    video_id = body["video_id"]
    urls = [body["video_url"], f"/media/{video_id}/segments.json"]
    urls += [f"/media/{video_id}/audio/chunk_{k:04d}.wav" for k in range(CHUNKS_PER_JOB)]
    lost = 0
    for url in urls:
        response = client.get(url)
        if response.status_code != 200 or not response.content:
            lost += 1
    return lost


def run_fallback(scenario: Scenario, jobs: int, workdir: Path) -> Outcome:
    """Make ``jobs`` videos through the legacy app while the service is down; count what came out."""
    from examples.legacy_app import create_app
    from flask_plugin import StranglerBridge

    workdir.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(scenario=scenario.key, submitted=jobs, in_flight_at_fault=jobs)
    started = time.monotonic()
    redis = RedisServer().start()
    stack = DevStack(
        base_settings(redis.url, workdir, scenario.settings),
        workers=1,
        runpod={**BASE_RUNPOD, **scenario.runpod},
        runware={**BASE_RUNWARE, **scenario.runware},
        video={**BASE_VIDEO, **scenario.video},
        log_dir=workdir / "logs",
    )
    try:
        stack.start()
        for child in [*stack.workers, stack.api]:
            if child is not None:
                child.stop()
        outcome.notes.append("API and workers stopped before the first request")
        app = create_app(legacy_config(stack, workdir, "http://placeholder"))
        try:
            with serve_wsgi(app) as url:
                app.config["PUBLIC_URL"] = url
                with httpx.Client(base_url=url, timeout=120.0) as client, ThreadPoolExecutor(4) as pool:
                    requests = [{"source_text": _source(n), "video_id": f"fallback-{n}"} for n in range(jobs)]
                    responses = list(pool.map(lambda body: client.post("/api/video/create", json=body), requests))
                    for response in responses:
                        if response.status_code == 201:
                            outcome.completed += 1
                            outcome.lost += _published(client, response.json())
                        else:
                            error = response.json().get("error", {})
                            outcome.failures[f"HTTP {response.status_code}: {error.get('message', response.text)}"] += 1
                    fallbacks = client.get("/strangler/events").json()["counters"]["tts"]["fallback"]
                    outcome.facts["fallbacks"] = fallbacks
                    outcome.notes.append(f"{fallbacks} of {jobs} requests fell back from the service to legacy TTS")
        finally:
            StranglerBridge.state(app).close()
        outcome.duplicates = {
            "runpod": extra_executions(stack.counters("runpod")["executions_by_input"], jobs * CHUNKS_PER_JOB),
            "runware": extra_executions(stack.counters("runware")["executed_by_task"], jobs * CHUNKS_PER_JOB),
            "video": extra_executions(stack.counters("video")["renders_executed"], jobs),
        }
    finally:
        outcome.seconds = time.monotonic() - started
        stack.stop()
        redis.close()
    return outcome
