"""The ``/strangler`` blueprint's JSON: health with the effective flags, and recent fallbacks and mismatches."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from flask import Flask

from flask_plugin import EventKind, StranglerBridge
from flask_plugin.testing import FakeService
from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag

pytestmark = pytest.mark.unit


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def app(fake: FakeService) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url,
        STRANGLER_SERVICE_TOKEN=fake.token,
        STRANGLER_FLAGS_CACHE_S=0,
        STRANGLER_FLAGS={"video": {"mode": "shadow"}},
    )
    StranglerBridge(app, client=fake.client())
    yield app
    StranglerBridge.state(app).close()


def test_health_shows_a_ready_service_and_the_flags_in_force(app: Flask, fake: FakeService) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI, percent=10, allow=["vip"]))
    body = app.test_client().get("/strangler/health").get_json()
    assert body["status"] == "ok"
    assert body["service"]["reachable"] is True
    assert body["service"]["ready"] is True
    assert body["service"]["url"] == fake.base_url
    assert body["flags"]["source"] == "service"
    assert body["flags"]["version"] == fake.flags.version
    assert body["flags"]["phases"]["tts"] == {"mode": "fastapi", "percent": 10, "allow": ["vip"], "fallback": True}
    assert set(body["flags"]["phases"]) == {p.value for p in Phase}


def test_health_with_a_video_id_shows_the_mode_it_gets(app: Flask, fake: FakeService) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI, percent=0, allow=["vip"]))
    phases = app.test_client().get("/strangler/health?video_id=vip").get_json()["flags"]["phases"]
    assert phases["tts"]["effective"] == "fastapi"
    other = app.test_client().get("/strangler/health?video_id=nobody").get_json()["flags"]["phases"]
    assert other["tts"]["effective"] == "legacy"


def test_health_of_an_unreachable_service_is_degraded_with_static_flags(app: Flask, fake: FakeService) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    for path in ("/readyz", "/flags"):
        fake.script("GET", path, refuse)
    response = app.test_client().get("/strangler/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["service"]["reachable"] is False
    assert "cannot reach the service" in body["service"]["error"]
    assert body["flags"]["source"] == "static"
    assert body["flags"]["phases"]["video"]["mode"] == "shadow"
    assert "cannot reach" in body["flags"]["error"]


def test_health_never_shows_the_token(app: Flask, fake: FakeService) -> None:
    assert fake.token not in app.test_client().get("/strangler/health").get_data(as_text=True)


def test_events_view_lists_fallbacks_and_shadow_problems_with_counters(app: Flask) -> None:
    events = StranglerBridge.state(app).events
    events.record(EventKind.FALLBACK, Phase.TTS, "vid-1", "service HTTP 503", {"code": "service_unavailable"})
    events.record(EventKind.SHADOW_MATCH, Phase.TTS, "vid-2")
    events.record(EventKind.SHADOW_MISMATCH, Phase.TTS, "vid-3", "chunk count: legacy 3, service 2")
    body = app.test_client().get("/strangler/events").get_json()
    assert body["counters"]["tts"]["fallback"] == 1
    assert body["counters"]["tts"]["shadow_match"] == 1
    assert body["counters"]["imagegen"]["fallback"] == 0
    [fallback] = body["fallbacks"]
    assert (fallback["kind"], fallback["video_id"], fallback["data"]["code"]) == (
        "fallback",
        "vid-1",
        "service_unavailable",
    )
    assert [e["video_id"] for e in body["shadow"]] == ["vid-3"]
    assert body["shadow"][0]["at"].endswith("+00:00")


def test_events_view_limit(app: Flask) -> None:
    events = StranglerBridge.state(app).events
    for n in range(5):
        events.record(EventKind.FALLBACK, Phase.TTS, f"vid-{n}")
    body = app.test_client().get("/strangler/events?limit=2").get_json()
    assert [e["video_id"] for e in body["fallbacks"]] == ["vid-4", "vid-3"]
