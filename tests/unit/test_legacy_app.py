"""The example legacy app: its requests-based provider calls, and the pipeline with the bridge in each mode.

RunPod, Runware and the video service are mocked with ``responses`` (the legacy code uses requests); the
strangler-bridge service with respx routed to ``FakeService`` (the bridge uses httpx).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import respx
from flask import Flask

from examples.legacy_app import create_app
from examples.legacy_app import images as legacy_images
from examples.legacy_app import tts as legacy_tts
from examples.legacy_app import video as legacy_video
from examples.legacy_app.errors import StepFailed
from flask_plugin import EventKind, StranglerBridge
from flask_plugin.testing import FakeService
from strangler_bridge.audio import tone_wav, wav_duration
from strangler_bridge.contracts.flags import FlagMode, PhaseFlag
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit

RUNPOD = "https://api.runpod.ai/v2/tts-endpoint"
RUNWARE = "https://api.runware.ai/v1"
VIDEO = "http://video.test"
PNG = b"\x89PNG\r\n\x1a\n-fake-image"
MP4 = b"\x00\x00\x00\x18ftypmp42-fake-video"
SOURCE = "The bridge opened. Traffic moved slowly at first! Then everyone crossed."


def _duration(text: str) -> float:
    return round(0.01 * len(text), 3)


class Providers:
    """Fake RunPod, Runware and video service on ``responses``, recording what they were asked."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.rsps = rsps
        self.runpod_inputs: list[dict[str, Any]] = []
        self.runware_tasks: list[dict[str, Any]] = []
        self.renders: list[dict[str, Any]] = []
        self.runsync_status = "COMPLETED"
        rsps.add_callback(responses.POST, f"{RUNPOD}/runsync", callback=self._runsync)
        rsps.add_callback(responses.POST, RUNWARE, callback=self._runware)
        rsps.add(responses.GET, re.compile(r"https://im\.runware\.test/.+"), body=PNG)
        rsps.add_callback(responses.POST, f"{VIDEO}/renders", callback=self._render)
        rsps.add(responses.GET, re.compile(rf"{VIDEO}/renders/[^/]+/video"), body=MP4)
        rsps.add(responses.GET, re.compile(rf"{VIDEO}/renders/[^/]+$"), json={"status": "completed", "progress": 1})

    def _runsync(self, request: Any) -> tuple[int, dict[str, str], str]:
        assert request.headers["Authorization"] == "Bearer rp-key"
        job_input = json.loads(request.body)["input"]
        self.runpod_inputs.append(job_input)
        chunks = [
            {
                "index": c["index"],
                "duration_s": _duration(c["text"]),
                "audio_base64": base64.b64encode(tone_wav(_duration(c["text"]), sample_rate=8000)).decode(),
            }
            for c in job_input["chunks"]
        ]
        body = {"id": f"sync-{len(self.runpod_inputs)}", "status": self.runsync_status, "output": {"chunks": chunks}}
        return 200, {}, json.dumps(body)

    def _runware(self, request: Any) -> tuple[int, dict[str, str], str]:
        assert request.headers["Authorization"] == "Bearer rw-key"
        tasks = json.loads(request.body)
        self.runware_tasks.extend(tasks)
        data = [
            {
                "taskType": "imageInference",
                "taskUUID": t["taskUUID"],
                "imageUUID": f"img-{n}",
                "imageURL": f"https://im.runware.test/{t['taskUUID']}.png",
            }
            for n, t in enumerate(tasks)
        ]
        return 200, {}, json.dumps({"data": data})

    def _render(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        self.renders.append(body)
        return 202, {}, json.dumps({"id": body["render_id"], "status": "queued", "progress": 0})


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def providers(rsps: responses.RequestsMock) -> Providers:
    return Providers(rsps)


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService(duration_for=_duration)
    with respx.mock(assert_all_called=False) as router:
        router.route(host="service.test").mock(side_effect=fake.handle)
        yield fake


@pytest.fixture
def app(tmp_path: Path, service: FakeService) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "OUTPUT_DIR": str(tmp_path / "output"),
            "PUBLIC_URL": "http://legacy.test",
            "RUNPOD_ENDPOINT_URL": RUNPOD,
            "RUNPOD_API_KEY": "rp-key",
            "RUNWARE_API_KEY": "rw-key",
            "VIDEO_SERVICE_URL": VIDEO,
            "POLL_INTERVAL_S": 0,
            "STRANGLER_SERVICE_URL": "http://service.test",
            "STRANGLER_SERVICE_TOKEN": service.token,
            "STRANGLER_FLAGS_CACHE_S": 0,
        }
    )
    yield app
    StranglerBridge.state(app).close()


# --- the legacy provider calls ------------------------------------------------------------------------


