"""The video service simulator over real HTTP: real MP4s, the placeholder path, and every knob."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from strangler_bridge.audio import tone_wav
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.simulators.video import PLACEHOLDER_HEADER, VideoSimConfig, create_app, read_placeholder
from strangler_bridge.simulators.video.render import find_ffmpeg, frame_counts
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

DURATIONS = (1.0, 1.5, 0.75)
RATES = (16_000, 22_050, 16_000)  # mixed sample rates: the audio concat must cope
COLORS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))
SMALL = {"width": 320, "height": 240, "fps": 25, "format": "mp4"}


class Assets:
    """A tiny HTTP server of PNGs and WAVs that records the headers of every request."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.headers: list[dict[str, str]] = []
        for n, (duration, rate, color) in enumerate(zip(DURATIONS, RATES, COLORS, strict=True)):
            picture = io.BytesIO()
            Image.new("RGB", (160 + 40 * n, 120), color).save(picture, "PNG")  # sizes differ on purpose
            self.files[f"image-{n}.png"] = (picture.getvalue(), "image/png")
            self.files[f"audio-{n}.wav"] = (tone_wav(duration, sample_rate=rate), "audio/wav")
        app = FastAPI()

        @app.get("/files/{name}")
        def serve(name: str, request: Request) -> Response:
            self.headers.append(dict(request.headers))
            if name not in self.files:
                return Response(status_code=404)
            data, media = self.files[name]
            return Response(data, media_type=media)

        self.server = ThreadedServer(app)

    def segments(self, count: int = 3, *, missing_image: int | None = None) -> list[dict[str, Any]]:
        """Render segments pointing at this server (``missing_image`` names one that answers 404)."""
        out, start = [], 0.0
        for n in range(count):
            k = n % 3
            image = "nope.png" if n == missing_image else f"image-{k}.png"
            out.append(
                {
                    "index": n,
                    "start_s": start,
                    "end_s": start + DURATIONS[k],
                    "audio_url": f"{self.server.url}/files/audio-{k}.wav",
                    "image_url": f"{self.server.url}/files/{image}",
                    "text": f"segment {n}",
                }
            )
            start += DURATIONS[k]
        return out


