"""Step 3, text to speech: the legacy code, one RunPod ``/runsync`` call per chunk.

The ``@bridge.step("tts")`` line is the whole migration: the ``tts`` flag decides, per video, whether this
body runs, the service does the work, or both (shadow). The body stays as the fallback.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import requests
from flask import current_app

from .errors import StepFailed
from .extensions import bridge


@bridge.step("tts")
def synthesize(chunks: list[str], voice: str, out_dir: Path, video_id: str) -> list[dict[str, Any]]:
    """Write ``chunk_0000.wav``, ... into ``out_dir``; return ``[{"path", "duration_s"}]`` in chunk order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for index, text in enumerate(chunks):
        output = _runsync({"chunks": [{"index": index, "text": text, "voice": voice}], "format": "wav"})
        chunk = next((c for c in output.get("chunks", []) if c.get("index") == index), None)
        if chunk is None:
            raise StepFailed("tts", f"RunPod returned no audio for chunk {index}")
        path = out_dir / f"chunk_{index:04d}.wav"
        path.write_bytes(_audio(chunk))
        results.append({"path": str(path), "duration_s": float(chunk["duration_s"])})
    return results


def _runsync(job_input: dict[str, Any]) -> dict[str, Any]:
    """Run one RunPod job, polling ``/status`` if ``/runsync`` returns before the job is done."""
    config = current_app.config
    endpoint = config["RUNPOD_ENDPOINT_URL"].rstrip("/")
    headers = {"Authorization": f"Bearer {config['RUNPOD_API_KEY']}"}
    timeout = config["HTTP_TIMEOUT_S"]
    response = requests.post(f"{endpoint}/runsync", json={"input": job_input}, headers=headers, timeout=timeout)
    response.raise_for_status()
    job = response.json()
    deadline = time.monotonic() + config["STEP_TIMEOUT_S"]
    while job["status"] in ("IN_QUEUE", "IN_PROGRESS"):
        if time.monotonic() > deadline:
            raise StepFailed("tts", f"RunPod job {job['id']} still {job['status']} after {config['STEP_TIMEOUT_S']} s")
        time.sleep(config["POLL_INTERVAL_S"])
        response = requests.get(f"{endpoint}/status/{job['id']}", headers=headers, timeout=timeout)
        response.raise_for_status()
        job = response.json()
    if job["status"] != "COMPLETED" or not isinstance(job.get("output"), dict):
        raise StepFailed("tts", f"RunPod job {job['id']} ended {job['status']}: {job.get('error', 'no output')}")
    return dict(job["output"])


def _audio(chunk: dict[str, Any]) -> bytes:
    if chunk.get("audio_base64"):
        return base64.b64decode(chunk["audio_base64"])
    if chunk.get("audio_url"):
        response = requests.get(chunk["audio_url"], timeout=current_app.config["HTTP_TIMEOUT_S"])
        response.raise_for_status()
        return response.content
    raise StepFailed("tts", f"chunk {chunk.get('index')} has neither audio_base64 nor audio_url")