def test_legacy_tts_calls_runsync_per_chunk_and_writes_wavs(app: Flask, providers: Providers, tmp_path: Path) -> None:
    with app.app_context():
        result = legacy_tts.synthesize.__wrapped__(["Hello there.", "Bye."], "narrator", tmp_path, "vid-1")  # type: ignore[attr-defined]
    assert providers.runpod_inputs == [
        {"chunks": [{"index": 0, "text": "Hello there.", "voice": "narrator"}], "format": "wav"},
        {"chunks": [{"index": 1, "text": "Bye.", "voice": "narrator"}], "format": "wav"},
    ]
    assert result == [
        {"path": str(tmp_path / "chunk_0000.wav"), "duration_s": _duration("Hello there.")},
        {"path": str(tmp_path / "chunk_0001.wav"), "duration_s": _duration("Bye.")},
    ]
    assert wav_duration((tmp_path / "chunk_0000.wav").read_bytes()) == pytest.approx(0.12, abs=0.01)


def test_legacy_tts_polls_status_and_fetches_audio_urls(
    app: Flask, rsps: responses.RequestsMock, tmp_path: Path
) -> None:
    rsps.add(responses.POST, f"{RUNPOD}/runsync", json={"id": "job-1", "status": "IN_QUEUE"})
    rsps.add(responses.GET, f"{RUNPOD}/status/job-1", json={"id": "job-1", "status": "IN_PROGRESS"})
    done = {"chunks": [{"index": 0, "duration_s": 0.5, "audio_url": "https://files.test/a.wav"}]}
    rsps.add(responses.GET, f"{RUNPOD}/status/job-1", json={"id": "job-1", "status": "COMPLETED", "output": done})
    rsps.add(responses.GET, "https://files.test/a.wav", body=tone_wav(0.5, sample_rate=8000))
    with app.app_context():
        [row] = legacy_tts.synthesize.__wrapped__(["Hi."], "narrator", tmp_path, "vid-1")  # type: ignore[attr-defined]
    assert row["duration_s"] == 0.5
    assert wav_duration(Path(row["path"]).read_bytes()) == pytest.approx(0.5, abs=0.01)


def test_legacy_tts_failure_carries_runpods_error(app: Flask, rsps: responses.RequestsMock, tmp_path: Path) -> None:
    rsps.add(responses.POST, f"{RUNPOD}/runsync", json={"id": "job-2", "status": "FAILED", "error": "CUDA OOM"})
    with app.app_context(), pytest.raises(StepFailed, match="job-2 ended FAILED: CUDA OOM"):
        legacy_tts.synthesize.__wrapped__(["Hi."], "narrator", tmp_path, "vid-1")  # type: ignore[attr-defined]


def test_legacy_images_send_one_task_per_prompt(app: Flask, providers: Providers, tmp_path: Path) -> None:
    with app.app_context():
        paths = legacy_images.generate(["a bridge at dawn", "a crowd"], tmp_path, "vid-1")
    assert [t["positivePrompt"] for t in providers.runware_tasks] == ["a bridge at dawn", "a crowd"]
    task = providers.runware_tasks[0]
    assert task["taskType"] == "imageInference" and task["model"] == "runware:100@1"
    assert task["width"] % 64 == 0 and task["height"] % 64 == 0
    assert len({t["taskUUID"] for t in providers.runware_tasks}) == 2
    assert [Path(p).read_bytes() for p in paths] == [PNG, PNG]


def test_legacy_images_report_runware_errors(app: Flask, rsps: responses.RequestsMock, tmp_path: Path) -> None:
    errors = {"errors": [{"code": "insufficientCredits", "message": "Insufficient credits"}]}
    rsps.add(responses.POST, RUNWARE, json=errors, status=402)
    with app.app_context(), pytest.raises(StepFailed, match="HTTP 402: Insufficient credits"):
        legacy_images.generate(["x"], tmp_path, "vid-1")


def test_legacy_video_submits_polls_and_downloads(app: Flask, providers: Providers, tmp_path: Path) -> None:
    segments = [{"index": 0, "start_s": 0.0, "end_s": 1.0, "audio_url": "a", "image_url": "i", "text": "t"}]
    with app.app_context():
        path = legacy_video.render(segments, tmp_path, "vid-1")
    [render] = providers.renders
    assert render["render_id"].startswith("vid-1-")
    assert render["segments"] == segments
    assert render["options"]["format"] == "mp4"
    assert Path(path).read_bytes() == MP4


def test_legacy_video_failure(app: Flask, rsps: responses.RequestsMock, tmp_path: Path) -> None:
    rsps.add(responses.POST, f"{VIDEO}/renders", json={"id": "r", "status": "failed", "error": "bad audio"})
    with app.app_context(), pytest.raises(StepFailed, match="bad audio"):
        legacy_video.render([], tmp_path, "vid-1")


