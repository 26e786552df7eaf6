"""``strangler-bridge api`` serves the app over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from strangler_bridge.cli.processes import wait_http_ok
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.e2e


def test_api_command_serves_health(settings: Settings, children) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    children(["api", "--port", str(port)], settings)
    wait_http_ok(f"http://127.0.0.1:{port}/healthz")
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ready"
