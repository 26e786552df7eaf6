"""``POST /api/video/create``: the seven steps of the legacy pipeline, run inline in the request.

1 transcript, 2 script, 3 TTS, then the segments.json gate (timings from the audio, one image prompt per
segment), 4 images, 5-6 render and fetch the video, 7 publish. Steps 3-6 are ``produce()``: with the ``jobs``
flag at ``fastapi`` the service runs them as one pipeline job; otherwise each step follows its own flag.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import requests
from flask import Blueprint, current_app, jsonify, request, send_from_directory
from flask.typing import ResponseReturnValue

from flask_plugin import ImageOptions, JobAdapter, VideoOptions
from strangler_bridge.errors import BridgeError

from . import images, tts, video
from .errors import StepFailed
from .extensions import bridge

api = Blueprint("legacy_api", __name__)

VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_CHUNK_CHARS = 300


@api.post("/api/video/create")
def create_video() -> ResponseReturnValue:
    """Make a video from ``{"source_text": str, "video_id"?: str, "voice"?: str, "style"?: str}``."""
    body = request.get_json(silent=True) or {}
    source = body.get("source_text")
    video_id = str(body.get("video_id") or uuid.uuid4().hex[:12])
    if not isinstance(source, str) or not source.strip():
        return _error(400, "invalid_input", "source_text: give the text to turn into a video")
    if not VIDEO_ID.match(video_id):
        return _error(400, "invalid_input", "video_id: use 1-64 letters, digits, '_' or '-'")
    try:
        result = make_video(video_id, source, str(body.get("voice") or "narrator"), str(body.get("style") or ""))
    except StepFailed as exc:
        return _error(502, "step_failed", str(exc))
    except (requests.RequestException, BridgeError) as exc:
        current_app.logger.warning("video %s failed: %s", video_id, exc)
        return _error(502, "upstream_error", f"{type(exc).__name__}: {exc}")
    return jsonify(result), 201


@api.get("/media/<path:name>")
def media(name: str) -> ResponseReturnValue:
    """Work files (audio, images) for the video service to fetch."""
    return send_from_directory(_output_dir(), name)


def make_video(video_id: str, source: str, voice: str, style: str) -> dict[str, Any]:
    """Run the pipeline for one video; every file goes under ``OUTPUT_DIR/<video_id>/``."""
    text = transcript(source)  # 1
    chunks = script(text)  # 2
    made = produce(chunks, voice, style, _output_dir() / video_id, video_id)  # 3-6
    return {
        "video_id": video_id,
        "video_url": publish(Path(made["video"]), video_id),  # 7
        "segments": len(made["segments"]),
        "duration_s": round(made["duration_s"], 3),
    }


def segment_prompt(text: str, style: str | None) -> str:
    """The image prompt of one segment."""
    return f"{style}: {text}" if style else text


@bridge.step(
    "jobs",
    adapter=JobAdapter(
        images=ImageOptions(width=images.WIDTH, height=images.HEIGHT),
        video=VideoOptions(width=video.WIDTH, height=video.HEIGHT, fps=video.FPS),
        image_prompt=segment_prompt,
    ),
)
def produce(chunks: list[str], voice: str, style: str, out_dir: Path, video_id: str) -> dict[str, Any]:
    """Steps 3-6: return ``{"video": path, "segments": [...], "duration_s": float}``."""
    audio = tts.synthesize(chunks, voice, out_dir / "audio", video_id)  # 3
    segments = write_segments(chunks, audio, style, out_dir)  # the gate: complete before any image work
    pictures = images.generate([s["prompt"] for s in segments], out_dir / "images", video_id)  # 4
    rendered = video.render(render_segments(segments, pictures), out_dir, video_id)  # 5-6
    return {"video": rendered, "segments": segments, "duration_s": segments[-1]["end_s"]}


def transcript(source: str) -> str:
    """Step 1 (stand-in for the real transcription): normalised text."""
    return " ".join(source.split())


def script(text: str) -> list[str]:
    """Step 2 (stand-in for the real script writer): one chunk per sentence."""
    return [sentence[:MAX_CHUNK_CHARS] for sentence in re.split(r"(?<=[.!?])\s+", text) if sentence]


def write_segments(chunks: list[str], audio: list[dict[str, Any]], style: str, work: Path) -> list[dict[str, Any]]:
    """The segments.json gate: each chunk's timing from its audio, and its image prompt."""
    segments, start = [], 0.0
    for index, (text, clip) in enumerate(zip(chunks, audio, strict=True)):
        end = start + float(clip["duration_s"])
        prompt = segment_prompt(text, style)
        segments.append(
            {"index": index, "start_s": start, "end_s": end, "text": text, "audio": clip["path"], "prompt": prompt}
        )
        start = end
    work.mkdir(parents=True, exist_ok=True)
    (work / "segments.json").write_text(json.dumps({"segments": segments}, indent=2))
    return segments


def render_segments(segments: list[dict[str, Any]], pictures: list[str]) -> list[dict[str, Any]]:
    """What the video service needs per segment: timings, text and URLs it can fetch."""
    return [
        {
            "index": s["index"],
            "start_s": s["start_s"],
            "end_s": s["end_s"],
            "text": s["text"],
            "audio_url": _media_url(s["audio"]),
            "image_url": _media_url(picture),
        }
        for s, picture in zip(segments, pictures, strict=True)
    ]


def publish(path: Path, video_id: str) -> str:
    """Step 7 (stand-in for the real upload): copy into ``published/`` and return its URL."""
    target = _output_dir() / "published" / f"{video_id}.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return _media_url(str(target))


def _output_dir() -> Path:
    return Path(current_app.config["OUTPUT_DIR"]).resolve()


def _media_url(path: str) -> str:
    relative = Path(path).resolve().relative_to(_output_dir())
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/media/{relative.as_posix()}"


def _error(status: int, code: str, message: str) -> ResponseReturnValue:
    return jsonify(error={"code": code, "message": message}), status
