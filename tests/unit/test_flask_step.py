"""The step router in every mode: legacy, fastapi (with and without fallback) and shadow."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from flask_plugin import EventKind, StranglerBridge, TtsAdapter
from flask_plugin.shadow import ShadowRunner
from flask_plugin.testing import FakeService
from strangler_bridge.audio import tone_wav, wav_duration
from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag
from strangler_bridge.errors import ServiceUnavailable
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit

CHUNKS = ["Once upon a time.", "There was a bridge.", "The end."]


def _legacy_duration(text: str) -> float:
    return round(0.02 * len(text), 3)  # the same as FakeService's default, so a healthy shadow run matches


@dataclass
class Legacy:
    """A legacy TTS function decorated with the bridge, and a record of its calls."""

    bridge: StranglerBridge
    synthesize: Callable[..., list[dict[str, Any]]]
    calls: list[str | None] = field(default_factory=list)


def _declare(bridge: StranglerBridge, calls: list[str | None]) -> Callable[..., list[dict[str, Any]]]:
    @bridge.step("tts")
    def synthesize(chunks: list[str], voice: str, out_dir: Path, video_id: str | None = None) -> list[dict[str, Any]]:
        calls.append(video_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for index, text in enumerate(chunks):
            path = out_dir / f"chunk_{index:04d}.wav"
            path.write_bytes(tone_wav(_legacy_duration(text), sample_rate=8000))
            results.append({"path": str(path), "duration_s": _legacy_duration(text)})
        return results

    return synthesize


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def app(fake: FakeService) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url,
        STRANGLER_SERVICE_TOKEN=fake.token,
        STRANGLER_FLAGS_CACHE_S=0,  # read the fake's flags on every call: flips apply at once
        STRANGLER_SERVICE_TIMEOUT_S=5,
        STRANGLER_SHADOW_TIMEOUT_S=5,
    )
    legacy.bridge.init_app(app, client=fake.client())
    yield app
    StranglerBridge.state(app).close()


legacy = Legacy(StranglerBridge(), lambda *a, **k: [])
# Declared at import time, before any app exists, as a legacy module would.
legacy.synthesize = _declare(legacy.bridge, legacy.calls)


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    legacy.calls.clear()


def _call(app: Flask, out_dir: Path, video_id: str = "vid-1", chunks: list[str] = CHUNKS) -> list[dict[str, Any]]:
    with app.app_context():
        return legacy.synthesize(chunks, "narrator", out_dir, video_id=video_id)


def _events(app: Flask) -> Any:
    return StranglerBridge.state(app).events


# --- legacy -------------------------------------------------------------------------------------------


def test_legacy_mode_runs_only_the_legacy_code(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    result = _call(app, tmp_path)
    assert legacy.calls == ["vid-1"]
    assert [r["duration_s"] for r in result] == [_legacy_duration(t) for t in CHUNKS]
    assert fake.count("POST", "/tts/batch") == 0


def test_outside_an_app_context_the_legacy_code_runs(fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    legacy.synthesize(CHUNKS, "narrator", tmp_path)
    assert legacy.calls == [None]


# --- fastapi ------------------------------------------------------------------------------------------


def test_fastapi_mode_answers_from_the_service_in_the_legacy_shape(
    app: Flask, fake: FakeService, tmp_path: Path
) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    result = _call(app, tmp_path / "out")
    assert legacy.calls == []
    assert [Path(r["path"]).name for r in result] == ["chunk_0000.wav", "chunk_0001.wav", "chunk_0002.wav"]
    assert all(Path(r["path"]).parent == tmp_path / "out" for r in result)
    for row, text in zip(result, CHUNKS, strict=True):
        assert row["duration_s"] == pytest.approx(_legacy_duration(text))
        assert wav_duration(Path(row["path"]).read_bytes()) == pytest.approx(row["duration_s"], abs=0.01)
    assert _events(app).count("tts", EventKind.SERVICE) == 1


def test_fastapi_failure_with_fallback_runs_legacy_and_records_it(
    app: Flask, fake: FakeService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI, fallback=True))
    fake.fail_next("POST", "/tts/batch", 503, times=10)
    with caplog.at_level(logging.WARNING, logger="flask_plugin.step"):
        result = _call(app, tmp_path, video_id="vid-9")
    assert legacy.calls == ["vid-9"]
    assert len(result) == 3
    events = _events(app)
    assert events.count("tts", EventKind.FALLBACK) == 1
    [event] = events.recent([EventKind.FALLBACK])
    # The third 503 in a row opened the tts breaker, which ended the call without a fourth try.
    assert (event.phase, event.video_id, event.data["code"]) == (Phase.TTS, "vid-9", "breaker_open")
    assert "HTTP 503" in event.detail
    assert fake.count("POST", "/tts/batch") == 3
    assert any("running the legacy code" in r.message for r in caplog.records)


def test_slow_service_falls_back(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    fake.polls_to_complete = 2

    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer in time", request=request)

    for _ in range(3):
        fake.script("GET", "/tts/batch/", too_slow)
    _call(app, tmp_path)
    assert legacy.calls == ["vid-1"]
    event = _events(app).recent([EventKind.FALLBACK])[0]
    assert (event.data["code"], "ReadTimeout" in event.detail) == ("breaker_open", True)  # three timeouts in a row


def test_failed_batch_falls_back(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    fake.fail_batches = True
    _call(app, tmp_path)
    assert legacy.calls == ["vid-1"]
    assert _events(app).count("tts", EventKind.FALLBACK) == 1


def test_fastapi_failure_without_fallback_raises(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI, fallback=False))
    fake.fail_next("POST", "/tts/batch", 503, times=10)
    with pytest.raises(ServiceUnavailable):
        _call(app, tmp_path)
    assert legacy.calls == []


def test_allow_list_and_rollout_choose_per_video(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI, percent=0, allow=["vip"]))
    _call(app, tmp_path / "a", video_id="vip")
    _call(app, tmp_path / "b", video_id="someone-else")
    assert legacy.calls == ["someone-else"]
    assert fake.count("POST", "/tts/batch") == 1


def test_rollout_is_sticky_per_video(app: Flask, fake: FakeService) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI, percent=30))
    with app.app_context():
        first = [legacy.bridge.mode("tts", f"video-{i}") for i in range(400)]
        again = [legacy.bridge.mode("tts", f"video-{i}") for i in range(400)]
    assert first == again
    assert 0.2 < first.count(FlagMode.FASTAPI) / len(first) < 0.4


def test_a_flag_flip_applies_without_restart(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    _call(app, tmp_path / "1")
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    _call(app, tmp_path / "2")
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.LEGACY))
    _call(app, tmp_path / "3")
    assert legacy.calls == ["vid-1", "vid-1"]
    assert fake.count("POST", "/tts/batch") == 1


def test_a_broken_adapter_never_breaks_the_legacy_call(fake: FakeService, tmp_path: Path) -> None:
    class Broken(TtsAdapter):
        def video_id(self, call: Any) -> str | None:
            raise KeyError("oops")

    bridge, calls = StranglerBridge(), []

    @bridge.step("tts", adapter=Broken())
    def synthesize(chunks: list[str], out_dir: Path) -> list[str]:
        calls.append(1)
        return ["legacy"]

    app = Flask(__name__)
    app.config.update(STRANGLER_SERVICE_URL=fake.base_url, STRANGLER_SERVICE_TOKEN=fake.token)
    bridge.init_app(app, client=fake.client())
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    with app.app_context():
        assert synthesize(CHUNKS, tmp_path) == ["legacy"]


# --- shadow -------------------------------------------------------------------------------------------


def test_shadow_returns_the_legacy_result_without_waiting_for_the_service(
    app: Flask, fake: FakeService, tmp_path: Path
) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW))
    fake.gate = threading.Event()  # the service cannot answer any TTS request until the test opens it
    result = _call(app, tmp_path)
    # The call has returned while the service was held shut, so it did not wait for the service.
    assert not fake.gate.is_set()
    assert legacy.calls == ["vid-1"]
    assert [r["path"] for r in result] == [str(tmp_path / f"chunk_{i:04d}.wav") for i in range(3)]
    assert fake.entered.wait(5), "the shadow request never reached the service"
    events = _events(app)
    assert events.count("tts", EventKind.SHADOW_MATCH) == 0
    fake.gate.set()
    wait_for(lambda: events.count("tts", EventKind.SHADOW_MATCH) == 1, timeout=10, what="the shadow comparison")
    assert events.recent() == []  # a match is counted, not listed


def test_shadow_mismatch_is_recorded_with_details(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW))
    fake.duration_for = lambda text: 5.0
    _call(app, tmp_path)
    events = _events(app)
    wait_for(lambda: events.count("tts", EventKind.SHADOW_MISMATCH) == 1, timeout=10, what="the mismatch")
    [event] = events.recent([EventKind.SHADOW_MISMATCH])
    assert event.video_id == "vid-1"
    assert len(event.data["mismatches"]) == 3
    assert "chunk 0 duration" in event.detail


def test_small_duration_differences_are_within_tolerance() -> None:
    adapter = TtsAdapter()
    legacy_rows = [{"duration_s": 2.0}, {"duration_s": 0.5}]
    assert adapter.compare(legacy_rows, [{"duration_s": 2.25}, {"duration_s": 0.7}]) == []
    assert adapter.compare(legacy_rows, [{"duration_s": 2.5}, {"duration_s": 0.5}]) == [
        "chunk 0 duration: legacy 2.00 s, service 2.50 s"
    ]
    assert adapter.compare(legacy_rows, legacy_rows[:1]) == ["chunk count: legacy 2, service 1"]


def test_shadow_service_error_is_recorded_and_never_raised(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW))
    fake.fail_batches = True
    result = _call(app, tmp_path)
    assert len(result) == 3
    events = _events(app)
    wait_for(lambda: events.count("tts", EventKind.SHADOW_ERROR) == 1, timeout=10, what="the shadow error")
    assert events.recent([EventKind.SHADOW_ERROR])[0].data["code"] == "batch_failed"


def test_shadow_output_goes_to_a_temporary_directory_that_is_removed(
    app: Flask, fake: FakeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW))
    out = tmp_path / "out"
    _call(app, out)
    events = _events(app)
    wait_for(lambda: events.count("tts", EventKind.SHADOW_MATCH) == 1, timeout=10, what="the shadow comparison")
    assert fake.count("GET", "/tts/batch/") == 3  # the shadow run did download the three chunks
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == ["chunk_0000.wav", "chunk_0001.wav", "chunk_0002.wav"]


def test_shadow_work_beyond_the_bound_is_skipped(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    state = StranglerBridge.state(app)
    state.shadow.close()
    state.shadow = ShadowRunner(workers=1, max_pending=1)
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW))
    fake.gate = threading.Event()
    _call(app, tmp_path / "1")
    assert fake.entered.wait(5)  # the only worker is busy, held by the service
    _call(app, tmp_path / "2")  # queued
    _call(app, tmp_path / "3")  # no room: skipped, and the call still returns at once
    assert state.events.count("tts", EventKind.SHADOW_SKIPPED) == 1
    assert len(legacy.calls) == 3
    fake.gate.set()
    wait_for(lambda: state.events.count("tts", EventKind.SHADOW_MATCH) == 2, timeout=10, what="both shadow runs")


def test_a_legacy_error_propagates_and_nothing_is_shadowed(fake: FakeService, tmp_path: Path) -> None:
    bridge = StranglerBridge()

    @bridge.step("tts")
    def synthesize(chunks: list[str], out_dir: Path) -> list[str]:
        raise RuntimeError("RunPod said no")

    app = Flask(__name__)
    app.config.update(STRANGLER_SERVICE_URL=fake.base_url, STRANGLER_SERVICE_TOKEN=fake.token)
    bridge.init_app(app, client=fake.client())
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW))
    with app.app_context(), pytest.raises(RuntimeError, match="RunPod said no"):
        synthesize(CHUNKS, tmp_path)
    StranglerBridge.state(app).close()
    assert fake.count("POST", "/tts/batch") == 0