def test_legacy_http_errors_surface_as_requests_errors(
    app: Flask, rsps: responses.RequestsMock, tmp_path: Path
) -> None:
    rsps.add(responses.POST, f"{RUNPOD}/runsync", status=401, json={"error": "unauthorized"})
    with app.app_context(), pytest.raises(requests.HTTPError):
        legacy_tts.synthesize.__wrapped__(["Hi."], "narrator", tmp_path, "vid-1")  # type: ignore[attr-defined]


# --- the whole pipeline, with the bridge ----------------------------------------------------------------


def _create(app: Flask, video_id: str = "vid-42", style: str = "") -> Any:
    body = {"source_text": SOURCE, "video_id": video_id, "style": style}
    return app.test_client().post("/api/video/create", json=body)


def test_pipeline_with_legacy_flags_uses_only_the_legacy_code(
    app: Flask, providers: Providers, service: FakeService, tmp_path: Path
) -> None:
    response = _create(app)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["video_url"] == "http://legacy.test/media/published/vid-42.mp4"
    assert body["segments"] == 3
    assert len(providers.runpod_inputs) == 3
    assert service.count("POST", "/tts/batch") == 0
    segments = json.loads((tmp_path / "output" / "vid-42" / "segments.json").read_text())["segments"]
    assert segments[1]["start_s"] == pytest.approx(segments[0]["end_s"])
    [render] = providers.renders
    assert render["segments"][0]["audio_url"] == "http://legacy.test/media/vid-42/audio/chunk_0000.wav"
    assert app.test_client().get("/media/vid-42/audio/chunk_0000.wav").status_code == 200
    assert (tmp_path / "output" / "published" / "vid-42.mp4").read_bytes() == MP4


def test_pipeline_with_tts_on_the_service_never_calls_runpod(
    app: Flask, providers: Providers, service: FakeService, tmp_path: Path
) -> None:
    service.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    response = _create(app)
    assert response.status_code == 201, response.get_json()
    assert providers.runpod_inputs == []
    assert service.count("POST", "/tts/batch") == 1
    audio = sorted(p.name for p in (tmp_path / "output" / "vid-42" / "audio").iterdir())
    assert audio == ["chunk_0000.wav", "chunk_0001.wav", "chunk_0002.wav"]
    assert len(providers.runware_tasks) == 3


def test_pipeline_still_makes_the_video_when_the_service_is_down(
    app: Flask, providers: Providers, service: FakeService
) -> None:
    service.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI, fallback=True))
    service.fail_next("POST", "/tts/batch", 503, times=10)
    response = _create(app)
    assert response.status_code == 201, response.get_json()
    assert len(providers.runpod_inputs) == 3
    assert StranglerBridge.state(app).events.count("tts", EventKind.FALLBACK) == 1
    fallbacks = app.test_client().get("/strangler/events").get_json()["fallbacks"]
    assert fallbacks[0]["video_id"] == "vid-42"


