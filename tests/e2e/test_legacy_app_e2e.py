"""The example legacy app against the real stack: its own HTTP server, the API and worker processes, Redis, and
the RunPod, Runware and video simulators over HTTP. Which code path made a video is read from the simulators'
counters: the legacy code calls RunPod's ``/runsync`` once per chunk, sends all its prompts to Runware in one
request, and names its renders ``<video_id>-...``; the service uses ``/run`` (several chunks per job), one
Runware request per image, and renders named after its own ids.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from examples.legacy_app.serving import ServedApp, stack_config
from flask_plugin.media import mp4_duration
from flask_plugin.state import get_state
from strangler_bridge.audio import tone_wav
from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.simulators.runpod.handlers import speech_duration
from tests.conftest import TEST_TOKEN
from tests.support.stack import forget_keys, legacy_stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SENTENCES = ["Dawn came.", "Boats left.", "Night fell."]
SOURCE = " ".join(SENTENCES)
PHASES = ("tts", "imagegen", "video", "jobs")
#: Reported by the handler below instead of the true length, to force a shadow mismatch.
MISREPORT = 1.5


def misreporting_tts(job: dict[str, Any]) -> dict[str, Any]:
    """A TTS handler with a bug: its audio has the right length, but it reports 1.5 times that duration.

    The legacy code trusts the reported ``duration_s``; the service measures the WAV it receives.
    """
    chunks = []
    for chunk in job["input"]["chunks"]:
        seconds = speech_duration(chunk["text"])
        audio = base64.b64encode(tone_wav(seconds, sample_rate=8000)).decode()
        chunks.append({"index": chunk["index"], "audio_base64": audio, "duration_s": round(seconds * MISREPORT, 3)})
    return {"chunks": chunks}


# --- the stack and the legacy app, shared by the tests of this file ----------------------------------------


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    running = legacy_stack(
        redis_url,
        tmp_path_factory.mktemp("legacy-stack"),
        prefix,
        TEST_TOKEN,
        runpod={"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05},
        runware={"latency_s": 0.05, "image_max_side": 64},
    )
    try:
        yield running
    finally:
        running.stop()
        forget_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def legacy(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    output = tmp_path_factory.mktemp("legacy-output")
    config = stack_config(stack, output, STRANGLER_SERVICE_TIMEOUT_S=60, STRANGLER_SHADOW_TIMEOUT_S=60)
    with ServedApp(config) as served:
        yield served


@pytest.fixture(autouse=True)
def _all_legacy(stack: DevStack) -> None:
    set_flags(stack)


def set_flags(stack: DevStack, **modes: str) -> None:
    """Every phase to ``legacy`` unless named, through the service's flag API."""
    with stack.client() as client:
        for phase in PHASES:
            client.put(f"/flags/{phase}", json={"mode": modes.get(phase, "legacy")}).raise_for_status()


# --- which code path ran, from the simulators' counters --------------------------------------------------


@dataclass
class Calls:
    """What the providers were asked, at one moment (or between two)."""

    runsync: int
    run: int
    runware_requests: int
    runware_tasks: int
    renders: set[str]

    @classmethod
    def read(cls, stack: DevStack) -> Calls:
        runpod, runware, video = (stack.counters(name) for name in ("runpod", "runware", "video"))
        return cls(
            runpod["jobs_received"].get("runsync", 0),
            runpod["jobs_received"].get("run", 0),
            runware["requests_received"],
            runware["tasks_received"],
            set(video["renders_executed"]),
        )

    def since(self, before: Calls) -> Calls:
        return Calls(
            self.runsync - before.runsync,
            self.run - before.run,
            self.runware_requests - before.runware_requests,
            self.runware_tasks - before.runware_tasks,
            self.renders - before.renders,
        )


