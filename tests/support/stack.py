"""Helpers for end-to-end tests on the dev stack: start it per test, follow batches and jobs to the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.settings import Settings

TERMINAL = {"completed", "failed", "cancelled"}

#: The ``make_stack`` fixture of tests/e2e/conftest.py.
StackFactory = Callable[..., DevStack]


def legacy_stack(redis_url: str, root: Path, prefix: str, token: str, **knobs: Any) -> DevStack:
    """A started stack for the example legacy app's tests, its keys under ``prefix`` of the shared test Redis.

    ``knobs`` are the simulators' (``runpod=``, ``runware=``); stop it, then :func:`forget_keys`. Reuse is off:
    these tests tell which code path made a video from the providers' counters, and every video tells the same
    story (a reused chunk would reach no provider).
    """
    base = Settings.load(
        redis_url=redis_url,
        redis_prefix=prefix,
        artifacts_dir=root / "artifacts",
        api_tokens=[token],
        webhook_secret="test-webhook-secret",
        reconcile_after_s=1.5,
        reconcile_interval_s=0.2,
        tts_group_size=4,
        reuse=False,
    )
    return DevStack(base, log_dir=root / "logs", **knobs).start()


def forget_keys(redis_url: str, prefix: str) -> None:
    """Delete a test's keys (never FLUSHDB: the Redis is shared)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


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
