"""Checking a finished video before it is recorded: a real MP4 whose duration matches its segments."""

from __future__ import annotations

from typing import BinaryIO

import mutagen.mp4

#: How far an MP4's duration may stray from its segments' end: encoders pad audio (AAC priming) and round the last
#: frame, so a little over two frames plus a quarter second is normal; a wrong or cut video is off by far more.
SLACK_S = 0.25


def mp4_duration(stream: BinaryIO) -> float:
    """The duration of the MP4 in ``stream`` (seekable), from its movie header; ``ValueError`` if it is not an MP4."""
    stream.seek(0)
    try:
        parsed = mutagen.File(stream)
    except mutagen.MutagenError as exc:
        raise ValueError(f"not an MP4 video: {exc}") from None
    if not isinstance(parsed, mutagen.mp4.MP4):
        raise ValueError("not an MP4 video")
    length = getattr(parsed.info, "length", 0)
    if not length or length <= 0:
        raise ValueError("not an MP4 video: it has no duration")
    return float(length)


def check_video(stream: BinaryIO, *, expected_s: float, fps: int) -> float:
    """The MP4's duration, once it is known to match ``expected_s`` (the end of its last segment) within a couple
    of frames; ``ValueError`` saying what is wrong otherwise."""
    duration = mp4_duration(stream)
    slack = SLACK_S + 2.0 / fps
    if abs(duration - expected_s) > slack:
        raise ValueError(f"the video lasts {duration:.3f} s, but its segments end at {expected_s:.3f} s")
    return duration
