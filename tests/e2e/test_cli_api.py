"""``strangler-bridge api`` serves the app over real HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.cli.processes import wait_http_ok
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.e2e


def test_api_command_serves_health(settings: Settings, children) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    children(["api", "--port", str(port)], settings)
    wait_http_ok(f"http://127.0.0.1:{port}/healthz")
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ready"


def test_api_command_exits_when_its_port_is_taken(settings: Settings, children) -> None:  # type: ignore[no-untyped-def]
    # It used to log the bind error and then never exit: its change listener, cancelled inside a pub/sub read,
    # stayed pending and asyncio waited for it forever. A supervisor (or DevStack) must see the exit.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api = children(["api", "--port", str(taken.getsockname()[1])], settings)
        code = api.proc.wait(timeout=60)
    assert code != 0
    assert "address already in use" in api.output()
    assert "did not stop" not in api.output()


def test_a_dev_stack_whose_api_port_was_taken_starts_the_api_on_another(settings: Settings, tmp_path: Path) -> None:
    stack = DevStack(settings, workers=0, log_dir=tmp_path / "stack")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", stack.api_port))
        taken.listen()
        with stack:
            assert stack.api_port != taken.getsockname()[1]
            assert httpx.get(f"{stack.api_url}/readyz").json()["status"] == "ready"
            assert stack.settings.public_url.endswith(f":{stack.api_port}")