def test_bad_input_is_a_json_400(app: Flask) -> None:
    response = app.test_client().post("/api/video/create", json={"video_id": "../etc", "source_text": "x"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_input"
    assert app.test_client().post("/api/video/create", json={}).status_code == 400


def test_a_failed_step_is_a_json_502_without_a_trace(app: Flask, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{RUNPOD}/runsync", json={"id": "job-3", "status": "FAILED", "error": "boom"})
    response = _create(app)
    assert response.status_code == 502
    assert response.get_json()["error"]["message"] == "tts: RunPod job job-3 ended FAILED: boom"
    assert "Traceback" not in response.get_data(as_text=True)


def test_pipeline_with_images_on_the_service_never_calls_runware(
    app: Flask, providers: Providers, service: FakeService, tmp_path: Path
) -> None:
    service.set_flag("imagegen", PhaseFlag(mode=FlagMode.FASTAPI))
    response = _create(app, style="ink")
    assert response.status_code == 201, response.get_json()
    assert providers.runware_tasks == []
    [batch] = service.created("/imagegen/batch")
    assert batch.images[0].prompt == "ink: The bridge opened."
    assert (batch.width, batch.height) == (legacy_images.WIDTH, legacy_images.HEIGHT)
    pictures = sorted(p.name for p in (tmp_path / "output" / "vid-42" / "images").iterdir())
    assert pictures == ["image_0000.png", "image_0001.png", "image_0002.png"]
    [render] = providers.renders  # the legacy render, fed the service's images through this app's /media
    assert render["segments"][2]["image_url"] == "http://legacy.test/media/vid-42/images/image_0002.png"


def test_pipeline_with_the_render_on_the_service_sends_the_public_media_urls(
    app: Flask, providers: Providers, service: FakeService, tmp_path: Path
) -> None:
    service.set_flag("video", PhaseFlag(mode=FlagMode.FASTAPI))
    response = _create(app)
    assert response.status_code == 201, response.get_json()
    assert providers.renders == []
    [render] = service.created("/video/render")
    assert render.video_id == "vid-42"
    assert render.segments[0].audio_url == "http://legacy.test/media/vid-42/audio/chunk_0000.wav"
    assert (render.options.width, render.options.height) == (legacy_video.WIDTH, legacy_video.HEIGHT)
    assert (tmp_path / "output" / "published" / "vid-42.mp4").stat().st_size > 0


def test_pipeline_with_jobs_on_the_service_forwards_the_whole_job(
    app: Flask, providers: Providers, service: FakeService, tmp_path: Path
) -> None:
    service.set_flag("jobs", PhaseFlag(mode=FlagMode.FASTAPI))
    response = _create(app, style="ink")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (providers.runpod_inputs, providers.runware_tasks, providers.renders) == ([], [], [])
    [job] = service.created("/jobs")
    assert [c.text for c in job.chunks] == [
        "The bridge opened.",
        "Traffic moved slowly at first!",
        "Then everyone crossed.",
    ]
    assert job.chunks[0].image_prompt == "ink: The bridge opened."
    assert (job.voice, job.video_id, job.images.width, job.video.fps) == ("narrator", "vid-42", 1024, 25)
    assert body["segments"] == 3
    assert body["duration_s"] == pytest.approx(sum(_duration(c.text) for c in job.chunks), abs=1e-3)
    work = tmp_path / "output" / "vid-42"
    assert sorted(p.name for p in work.iterdir()) == ["segments.json", "video.mp4"]
    assert (tmp_path / "output" / "published" / "vid-42.mp4").read_bytes() == (work / "video.mp4").read_bytes()


def test_pipeline_with_jobs_on_a_service_that_is_down_is_made_by_the_legacy_code(
    app: Flask, providers: Providers, service: FakeService
) -> None:
    service.set_flag("jobs", PhaseFlag(mode=FlagMode.FASTAPI))
    service.fail_next("POST", "/jobs", 503, times=10)
    response = _create(app)
    assert response.status_code == 201, response.get_json()
    assert (len(providers.runpod_inputs), len(providers.runware_tasks), len(providers.renders)) == (3, 3, 1)
    assert StranglerBridge.state(app).events.count("jobs", EventKind.FALLBACK) == 1


PHASES = ("tts", "imagegen", "video", "jobs")


@pytest.mark.parametrize(
    "modes",
    [dict(zip(PHASES, combo, strict=True)) for combo in itertools.product(("legacy", "fastapi"), repeat=4)],
    ids=lambda modes: "-".join(f"{p}={m[0]}" for p, m in modes.items()),
)
def test_every_combination_of_flags_makes_the_video(
    app: Flask, providers: Providers, service: FakeService, modes: dict[str, str]
) -> None:
    for phase, mode in modes.items():
        service.set_flag(phase, PhaseFlag(mode=FlagMode(mode)))
    response = _create(app)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["segments"] == 3
    whole_job = modes["jobs"] == "fastapi"
    on_service = {phase: whole_job or modes[phase] == "fastapi" for phase in PHASES[:3]}
    assert len(service.created("/jobs")) == int(whole_job)
    assert len(service.created("/tts/batch")) == int(on_service["tts"] and not whole_job)
    assert len(service.created("/imagegen/batch")) == int(on_service["imagegen"] and not whole_job)
    assert len(service.created("/video/render")) == int(on_service["video"] and not whole_job)
    assert len(providers.runpod_inputs) == (0 if on_service["tts"] else 3)
    assert len(providers.runware_tasks) == (0 if on_service["imagegen"] else 3)
    assert len(providers.renders) == (0 if on_service["video"] else 1)


def test_everything_in_shadow_answers_from_the_legacy_code_and_compares(
    app: Flask, providers: Providers, service: FakeService
) -> None:
    for phase in PHASES:
        service.set_flag(phase, PhaseFlag(mode=FlagMode.SHADOW))
    response = _create(app)
    assert response.status_code == 201, response.get_json()
    assert (len(providers.runpod_inputs), len(providers.runware_tasks), len(providers.renders)) == (3, 3, 1)
    events = StranglerBridge.state(app).events
    for phase in PHASES:
        wait_for(
            lambda phase=phase: (
                events.count(phase, EventKind.SHADOW_MATCH) + events.count(phase, EventKind.SHADOW_MISMATCH)
            ),
            timeout=10,
            what=f"the {phase} shadow comparison",
        )
    assert events.recent([EventKind.SHADOW_ERROR]) == []
