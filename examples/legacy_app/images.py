"""Step 4, one image per segment: the legacy code, Runware's REST API (one ``imageInference`` task per prompt).

The ``@bridge.step("imagegen", ...)`` line is the phase 2 migration: the ``imagegen`` flag decides, per video,
whether this body runs, the service makes the images (at the same size), or both (shadow).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import requests
from flask import current_app

from flask_plugin import ImageAdapter

from .errors import StepFailed
from .extensions import bridge

WIDTH, HEIGHT = 1024, 576  # 16:9, both multiples of 64 as Runware requires


@bridge.step("imagegen", adapter=ImageAdapter(width=WIDTH, height=HEIGHT))
def generate(prompts: list[str], out_dir: Path, video_id: str) -> list[str]:
    """Write ``image_0000.png``, ... into ``out_dir``; return their paths in prompt order."""
    config = current_app.config
    tasks = [
        {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "positivePrompt": prompt,
            "model": config["RUNWARE_MODEL"],
            "width": WIDTH,
            "height": HEIGHT,
            "numberResults": 1,
            "outputType": "URL",
            "outputFormat": "PNG",
        }
        for prompt in prompts
    ]
    headers = {"Authorization": f"Bearer {config['RUNWARE_API_KEY']}"}
    response = requests.post(config["RUNWARE_URL"], json=tasks, headers=headers, timeout=config["HTTP_TIMEOUT_S"])
    body = _json(response)
    if body.get("errors"):
        reasons = "; ".join(str(e.get("message") or e.get("code")) for e in body["errors"])
        raise StepFailed("images", f"Runware HTTP {response.status_code}: {reasons}")
    response.raise_for_status()
    results = {item["taskUUID"]: item for item in body.get("data", [])}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, task in enumerate(tasks):
        result = results.get(task["taskUUID"])
        if result is None or not result.get("imageURL"):
            raise StepFailed("images", f"Runware returned no image for prompt {index}")
        image = requests.get(result["imageURL"], timeout=config["HTTP_TIMEOUT_S"])
        image.raise_for_status()
        path = out_dir / f"image_{index:04d}.png"
        path.write_bytes(image.content)
        paths.append(str(path))
    return paths


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        response.raise_for_status()
        raise StepFailed("images", "Runware answered with something that is not JSON") from None
    return body if isinstance(body, dict) else {}
