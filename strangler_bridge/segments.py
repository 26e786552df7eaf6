"""``segments.json``: the gate between TTS and images. One segment per chunk, timed by the audio.

The default builder can be replaced by any function with the same signature, named by
``STRANGLER_SEGMENTS_BUILDER`` (``package.module:function``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field

from strangler_bridge.errors import ConfigError


class SegmentInput(BaseModel):
    """What a builder knows about one chunk once its audio exists."""

    index: int
    text: str
    duration_s: float = Field(..., ge=0)
    image_prompt: str | None = None
    voice: str | None = None


class Segment(BaseModel):
    """One segment of the video: a time span, its narration and the prompt of its picture."""

    index: int
    start_s: float
    end_s: float
    duration_s: float
    text: str
    image_prompt: str


class Segments(BaseModel):
    """The whole ``segments.json`` document."""

    job_id: str
    total_duration_s: float
    segments: list[Segment]


SegmentsBuilder = Callable[[Sequence[SegmentInput]], list[Segment]]


def default_builder(chunks: Sequence[SegmentInput]) -> list[Segment]:
    """One segment per chunk in index order; start/end from cumulative durations; prompt from the chunk."""
    segments = []
    start = 0.0
    for chunk in sorted(chunks, key=lambda c: c.index):
        end = round(start + chunk.duration_s, 6)
        prompt = chunk.image_prompt or chunk.text
        segments.append(
            Segment(
                index=chunk.index,
                start_s=start,
                end_s=end,
                duration_s=chunk.duration_s,
                text=chunk.text,
                image_prompt=prompt[:3000] if len(prompt) >= 2 else f"{prompt} scene",
            )
        )
        start = end
    return segments


def load_builder(path: str | None) -> SegmentsBuilder:
    """The builder named ``package.module:function``, or the default one."""
    if not path:
        return default_builder
    module_name, _, attribute = path.partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"STRANGLER_SEGMENTS_BUILDER: cannot load {path!r}: {exc}") from None
    if not callable(builder):
        raise ConfigError(f"STRANGLER_SEGMENTS_BUILDER: {path!r} is not callable")
    return builder  # type: ignore[no-any-return]
