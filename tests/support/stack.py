"""Helpers for end-to-end tests on the dev stack: start it per test, follow batches and jobs to the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from strangler_bridge.cli.devstack import DevStack

TERMINAL = {"completed", "failed", "cancelled"}

#: The ``make_stack`` fixture of tests/e2e/conftest.py.
StackFactory = Callable[..., DevStack]


def follow(client: httpx.Client, path: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Long-poll ``path`` (a batch or job) until it is terminal; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = client.get(path).raise_for_status().json()
    while status["status"] not in TERMINAL:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{path} still {status['status']} after {timeout} s: {status}")
        wait = min(remaining, 10.0)
        status = client.get(path, params={"wait": wait, "since": status["version"]}).raise_for_status().json()
    return status


def tts_body(n: int, *, words: int = 3) -> dict[str, Any]:
    """A TTS batch of ``n`` chunks of varying length."""
    return {"chunks": [{"text": " ".join(["word"] * (words + i % 4)) + f" {i}."} for i in range(n)], "voice": "v1"}


def create(stack: DevStack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a create request and return its status."""
    with stack.client() as client:
        response = client.post(path, json=body)
        assert response.status_code == 202, response.text
        created: dict[str, Any] = response.json()
        return created
