"""Work the Flask side gives up on is cancelled on the service, in the background; an open breaker skips it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_plugin import EventKind, StranglerBridge
from flask_plugin.testing import FakeService
from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit

bridge = StranglerBridge()
calls: list[str | None] = []


@bridge.step("tts")
def synthesize(chunks: list[str], voice: str, out_dir: Path, video_id: str | None = None) -> list[dict[str, Any]]:
    calls.append(video_id)
    return [{"path": str(out_dir / f"{n}.wav"), "duration_s": 1.0} for n, _ in enumerate(chunks)]


@pytest.fixture
def fake() -> FakeService:
    service = FakeService(polls_to_complete=10**6)  # the service's work never finishes
    service.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    return service


@pytest.fixture
def app(fake: FakeService) -> Iterator[Flask]:
    calls.clear()
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url,
        STRANGLER_SERVICE_TOKEN=fake.token,
        STRANGLER_FLAGS_CACHE_S=0,
        STRANGLER_SERVICE_STALL_S=0.3,
    )
    bridge.init_app(app, client=fake.client())
    yield app
    StranglerBridge.state(app).close()


def _call(app: Flask, video_id: str, tmp_path: Path) -> list[dict[str, Any]]:
    with app.app_context():
        return synthesize(["One.", "Two."], "narrator", tmp_path, video_id=video_id)


def _posts(fake: FakeService, suffix: str) -> int:
    return sum(1 for method, path in list(fake.calls) if method == "POST" and path.endswith(suffix))


def _cancels(fake: FakeService) -> int:
    return _posts(fake, "/cancel")


def test_a_stalled_step_falls_back_opens_the_breaker_and_cancels_its_batch(
    app: Flask, fake: FakeService, tmp_path: Path
) -> None:
    _call(app, "vid-1", tmp_path)
    assert calls == ["vid-1"]  # the legacy code answered
    state = StranglerBridge.state(app)
    (event,) = state.events.recent([EventKind.FALLBACK])
    assert event.data["code"] == "step_stalled"
    (batch_id,) = event.data["abandoned"]
    wait_for(lambda: _cancels(fake) == 1, timeout=10, what="the cancel of the abandoned batch")
    assert fake.client().get_tts_batch(batch_id).status.value == "cancelled"
    assert state.breaker(Phase.TTS).snapshot().state.value == "open"
    # With the breaker open the next call never reaches the service.
    creates = _posts(fake, "/tts/batch")
    _call(app, "vid-2", tmp_path)
    assert calls == ["vid-1", "vid-2"]
    assert _posts(fake, "/tts/batch") == creates
    assert state.events.recent([EventKind.FALLBACK])[0].data["code"] == "breaker_open"


def test_shutting_down_cancels_the_work_of_steps_still_waiting(fake: FakeService, tmp_path: Path) -> None:
    calls.clear()
    app = Flask(__name__)
    app.config.update(STRANGLER_SERVICE_URL=fake.base_url, STRANGLER_SERVICE_TOKEN=fake.token)
    bridge.init_app(app, client=fake.client())
    waiting = threading.Thread(target=_call, args=(app, "vid-3", tmp_path))
    waiting.start()
    wait_for(lambda: fake.count("GET", "/tts/batch/") >= 1, timeout=10, what="the step to be waiting")
    StranglerBridge.state(app).close()
    assert _cancels(fake) == 1
    waiting.join(10)
    assert calls == ["vid-3"]  # the abandoned step fell back to the legacy code
