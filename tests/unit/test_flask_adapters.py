"""ImageAdapter, VideoAdapter and JobAdapter: requests built from legacy arguments, results in the legacy shape,
and every mode (legacy, fastapi with and without fallback, shadow match and mismatch) through the step router."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_plugin import Deadline, EventKind, ImageAdapter, JobAdapter, StepCall, StranglerBridge, VideoAdapter
from flask_plugin.media import image_size, mp4_duration
from flask_plugin.testing import FakeService, mp4, png
from strangler_bridge.contracts.flags import FlagMode, PhaseFlag
from strangler_bridge.contracts.images import ImageFormat
from strangler_bridge.contracts.jobs import ImageOptions, VideoOptions
from strangler_bridge.errors import ConfigError, ServiceUnavailable
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit

PROMPTS = ["a bridge at dawn", "a crowd crossing"]
SCRIPT = ["The bridge opened.", "Everyone crossed it slowly."]
bridge = StranglerBridge()
calls: list[str] = []


def _seconds(text: str) -> float:
    return round(0.02 * len(text), 3)  # FakeService's default, so a healthy shadow run matches


# The legacy functions, declared at import time as a legacy module would.
@bridge.step("imagegen", adapter=ImageAdapter(width=256, height=128))
def generate(prompts: list[str], out_dir: Path, video_id: str) -> list[str]:
    calls.append("imagegen")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"image_{index:04d}.png" for index in range(len(prompts))]
    for path in paths:
        path.write_bytes(png(256, 128))
    return [str(path) for path in paths]


@bridge.step("video")
def render(segments: list[dict[str, Any]], out_dir: Path, video_id: str) -> str:
    calls.append("video")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "video.mp4").write_bytes(mp4(max(s["end_s"] for s in segments)))
    return str(out_dir / "video.mp4")


@bridge.step("jobs", adapter=JobAdapter(image_prompt=lambda text, style: f"{style}: {text}"))
def produce(chunks: list[str], voice: str, style: str, out_dir: Path, video_id: str) -> dict[str, Any]:
    calls.append("jobs")
    out_dir.mkdir(parents=True, exist_ok=True)
    segments, start = [], 0.0
    for index, text in enumerate(chunks):
        end = start + _seconds(text)
        segments.append({"index": index, "start_s": start, "end_s": end, "text": text, "prompt": f"{style}: {text}"})
        start = end
    (out_dir / "video.mp4").write_bytes(mp4(start))
    return {"video": str(out_dir / "video.mp4"), "segments": segments, "duration_s": start}


def _segments(n: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "start_s": float(i),
            "end_s": i + 1.0,
            "text": f"segment {i}",
            "audio_url": f"http://legacy.test/media/v/audio/chunk_{i:04d}.wav",
            "image_url": f"http://legacy.test/media/v/images/image_{i:04d}.png",
        }
        for i in range(n)
    ]


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def app(fake: FakeService) -> Iterator[Flask]:
    calls.clear()
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url,
        STRANGLER_SERVICE_TOKEN=fake.token,
        STRANGLER_FLAGS_CACHE_S=0,
        STRANGLER_SERVICE_TIMEOUT_S=5,
        STRANGLER_SHADOW_TIMEOUT_S=5,
    )
    bridge.init_app(app, client=fake.client())
    yield app
    StranglerBridge.state(app).close()


def _events(app: Flask) -> Any:
    return StranglerBridge.state(app).events


def _in(app: Flask, func: Any, *args: Any) -> Any:
    with app.app_context():
        return func(*args)


# --- ImageAdapter -------------------------------------------------------------------------------------


def test_image_request_has_one_image_per_prompt_at_the_legacy_size() -> None:
    adapter = ImageAdapter(width=1024, height=576, model="runware:101@1", style="ink", image_format=ImageFormat.JPG)
    prompts = ["a bridge", {"prompt": "a crowd", "negative_prompt": "blurry", "seed": 7}]
    request = adapter.build_request(StepCall.bind(generate.__wrapped__, (prompts, Path("o"), "v-1"), {}))  # type: ignore[attr-defined]
    assert [(i.index, i.prompt, i.negative_prompt, i.seed) for i in request.images] == [
        (0, "a bridge", None, None),
        (1, "a crowd", "blurry", 7),
    ]
    assert (request.width, request.height, request.model, request.style) == (1024, 576, "runware:101@1", "ink")
    assert (request.format, request.video_id) == (ImageFormat.JPG, "v-1")


def test_imagegen_on_the_service_writes_the_legacy_files(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("imagegen", PhaseFlag(mode=FlagMode.FASTAPI))
    paths = _in(app, generate, PROMPTS, tmp_path / "img", "v-1")
    assert calls == []
    assert paths == [str(tmp_path / "img" / "image_0000.png"), str(tmp_path / "img" / "image_0001.png")]
    assert image_size(paths[0]) == (256, 128)
    [request] = fake.created("/imagegen/batch")
    assert [i.prompt for i in request.images] == PROMPTS
    assert _events(app).count("imagegen", EventKind.SERVICE) == 1


def test_imagegen_falls_back_to_the_legacy_code(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("imagegen", PhaseFlag(mode=FlagMode.FASTAPI))
    fake.fail_next("POST", "/imagegen/batch", 503, times=10)
    assert len(_in(app, generate, PROMPTS, tmp_path, "v-1")) == 2
    assert calls == ["imagegen"]
    assert _events(app).count("imagegen", EventKind.FALLBACK) == 1


def test_imagegen_without_fallback_raises(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("imagegen", PhaseFlag(mode=FlagMode.FASTAPI, fallback=False))
    fake.fail_next("POST", "/imagegen/batch", 503, times=10)
    with pytest.raises(ServiceUnavailable):
        _in(app, generate, PROMPTS, tmp_path, "v-1")
    assert calls == []


def test_imagegen_shadow_matches_then_reports_another_size(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("imagegen", PhaseFlag(mode=FlagMode.SHADOW))
    events = _events(app)
    _in(app, generate, PROMPTS, tmp_path / "1", "v-1")
    wait_for(lambda: events.count("imagegen", EventKind.SHADOW_MATCH) == 1, timeout=10, what="a shadow match")
    fake.image_size_for = lambda width, height: (width // 2, height // 2)
    _in(app, generate, PROMPTS, tmp_path / "2", "v-2")
    wait_for(lambda: events.count("imagegen", EventKind.SHADOW_MISMATCH) == 1, timeout=10, what="a mismatch")
    [event] = events.recent([EventKind.SHADOW_MISMATCH])
    assert event.data["mismatches"] == [
        "image 0 size: legacy 256x128, service 128x64",
        "image 1 size: legacy 256x128, service 128x64",
    ]
    assert calls == ["imagegen", "imagegen"]


def test_image_compare_counts_and_presence(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    good.write_bytes(png(8, 8))
    empty = tmp_path / "b.png"
    empty.touch()
    adapter = ImageAdapter()
    assert adapter.compare([str(good)], [str(good), str(good)]) == ["image count: legacy 1, service 2"]
    assert adapter.compare([str(good)], [str(empty)]) == ["image 0: no file in the service result"]
    assert adapter.compare([str(tmp_path / "gone")], [str(empty)]) == [
        "image 0: no file in the legacy and service result"
    ]
    assert ImageAdapter(check_dimensions=False).compare([str(good)], [str(good)]) == []


# --- VideoAdapter -------------------------------------------------------------------------------------


def test_video_request_carries_the_legacy_media_urls() -> None:
    options = VideoOptions(width=640, height=360, fps=10)
    request = VideoAdapter(options=options).build_request(
        StepCall.bind(render.__wrapped__, (_segments(2), Path("o"), "v-1"), {})  # type: ignore[attr-defined]
    )
    assert request.segments[1].audio_url == "http://legacy.test/media/v/audio/chunk_0001.wav"
    assert request.segments[1].image_url == "http://legacy.test/media/v/images/image_0001.png"
    assert (request.segments[1].start_s, request.segments[1].end_s, request.segments[1].text) == (1.0, 2.0, "segment 1")
    assert (request.options, request.video_id) == (options, "v-1")


def test_video_adapter_can_turn_paths_into_public_urls() -> None:
    class PathsToUrls(VideoAdapter):
        def media_url(self, value: str, call: StepCall) -> str:
            return f"https://cdn.example/{Path(value).name}"

    segments = [{**s, "audio_url": f"/data/a{s['index']}.wav", "image_url": "/data/i.png"} for s in _segments(1)]
    request = PathsToUrls().build_request(StepCall.bind(render.__wrapped__, (segments, Path("o"), "v"), {}))  # type: ignore[attr-defined]
    assert (request.segments[0].audio_url, request.segments[0].image_url) == (
        "https://cdn.example/a0.wav",
        "https://cdn.example/i.png",
    )


def test_video_on_the_service_writes_the_legacy_file(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("video", PhaseFlag(mode=FlagMode.FASTAPI))
    path = _in(app, render, _segments(), tmp_path / "work", "v-1")
    assert path == str(tmp_path / "work" / "video.mp4")
    assert mp4_duration(path) == pytest.approx(3.0)
    assert calls == []
    assert fake.created("/video/render")[0].segments[0].audio_url.startswith("http://legacy.test/media/")


def test_video_with_a_path_instead_of_a_url_falls_back(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("video", PhaseFlag(mode=FlagMode.FASTAPI))
    segments = [{**s, "audio_url": "/local/file.wav"} for s in _segments(1)]
    _in(app, render, segments, tmp_path, "v-1")
    assert calls == ["video"]
    [event] = _events(app).recent([EventKind.FALLBACK])
    assert "audio_url" in event.detail
    assert fake.count("POST", "/video/render") == 0


def test_video_shadow_compares_durations(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("video", PhaseFlag(mode=FlagMode.SHADOW))
    events = _events(app)
    _in(app, render, _segments(), tmp_path / "1", "v-1")
    wait_for(lambda: events.count("video", EventKind.SHADOW_MATCH) == 1, timeout=10, what="a shadow match")
    fake.video_seconds_for = lambda seconds: seconds * 2
    _in(app, render, _segments(), tmp_path / "2", "v-2")
    wait_for(lambda: events.count("video", EventKind.SHADOW_MISMATCH) == 1, timeout=10, what="a mismatch")
    assert events.recent([EventKind.SHADOW_MISMATCH])[0].detail == "video duration: legacy 3.00 s, service 6.00 s"


def test_videos_that_are_not_mp4_are_compared_by_presence(tmp_path: Path) -> None:
    placeholder = tmp_path / "p.mp4"
    placeholder.write_bytes(b"STRANGLER-BRIDGE PLACEHOLDER")
    real = tmp_path / "r.mp4"
    real.write_bytes(mp4(2.0))
    assert VideoAdapter().compare(str(placeholder), str(real)) == []
    assert VideoAdapter().compare(str(real), str(tmp_path / "none.mp4")) == ["video: no file in the service result"]


# --- JobAdapter ---------------------------------------------------------------------------------------


def test_job_request_is_the_whole_script_with_the_legacy_prompts_and_sizes() -> None:
    adapter = JobAdapter(
        images=ImageOptions(width=1024, height=576),
        video=VideoOptions(width=640, height=360, fps=10),
        image_prompt=lambda text, style: f"{style}: {text}",
    )
    call = StepCall.bind(produce.__wrapped__, (SCRIPT, "narrator", "ink", Path("o"), "v-1"), {})  # type: ignore[attr-defined]
    request = adapter.build_request(call)
    assert [(c.index, c.text, c.image_prompt) for c in request.chunks] == [
        (0, SCRIPT[0], f"ink: {SCRIPT[0]}"),
        (1, SCRIPT[1], f"ink: {SCRIPT[1]}"),
    ]
    assert (request.voice, request.image_style, request.video_id) == ("narrator", None, "v-1")
    assert (request.images.height, request.video.fps) == (576, 10)


def test_job_request_without_a_prompt_rule_sends_the_style() -> None:
    call = StepCall.bind(produce.__wrapped__, ([{"text": "Hi.", "voice": "v2"}], "", "ink", Path("o"), "v"), {})  # type: ignore[attr-defined]
    request = JobAdapter().build_request(call)
    assert (request.chunks[0].image_prompt, request.chunks[0].voice, request.image_style) == (None, "v2", "ink")
    assert request.voice == "default"  # an empty legacy voice leaves the service's default


def test_jobs_on_the_service_give_the_legacy_shape(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("jobs", PhaseFlag(mode=FlagMode.FASTAPI))
    work = tmp_path / "work"
    made = _in(app, produce, SCRIPT, "narrator", "ink", work, "v-1")
    assert calls == []
    legacy = _in(app, produce.__wrapped__, SCRIPT, "narrator", "ink", tmp_path / "legacy", "v-1")  # type: ignore[attr-defined]
    assert made.keys() == legacy.keys()
    assert [s.keys() for s in made["segments"]] == [s.keys() for s in legacy["segments"]]
    assert made["segments"] == legacy["segments"]
    assert made["duration_s"] == pytest.approx(legacy["duration_s"])
    assert made["video"] == str(work / "video.mp4")
    assert mp4_duration(made["video"]) == pytest.approx(made["duration_s"], abs=1e-3)
    assert json.loads((work / "segments.json").read_text())["total_duration_s"] == pytest.approx(made["duration_s"])
    assert _events(app).count("jobs", EventKind.SERVICE) == 1


def test_jobs_fall_back_when_the_job_fails(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("jobs", PhaseFlag(mode=FlagMode.FASTAPI))
    fake.fail_batches = True
    made = _in(app, produce, SCRIPT, "narrator", "ink", tmp_path, "v-1")
    assert calls == ["jobs"]
    assert len(made["segments"]) == 2
    [event] = _events(app).recent([EventKind.FALLBACK])
    assert event.data["code"] == "batch_failed"


def test_jobs_shadow_match_and_mismatch(app: Flask, fake: FakeService, tmp_path: Path) -> None:
    fake.set_flag("jobs", PhaseFlag(mode=FlagMode.SHADOW))
    events = _events(app)
    _in(app, produce, SCRIPT, "narrator", "ink", tmp_path / "1", "v-1")
    wait_for(lambda: events.count("jobs", EventKind.SHADOW_MATCH) == 1, timeout=10, what="a shadow match")
    fake.duration_for = lambda text: 10.0
    _in(app, produce, SCRIPT, "narrator", "ink", tmp_path / "2", "v-2")
    wait_for(lambda: events.count("jobs", EventKind.SHADOW_MISMATCH) == 1, timeout=10, what="a mismatch")
    problems = events.recent([EventKind.SHADOW_MISMATCH])[0].data["mismatches"]
    assert problems[0] == f"segment 0 duration: legacy {_seconds(SCRIPT[0]):.2f} s, service 10.00 s"
    assert problems[-1].startswith("video duration: legacy")
    assert calls == ["jobs", "jobs"]


def test_a_job_without_a_render_asks_for_no_video_and_returns_none(fake: FakeService, tmp_path: Path) -> None:
    adapter = JobAdapter(render=False)
    call = StepCall.bind(produce.__wrapped__, (SCRIPT, "narrator", "ink", tmp_path, "v-1"), {})  # type: ignore[attr-defined]
    request = adapter.build_request(call)
    assert request.video is None
    with fake.client() as client:
        made = adapter.run(client, request, tmp_path, Deadline(30))
    assert made["video"] is None
    assert len(made["segments"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segments.json"]


def test_job_compare_counts_segments() -> None:
    assert JobAdapter().compare({"segments": [{}]}, {"segments": []}) == ["segment count: legacy 1, service 0"]


# --- declaring ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adapter", "option"),
    [(ImageAdapter(), "prompts_arg"), (VideoAdapter(), "segments_arg"), (JobAdapter(), "chunks_arg")],
)
def test_a_missing_parameter_is_reported_when_the_step_is_declared(adapter: Any, option: str) -> None:
    with pytest.raises(ConfigError, match=rf"{type(adapter).__name__}\({option}="):

        @StranglerBridge().step(adapter.phase, adapter=adapter)
        def step(items: list[str], out_dir: Path) -> None:
            return None


def test_a_missing_output_directory_is_reported_too() -> None:
    with pytest.raises(ConfigError, match=r"ImageAdapter\(out_dir_arg="):

        @StranglerBridge().step("imagegen")
        def generate(prompts: list[str], folder: Path) -> None:
            return None
