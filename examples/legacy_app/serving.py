"""The example app served on loopback and wired to a local stack: what the demo, the tests and the benchmarks share.

The video service fetches the app's ``/media`` files over HTTP, so the app must really listen; ``PUBLIC_URL`` is
set to where it does.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from flask import Flask
from werkzeug.serving import make_server

from flask_plugin import StranglerBridge
from strangler_bridge.cli.devstack import SIM_KEY, DevStack

from .app import create_app


def stack_config(stack: DevStack, output: Path, *, runpod_url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The app's config for ``stack``: its legacy code on the stack's simulators, its bridge on the stack's API.

    ``runpod_url`` gives the legacy code a RunPod endpoint of its own (default: the stack's); ``overrides`` win.
    """
    return {
        "OUTPUT_DIR": str(output),
        "RUNPOD_ENDPOINT_URL": runpod_url or stack.settings.runpod_endpoint_url,
        "RUNPOD_API_KEY": SIM_KEY,
        "RUNWARE_URL": stack.settings.runware_url,
        "RUNWARE_API_KEY": SIM_KEY,
        "VIDEO_SERVICE_URL": stack.settings.video_url,
        "POLL_INTERVAL_S": 0.05,
        "STRANGLER_SERVICE_URL": stack.api_url,
        "STRANGLER_SERVICE_TOKEN": stack.token,
        "STRANGLER_FLAGS_CACHE_S": 0,  # the next request sees a flag change
        **overrides,
    }


class ServedApp:
    """The example app (built from ``config``) on a loopback port (``port``, or a free one) in a daemon thread; a
    context manager. A fixed port lets the config name the app's own URL (``STRANGLER_CALLBACK_RECEIVER_URL``)."""

    def __init__(self, config: dict[str, Any], *, quiet: bool = False, port: int = 0) -> None:
        self.app: Flask = create_app(config)
        self.output = Path(config["OUTPUT_DIR"])
        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        if quiet:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines over progress bars
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.app.config["PUBLIC_URL"] = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, name="legacy-app", daemon=True)
        self.thread.start()

    def create(self, video_id: str, source_text: str, *, timeout_s: float = 120, **fields: Any) -> dict[str, Any]:
        """``POST /api/video/create``; the 201 body, or :class:`RuntimeError` with the answer."""
        body = {"source_text": source_text, "video_id": video_id, **fields}
        response = httpx.post(f"{self.url}/api/video/create", json=body, timeout=timeout_s)
        if response.status_code != 201:
            raise RuntimeError(f"video {video_id} failed: {response.status_code} {response.text[:300]}")
        created: dict[str, Any] = response.json()
        return created

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """A JSON view of the app (``/strangler/health``, ``/strangler/events``)."""
        answer: dict[str, Any] = httpx.get(f"{self.url}{path}", params=params, timeout=30).raise_for_status().json()
        return answer

    def count(self, phase: str, kind: str) -> int:
        """One of the bridge's counters (``service``, ``fallback``, ``shadow_match`` ...), from its events view."""
        return int(self.get("/strangler/events")["counters"][phase][kind])

    def fallbacks(self, limit: int = 50) -> list[dict[str, Any]]:
        """The app's recent fallbacks, newest first."""
        found: list[dict[str, Any]] = self.get("/strangler/events", limit=limit)["fallbacks"]
        return found

    def breaker(self, phase: str = "tts") -> str:
        """The state of ``phase``'s circuit breaker."""
        state: str = self.get("/strangler/health")["breakers"][phase]["state"]
        return state

    def close(self) -> None:
        """Stop serving and close the bridge (its background threads and clients)."""
        self.server.shutdown()
        self.thread.join(10)
        StranglerBridge.state(self.app).close()

    def __enter__(self) -> ServedApp:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
