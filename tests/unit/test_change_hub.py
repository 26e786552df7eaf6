"""ChangeHub.stop is bounded: a listener stuck in closing its pub/sub connection must not hold up shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from fastapi_app.store import changes
from fastapi_app.store.changes import ChangeHub
from strangler_bridge.keys import Keys


async def _stuck(started: asyncio.Event, release: asyncio.Event) -> None:
    # Like a pub/sub close that never completes: cancellation is swallowed until the test releases it.
    started.set()
    while not release.is_set():
        try:
            await release.wait()
        except asyncio.CancelledError:
            continue


def test_stop_gives_up_on_a_listener_that_will_not_stop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(changes, "STOP_S", 0.05)

    async def scenario() -> tuple[bool, bool]:
        started, release = asyncio.Event(), asyncio.Event()
        hub = ChangeHub(client=Any, keys=Keys("p"))  # type: ignore[arg-type]  # the client is never used here
        hub._task = asyncio.create_task(_stuck(started, release))
        await started.wait()
        await hub.stop()
        stuck = not hub._task.done()
        release.set()
        await hub._task
        return stuck, hub._task.done()

    with caplog.at_level(logging.WARNING, logger="fastapi_app.store.changes"):
        stuck, finished_later = asyncio.run(scenario())
    assert stuck and finished_later
    assert "did not stop" in caplog.text
