"""Steps 5-6, render and fetch the video: the legacy code, the Express video service's render API.

The ``@bridge.step("video", ...)`` line hands the render to the service when the ``video`` flag says so; the
segments carry this app's public ``/media`` URLs, which the video service fetches either way.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import requests
from flask import current_app

from flask_plugin import VideoAdapter, VideoOptions

from .errors import StepFailed
from .extensions import bridge

WIDTH, HEIGHT, FPS = 1280, 720, 25


@bridge.step("video", adapter=VideoAdapter(options=VideoOptions(width=WIDTH, height=HEIGHT, fps=FPS)))
def render(segments: list[dict[str, Any]], out_dir: Path, video_id: str) -> str:
    """Render ``segments`` (index, start_s, end_s, audio_url, image_url, text); return the MP4's path."""
    config = current_app.config
    base = config["VIDEO_SERVICE_URL"].rstrip("/")
    headers = {"Authorization": f"Bearer {config['VIDEO_SERVICE_TOKEN']}"} if config["VIDEO_SERVICE_TOKEN"] else {}
    timeout = config["HTTP_TIMEOUT_S"]
    render_id = f"{video_id}-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {
        "render_id": render_id,
        "segments": segments,
        "options": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "format": "mp4"},
    }
    response = requests.post(f"{base}/renders", json=body, headers=headers, timeout=timeout)
    response.raise_for_status()
    status = response.json()
    deadline = time.monotonic() + config["STEP_TIMEOUT_S"]
    while status["status"] in ("queued", "rendering"):
        if time.monotonic() > deadline:
            raise StepFailed("video", f"render {render_id} still {status['status']} after {config['STEP_TIMEOUT_S']} s")
        time.sleep(config["POLL_INTERVAL_S"])
        response = requests.get(f"{base}/renders/{render_id}", headers=headers, timeout=timeout)
        response.raise_for_status()
        status = response.json()
    if status["status"] != "completed":
        raise StepFailed("video", f"render {render_id} ended {status['status']}: {status.get('error')}")
    path = Path(out_dir) / "video.mp4"
    with requests.get(f"{base}/renders/{render_id}/video", headers=headers, timeout=timeout, stream=True) as video:
        video.raise_for_status()
        with path.open("wb") as handle:
            for block in video.iter_content(64 * 1024):
                handle.write(block)
    return str(path)
