"""The fingerprint of an item: a hash of everything that determines its output, and nothing else.

Audio: the text, the voice, the format and the RunPod endpoint (another endpoint may run another model). An
image: the full prompt (style included), the negative prompt, the model, the size, the format and the seed. An
unseeded image is meant to differ from the last one, so it has a fingerprint only when the request opts in
with ``reuse: "prompt"``. A request with ``reuse: false``, or a deployment with ``STRANGLER_REUSE=false``,
gives its items none: they are neither reused nor offered for reuse.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from fastapi_app.store.batch import Batch
from strangler_bridge.contracts.images import ImageBatchCreate
from strangler_bridge.contracts.tts import TtsBatchCreate
from strangler_bridge.settings import Settings

#: Bumped when what a fingerprint covers changes, so older entries are never mistaken for newer ones.
VERSION = 1


def fingerprint(fields: dict[str, Any]) -> str:
    """The sha256 of the fields as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps({"v": VERSION, **fields}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def audio_keys(settings: Settings, request: TtsBatchCreate) -> dict[int, str]:
    """The fingerprint of every chunk of a TTS request, by index (empty when the request opts out)."""
    if not request.reuse:
        return {}
    return {
        index: fingerprint(
            {
                "kind": "audio",
                "text": chunk.text,
                "voice": chunk.voice or request.voice,
                "format": request.format.value,
                "endpoint": settings.runpod_endpoint_url,
            }
        )
        for index, chunk in request.indexed()
    }


def image_keys(settings: Settings, request: ImageBatchCreate) -> dict[int, str]:
    """The fingerprint of every reusable image of a request, by index: those with a seed, or all with ``"prompt"``."""
    if request.reuse is False:
        return {}
    return {
        image.index or 0: fingerprint(
            {
                "kind": "image",
                "prompt": request.prompt_for(image),
                "negative_prompt": image.negative_prompt,
                "model": request.model or settings.runware_model,
                "width": request.width,
                "height": request.height,
                "format": request.format.value,
                "seed": image.seed,
            }
        )
        for image in request.images
        if image.seed is not None or request.reuse == "prompt"
    }


def assign_keys(settings: Settings, batch: Batch, request: BaseModel) -> Batch:
    """Give a new batch's items their fingerprints: a TTS or image request's, unless the deployment turned reuse
    off (a render is never reused)."""
    if not settings.reuse:
        return batch
    if isinstance(request, TtsBatchCreate):
        keys = audio_keys(settings, request)
    elif isinstance(request, ImageBatchCreate):
        keys = image_keys(settings, request)
    else:
        return batch
    for item in batch.items:
        item.reuse_key = keys.get(item.index)
    return batch