def made_by(stack: DevStack, legacy: ServedApp, video_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Make one video; its response and, per step, who made it (``legacy`` or ``service``)."""
    before = Calls.read(stack)
    body = legacy.create(video_id, SOURCE, voice="narrator")
    calls = Calls.read(stack).since(before)
    chunks = len(SENTENCES)
    if (calls.runsync, calls.run) == (chunks, 0):
        tts = "legacy"
    elif (calls.runsync, calls.run) == (0, 1):  # three chunks fit in one RunPod job (tts_group_size=4)
        tts = "service"
    else:
        raise AssertionError(f"unexpected RunPod calls for {video_id}: {calls}")
    if (calls.runware_requests, calls.runware_tasks) == (1, chunks):
        images = "legacy"
    elif (calls.runware_requests, calls.runware_tasks) == (chunks, chunks):
        images = "service"
    else:
        raise AssertionError(f"unexpected Runware calls for {video_id}: {calls}")
    assert len(calls.renders) == 1, calls
    video = "legacy" if next(iter(calls.renders)).startswith(f"{video_id}-") else "service"
    return body, {"tts": tts, "imagegen": images, "video": video}


def _published(legacy: ServedApp, video_id: str) -> Path:
    path = legacy.output / "published" / f"{video_id}.mp4"
    assert path.stat().st_size > 0
    return path


def assert_video_length(path: Path, seconds: float) -> None:
    """The video lasts as long as its narration (unless the simulator had no encoder and wrote a placeholder)."""
    if path.read_bytes().startswith(b"STRANGLER-BRIDGE PLACEHOLDER"):
        return  # pragma: no cover - only without an encoder
    assert mp4_duration(path) == pytest.approx(seconds, abs=0.15)


# --- issue 5: TTS through the bridge ----------------------------------------------------------------------


def _cli(stack: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``strangler-bridge`` command, configured by the environment as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
    env.update({"STRANGLER_SERVICE_URL": stack.api_url, "STRANGLER_SERVICE_TOKEN": stack.token})
    script = shutil.which("strangler-bridge", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "strangler_bridge.cli.main"]
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_tts_moves_to_the_service_when_the_flag_is_set_with_the_cli(stack: DevStack, legacy: ServedApp) -> None:
    api_pid, server_url = stack.api.proc.pid if stack.api else None, legacy.url
    answered = legacy.count("tts", "service")
    body, paths = made_by(stack, legacy, "flip-1")
    assert paths == {"tts": "legacy", "imagegen": "legacy", "video": "legacy"}
    assert body["segments"] == 3

    result = _cli(stack, "flags", "set", "tts", "fastapi")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fastapi" in result.stdout

    body, paths = made_by(stack, legacy, "flip-2")
    assert paths == {"tts": "service", "imagegen": "legacy", "video": "legacy"}
    assert legacy.count("tts", "service") == answered + 1
    audio = sorted(p.name for p in (legacy.output / "flip-2" / "audio").iterdir())
    assert audio == ["chunk_0000.wav", "chunk_0001.wav", "chunk_0002.wav"]
    # Nothing was restarted: the same API process and the same Flask server answered both videos.
    assert stack.api is not None and stack.api.proc.pid == api_pid and legacy.url == server_url
    assert_video_length(_published(legacy, "flip-2"), body["duration_s"])


def test_with_the_service_stopped_the_legacy_code_makes_the_video(stack: DevStack, legacy: ServedApp) -> None:
    set_flags(stack, tts="fastapi")
    seen = legacy.get("/strangler/health")["flags"]  # the app has fetched the flags: tts is on the service
    assert (seen["source"], seen["phases"]["tts"]["mode"], seen["phases"]["tts"]["fallback"]) == (
        "service",
        "fastapi",
        True,
    )
    fallbacks = legacy.count("tts", "fallback")
    assert stack.api is not None
    stack.api.stop()
    try:
        body, paths = made_by(stack, legacy, "down-1")
        assert paths["tts"] == "legacy"
        assert body["segments"] == 3
        events = legacy.get("/strangler/events")
        assert events["counters"]["tts"]["fallback"] == fallbacks + 1
        assert events["fallbacks"][0]["video_id"] == "down-1"
        assert legacy.get("/strangler/health")["service"]["reachable"] is False
    finally:
        stack.start_api()
        # The outage opened the app's breakers; the later tests of this module start from a closed one, as a
        # successful call after the cool-down would leave it (test_fallback_e2e covers the reopening itself).
        for breaker in get_state(legacy.app).breakers.values():
            breaker.succeeded()


def test_shadow_records_a_forced_mismatch(stack: DevStack, legacy: ServedApp) -> None:
    set_flags(stack, tts="shadow")
    stack.set_knobs("runpod", handler=f"{__name__}:misreporting_tts")
    before, mismatches = Calls.read(stack), legacy.count("tts", "shadow_mismatch")
    try:
        body = legacy.create("shadow-1", SOURCE, voice="narrator")
        wait_for(
            lambda: legacy.count("tts", "shadow_mismatch") == mismatches + 1, timeout=30, what="the shadow comparison"
        )
    finally:
        stack.set_knobs("runpod", handler=None)
    # The legacy code answered (one /runsync per chunk, its durations as reported); the service's batch ran on
    # /run in the shadow and measured the audio.
    calls = Calls.read(stack).since(before)
    assert (calls.runsync, calls.run) == (3, 1)
    expected = sum(speech_duration(sentence) * MISREPORT for sentence in SENTENCES)
    assert body["duration_s"] == pytest.approx(expected, abs=0.01)
    event = legacy.get("/strangler/events")["shadow"][0]  # newest first
    assert (event["kind"], event["phase"], event["video_id"]) == ("shadow_mismatch", "tts", "shadow-1")
    first = SENTENCES[0]
    legacy_s, service_s = speech_duration(first) * MISREPORT, speech_duration(first)
    assert event["data"]["mismatches"][0] == f"chunk 0 duration: legacy {legacy_s:.2f} s, service {service_s:.2f} s"


# --- issue 6: images ------------------------------------------------------------------------------------


def test_images_come_from_the_service_when_imagegen_is_fastapi(stack: DevStack, legacy: ServedApp) -> None:
    _, paths = made_by(stack, legacy, "img-legacy")
    assert paths["imagegen"] == "legacy"
    set_flags(stack, imagegen="fastapi")
    answered = legacy.count("imagegen", "service")
    _, paths = made_by(stack, legacy, "img-service")
    assert paths == {"tts": "legacy", "imagegen": "service", "video": "legacy"}
    assert legacy.count("imagegen", "service") == answered + 1
    pictures = sorted(p.name for p in (legacy.output / "img-service" / "images").iterdir())
    assert pictures == ["image_0000.png", "image_0001.png", "image_0002.png"]


# --- issue 7: the video step and the whole job ----------------------------------------------------------


def test_jobs_fastapi_makes_the_video_through_the_pipeline(stack: DevStack, legacy: ServedApp) -> None:
    set_flags(stack, jobs="fastapi")
    answered = legacy.count("jobs", "service")
    body, paths = made_by(stack, legacy, "job-1")
    assert paths == {"tts": "service", "imagegen": "service", "video": "service"}
    assert legacy.count("jobs", "service") == answered + 1
    work = legacy.output / "job-1"
    assert sorted(p.name for p in work.iterdir()) == ["segments.json", "video.mp4"]
    segments = json.loads((work / "segments.json").read_text())
    assert segments["job_id"].startswith("job_")
    assert [s["text"] for s in segments["segments"]] == SENTENCES
    assert body["duration_s"] == pytest.approx(sum(speech_duration(s) for s in SENTENCES), abs=0.01)
    assert body["video_url"] == f"{legacy.url}/media/published/job-1.mp4"
    assert_video_length(_published(legacy, "job-1"), body["duration_s"])


def test_images_and_video_in_shadow_match_the_legacy_results(stack: DevStack, legacy: ServedApp) -> None:
    set_flags(stack, imagegen="shadow", video="shadow")
    matches = {phase: legacy.count(phase, "shadow_match") for phase in ("imagegen", "video")}
    before = Calls.read(stack)
    legacy.create("shadow-2", SOURCE, voice="narrator")
    for phase, seen in matches.items():
        wait_for(lambda p=phase, n=seen: legacy.count(p, "shadow_match") == n + 1, timeout=30, what=f"{phase} match")
    calls = Calls.read(stack).since(before)
    # Both paths ran: the legacy Runware request and render, and the service's own images and render (which
    # fetched this app's /media files); the same image sizes and video lengths came out of both.
    assert (calls.runware_requests, calls.runware_tasks) == (1 + 3, 3 + 3)
    assert len(calls.renders) == 2
    assert sum(render.startswith("shadow-2-") for render in calls.renders) == 1  # one of them the legacy one
    assert legacy.count("imagegen", "shadow_error") + legacy.count("video", "shadow_error") == 0


COMBINATIONS = [
    {"tts": "fastapi", "imagegen": "legacy", "video": "fastapi"},
    {"tts": "legacy", "imagegen": "fastapi", "video": "fastapi"},
    {"tts": "fastapi", "imagegen": "fastapi", "video": "legacy"},
    {"tts": "fastapi", "imagegen": "legacy", "video": "legacy", "jobs": "fastapi"},
]


def test_each_step_follows_its_own_flag_until_jobs_takes_the_whole_pipeline(stack: DevStack, legacy: ServedApp) -> None:
    for number, modes in enumerate(COMBINATIONS):
        set_flags(stack, **modes)
        video_id = f"mix-{number}"
        body, paths = made_by(stack, legacy, video_id)
        whole_job = modes.get("jobs") == "fastapi"
        expected = {p: "service" if whole_job or modes[p] == "fastapi" else "legacy" for p in PHASES[:3]}
        assert paths == expected, modes
        assert body["segments"] == 3
        assert_video_length(_published(legacy, video_id), body["duration_s"])