class Receiver:
    """A callback receiver on loopback; answers 500 to the first ``fail_first`` posts."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.posts = 0
        self.fail_first = fail_first
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> JSONResponse:
            body = await request.json()
            with self.lock:
                self.posts += 1
                if self.posts <= self.fail_first:
                    return JSONResponse({"error": "not now"}, status_code=500)
                self.bodies.append(body)
            return JSONResponse({"ok": True})

        self.server = ThreadedServer(app)

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"


@pytest.fixture(scope="module")
def assets() -> Iterator[Assets]:
    served = Assets()
    with served.server:
        yield served


@pytest.fixture
def sim() -> Iterator[Any]:
    """Start a simulator with the given knobs: ``sim(force_placeholder=True)`` -> its base URL."""
    servers: list[ThreadedServer] = []

    def start(**knobs: Any) -> str:
        server = ThreadedServer(create_app(VideoSimConfig(**knobs))).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    with got.server:
        yield got


def submit(base: str, render_id: str, segments: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body = {"render_id": render_id, "segments": segments, "options": SMALL, **extra}
    return httpx.post(f"{base}/renders", json=body, timeout=10)


def status(base: str, render_id: str) -> dict[str, Any]:
    return httpx.get(f"{base}/renders/{render_id}", timeout=10).json()


def finished(base: str, render_id: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(
        lambda: (s := status(base, render_id))["status"] in ("completed", "failed", "cancelled") and s,
        timeout=timeout,
        what=f"render {render_id} to finish",
    )


def counters(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/_sim/counters").json()


def patch(base: str, **knobs: Any) -> httpx.Response:
    return httpx.patch(f"{base}/_sim/config", json=knobs)


def probe(path: Path) -> tuple[float, str, int]:
    """(container duration, stream lines, decoded video frames) of a media file, read by ffmpeg itself."""
    ffmpeg = find_ffmpeg()
    assert ffmpeg is not None
    report = subprocess.run(
        [ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False
    ).stderr
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", report).groups()  # type: ignore[union-attr]
    streams = "\n".join(line for line in report.splitlines() if "Stream #" in line)
    decode = subprocess.run(
        [ffmpeg, "-hide_banner", "-i", str(path), "-map", "0:v", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    frames = int(re.findall(r"frame=\s*(\d+)", decode.stderr)[-1])
    return int(h) * 3600 + int(m) * 60 + float(s), streams, frames


# --- rendering ---------------------------------------------------------------------------------------


@pytest.mark.skipif(find_ffmpeg() is None, reason="needs the ffmpeg of imageio-ffmpeg")
def test_renders_a_real_mp4_as_long_as_the_audio(sim: Any, assets: Assets, tmp_path: Path) -> None:
    base = sim()
    assert submit(base, "real-1", assets.segments()).status_code == 202
    done = finished(base, "real-1")
    assert done["status"] == "completed", done
    assert done["placeholder"] is False
    assert done["video_url"] == f"{base}/renders/real-1/video"
    response = httpx.get(done["video_url"])
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp"
    out = tmp_path / "out.mp4"
    out.write_bytes(response.content)
    duration, streams, frames = probe(out)
    assert abs(duration - sum(DURATIONS)) < 0.1
    assert abs(done["duration_s"] - sum(DURATIONS)) < 0.1
    assert "h264" in streams and "aac" in streams and "320x240" in streams
    assert frames == round(sum(DURATIONS) * 25)


def test_frame_counts_never_drift_from_the_audio() -> None:
    counts = frame_counts([0.75, 1.01, 0.3] * 50, 25)
    assert sum(counts) == round((0.75 + 1.01 + 0.3) * 50 * 25)
    assert min(counts) >= 1


def test_force_placeholder_writes_a_labelled_manifest(sim: Any, assets: Assets) -> None:
    base = sim(force_placeholder=True)
    submit(base, "ph-1", assets.segments())
    done = finished(base, "ph-1")
    assert done["status"] == "completed" and done["placeholder"] is True
    assert done["duration_s"] == pytest.approx(sum(DURATIONS), abs=1e-6)
    response = httpx.get(f"{base}/renders/ph-1/video")
    assert response.headers["x-placeholder"] == "true"
    assert response.content.startswith(PLACEHOLDER_HEADER)
    manifest = read_placeholder(response.content)
    assert manifest is not None and manifest["reason"] == "forced by the force_placeholder knob"
    assert [s["duration_s"] for s in manifest["segments"]] == pytest.approx(list(DURATIONS))
    assert counters(base)["placeholders"] == 1


def test_placeholder_when_no_encoder_is_available(sim: Any, assets: Assets, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("strangler_bridge.simulators.video.render.find_ffmpeg", lambda: None)
    base = sim()
    assert httpx.get(f"{base}/_sim/info").json()["encoder"] == "placeholder"
    submit(base, "noenc-1", assets.segments())
    done = finished(base, "noenc-1")
    assert done["placeholder"] is True
    manifest = read_placeholder(httpx.get(f"{base}/renders/noenc-1/video").content)
    assert manifest is not None and manifest["reason"] == "no video encoder is available"


def test_missing_asset_fails_the_render_naming_the_segment(sim: Any, assets: Assets) -> None:
    base = sim(force_placeholder=True)
    submit(base, "miss-1", assets.segments(missing_image=1))
    done = finished(base, "miss-1")
    assert done["status"] == "failed"
    assert "segment 1 image_url" in done["error"] and "404" in done["error"]


def test_fetch_headers_are_passed_to_asset_servers(sim: Any, assets: Assets) -> None:
    base = sim(force_placeholder=True, fetch_headers={"Authorization": "Bearer artifacts"})
    assets.headers.clear()
    submit(base, "hdr-1", assets.segments())
    assert finished(base, "hdr-1")["status"] == "completed"
    assert len(assets.headers) == 6
    assert {h.get("authorization") for h in assets.headers} == {"Bearer artifacts"}


@pytest.mark.skipif(find_ffmpeg() is None, reason="needs the ffmpeg of imageio-ffmpeg")
def test_render_timeout_fails_the_render(sim: Any, assets: Assets) -> None:
    base = sim(render_timeout_s=0.001)
    submit(base, "slow-1", assets.segments())
    done = finished(base, "slow-1")
    assert done["status"] == "failed" and "timed out" in done["error"]


# --- the contract ------------------------------------------------------------------------------------


def test_same_render_id_never_renders_twice(sim: Any, assets: Assets) -> None:
    base = sim(force_placeholder=True, latency_s=0.2)
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(submit(base, "dup-1", assets.segments()))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [a.status_code for a in answers] == [202] * 8
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    finished(base, "dup-1")
    assert submit(base, "dup-1", assets.segments()).json()["status"] == "completed"
    seen = counters(base)
    assert seen["renders_executed"] == {"dup-1": 1}
    assert seen["renders_submitted"] == 1 and seen["submits_total"] == 9


def test_cancel_stops_a_render_and_calls_back(sim: Any, assets: Assets, receiver: Receiver) -> None:
    base = sim(force_placeholder=True, latency_s=30)
    submit(base, "can-1", assets.segments(), callback_url=receiver.url)
    wait_for(lambda: status(base, "can-1")["status"] == "rendering", timeout=5, what="rendering")
    cancelled = httpx.post(f"{base}/renders/can-1/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert httpx.post(f"{base}/renders/can-1/cancel").json()["status"] == "cancelled"
    assert httpx.get(f"{base}/renders/can-1/video").status_code == 409
    wait_for(lambda: receiver.bodies, timeout=5, what="the cancel callback")
    assert receiver.bodies[0]["status"] == "cancelled"
    assert counters(base)["renders_cancelled"] == 1


def test_bad_requests_get_422_naming_the_field(sim: Any, assets: Assets) -> None:
    base = sim(max_segments=2)
    too_many = submit(base, "bad-1", assets.segments(3))
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "segments"
    segments = assets.segments(1)
    segments[0]["audio_url"] = "file:///etc/passwd"
    local = submit(base, "bad-2", segments)
    assert local.status_code == 422 and local.json()["error"]["field"] == "segments.0.audio_url"
    missing = httpx.post(f"{base}/renders", json={"segments": segments})
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "render_id"
    assert httpx.get(f"{base}/renders/none").json()["error"]["code"] == "not_found"


def test_token_knob_requires_bearer_auth(sim: Any, assets: Assets) -> None:
    base = sim(token="s3cret", force_placeholder=True)
    assert submit(base, "auth-1", assets.segments()).status_code == 401
    wrong = httpx.get(f"{base}/renders/x", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert httpx.get(f"{base}/_sim/counters").status_code == 200


# --- knobs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("latency", [0.4, [0.3, 0.5]])
def test_latency_knob_delays_completion(sim: Any, assets: Assets, latency: Any) -> None:
    base = sim(force_placeholder=True, latency_s=latency)
    started = time.monotonic()
    submit(base, "lat-1", assets.segments())
    assert status(base, "lat-1")["status"] in ("queued", "rendering")
    assert finished(base, "lat-1")["status"] == "completed"
    assert time.monotonic() - started >= 0.3


def test_failure_knobs(sim: Any, assets: Assets) -> None:
    base = sim(force_placeholder=True, fail_first_renders=1)
    submit(base, "ff-1", assets.segments())
    assert finished(base, "ff-1")["status"] == "failed"
    submit(base, "ff-2", assets.segments())
    assert finished(base, "ff-2")["status"] == "completed"
    patch(base, failure_rate=1.0)
    submit(base, "ff-3", assets.segments())
    assert finished(base, "ff-3")["error"] == "simulated failure (failure_rate)"
    assert counters(base)["renders_failed"] == 2


def test_seeded_randomness_repeats(sim: Any, assets: Assets) -> None:
    def outcomes(base: str) -> list[str]:
        out = []
        for n in range(8):
            submit(base, f"seed-{n}", assets.segments(1))
            out.append(finished(base, f"seed-{n}")["status"])
        return out

    first = outcomes(sim(force_placeholder=True, failure_rate=0.5, seed=7))
    assert first == outcomes(sim(force_placeholder=True, failure_rate=0.5, seed=7))
    assert set(first) == {"completed", "failed"}


def test_down_knob_answers_503_except_control_routes(sim: Any, assets: Assets) -> None:
    base = sim()
    patch(base, down=True)
    assert submit(base, "down-1", assets.segments()).status_code == 503
    assert httpx.get(f"{base}/healthz").status_code == 503
    assert httpx.get(f"{base}/_sim/config").json()["down"] is True
    patch(base, down=False)
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert counters(base)["requests_down"] == 2


def test_down_window_ends_by_itself(sim: Any) -> None:
    base = sim()
    patch(base, down_window_s=[0, 0.5])
    assert httpx.get(f"{base}/healthz").status_code == 503
    wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, timeout=5, what="the window to close")


def test_injected_statuses_then_recovery(sim: Any) -> None:
    base = sim()
    patch(base, inject_next=2, inject_status=429)
    assert [httpx.get(f"{base}/healthz").status_code for _ in range(3)] == [429, 429, 200]
    assert counters(base)["requests_injected"] == 2


def test_concurrency_knob_queues_renders(sim: Any, assets: Assets) -> None:
    base = sim(force_placeholder=True, latency_s=30, concurrency=1)
    submit(base, "cc-1", assets.segments(1))
    submit(base, "cc-2", assets.segments(1))
    wait_for(lambda: status(base, "cc-1")["status"] == "rendering", timeout=5, what="cc-1 rendering")
    assert status(base, "cc-2")["status"] == "queued"
    patch(base, concurrency=2)
    wait_for(lambda: status(base, "cc-2")["status"] == "rendering", timeout=5, what="cc-2 to start")


def test_callback_delivery_retries_then_succeeds(sim: Any, assets: Assets) -> None:
    hooks = Receiver(fail_first=2)
    with hooks.server:
        base = sim(force_placeholder=True, callback_backoff_s=0.01)
        submit(base, "cb-1", assets.segments(), callback_url=hooks.url)
        wait_for(lambda: hooks.bodies, timeout=5, what="the callback")
        assert hooks.bodies[0]["id"] == "cb-1" and hooks.bodies[0]["status"] == "completed"
        seen = counters(base)
        assert seen["callbacks_sent"] == 1 and seen["callback_attempts"] == 3


def test_callback_gives_up_after_bounded_attempts(sim: Any, assets: Assets) -> None:
    hooks = Receiver(fail_first=100)
    with hooks.server:
        base = sim(force_placeholder=True, callback_backoff_s=0.01, callback_attempts=2)
        submit(base, "cb-2", assets.segments(), callback_url=hooks.url)
        wait_for(lambda: counters(base)["callbacks_failed"] == 1, timeout=5, what="the callback to give up")
        assert hooks.posts == 2 and hooks.bodies == []


def test_callback_faults_lost_and_duplicated(sim: Any, assets: Assets, receiver: Receiver) -> None:
    base = sim(force_placeholder=True, callback_lost_rate=1.0)
    submit(base, "lost-1", assets.segments(), callback_url=receiver.url)
    wait_for(lambda: counters(base)["callbacks_lost"] == 1, timeout=5, what="the lost callback")
    assert receiver.posts == 0
    patch(base, callback_lost_rate=0.0, callback_duplicate_rate=1.0)
    submit(base, "dup-cb", assets.segments(), callback_url=receiver.url)
    wait_for(lambda: len(receiver.bodies) == 2, timeout=5, what="two deliveries")
    assert [b["id"] for b in receiver.bodies] == ["dup-cb", "dup-cb"]


def test_config_patch_is_validated_and_reset_restores_the_start(sim: Any, assets: Assets) -> None:
    base = sim(force_placeholder=True, latency_s=0.01)
    bad = patch(base, failure_rate=2)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "failure_rate"
    assert patch(base, nonsense=1).status_code == 422
    assert patch(base, latency_s=[0.5, 0.1]).status_code == 422
    submit(base, "rs-1", assets.segments())
    finished(base, "rs-1")
    patch(base, down=True)
    assert httpx.post(f"{base}/_sim/reset").json() == {"reset": True}
    config = httpx.get(f"{base}/_sim/config").json()
    assert config["down"] is False and config["latency_s"] == 0.01
    assert counters(base)["renders_submitted"] == 0
    assert httpx.get(f"{base}/renders/rs-1").status_code == 404


def test_cli_serves_the_simulator_and_prints_the_url(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "sim.log").open("wb")
    args = ["simulate", "video", "--port", str(port), "--placeholder", "--latency", "0.1,0.2", "--seed", "3"]
    proc = subprocess.Popen([sys.executable, "-m", "strangler_bridge.cli.main", *args], stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/_sim/config", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=20, what="the simulator CLI")
        config = httpx.get(f"{base}/_sim/config").json()
        assert config["force_placeholder"] is True and config["latency_s"] == [0.1, 0.2] and config["seed"] == 3
        assert f"STRANGLER_VIDEO_URL={base}" in (tmp_path / "sim.log").read_text()
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
