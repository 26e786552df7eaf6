"""Turn downloaded images and audio into a real MP4 with ffmpeg, or into a clearly labelled placeholder.

ffmpeg comes from the ``imageio-ffmpeg`` wheel (``simulators`` extra). Each image is shown while its segment's
audio plays: image ``i`` lasts ``round(end_i * fps) - round(start_i * fps)`` frames, where ``start_i``/``end_i``
are the cumulative audio durations, so picture and sound never drift by more than half a frame. The audio is
the segments' clips one after another (ffmpeg's ``concat`` filter, which, unlike the concat demuxer, accepts
clips of different sample rates and formats). The reported duration is the output container's own, read
back from ``ffmpeg -i`` (no ffprobe in the wheel).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strangler_bridge.audio import wav_duration
from strangler_bridge.providers.video.client import RenderOptions, RenderRequest

PLACEHOLDER_HEADER = b"STRANGLER-BRIDGE PLACEHOLDER VIDEO\n"
_DURATION_RE = re.compile(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


class RenderFailed(Exception):
    """The encoder failed or timed out; the message goes into the render's ``error``."""


@dataclass(frozen=True)
class SegmentInput:
    """One segment's downloaded files and the audio's measured duration."""

    index: int
    image: Path
    audio: Path
    duration_s: float


def find_ffmpeg() -> str | None:
    """The ffmpeg binary of the imageio-ffmpeg wheel, or ``None`` when it is not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        return None


def parse_duration(text: bytes) -> float | None:
    """The ``Duration: HH:MM:SS.ss`` of ffmpeg's input report, in seconds."""
    match = _DURATION_RE.search(text)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


async def run_ffmpeg(args: list[str], timeout_s: float) -> tuple[int, bytes]:
    """Run ffmpeg without blocking the event loop; kill it on timeout or cancellation. Returns (code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
    except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise RenderFailed(f"ffmpeg timed out after {timeout_s} s") from None
    return proc.returncode or 0, stderr


async def media_duration(ffmpeg: str | None, path: Path, data: bytes, timeout_s: float = 30.0) -> float | None:
    """A clip's duration: read from the WAV header, else from ``ffmpeg -i``; ``None`` if neither can tell."""
    with contextlib.suppress(ValueError):
        return wav_duration(data)
    if ffmpeg is None:
        return None
    _, stderr = await run_ffmpeg([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)], timeout_s)
    return parse_duration(stderr)


def frame_counts(durations: list[float], fps: int) -> list[int]:
    """Frames per segment from cumulative rounding (at least one each), so the total never drifts."""
    counts, elapsed, previous = [], 0.0, 0
    for duration in durations:
        elapsed += duration
        edge = round(elapsed * fps)
        counts.append(max(1, edge - previous))
        previous = max(edge, previous + 1)
    return counts


def ffmpeg_args(ffmpeg: str, inputs: list[SegmentInput], options: RenderOptions, out: Path) -> list[str]:
    """The ffmpeg command line: looped stills plus audio clips, concatenated, H.264 + AAC in MP4."""
    width, height, fps = options.width, options.height, options.fps
    args = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    graph: list[str] = []
    for n, (segment, frames) in enumerate(zip(inputs, frame_counts([s.duration_s for s in inputs], fps), strict=True)):
        # A still looped at the output rate; -t half a frame short of the count yields exactly `frames` frames.
        args += ["-loop", "1", "-framerate", str(fps), "-t", f"{(frames - 0.5) / fps:.6f}", "-i", str(segment.image)]
        graph.append(
            f"[{n}:v]scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v{n}]"
        )
    count = len(inputs)
    for n, segment in enumerate(inputs):
        args += ["-i", str(segment.audio)]
        graph.append(f"[{count + n}:a]aresample=44100,aformat=sample_fmts=fltp:channel_layouts=stereo[a{n}]")
    videos = "".join(f"[v{n}]" for n in range(count))
    audios = "".join(f"[a{n}]" for n in range(count))
    graph.append(f"{videos}concat=n={count}:v=1:a=0[v]")
    graph.append(f"{audios}concat=n={count}:v=0:a=1[a]")
    return [
        *args,
        *("-filter_complex", ";".join(graph), "-map", "[v]", "-map", "[a]", "-r", str(fps)),
        *("-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage", "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(out)),
    ]


async def render_mp4(
    ffmpeg: str, inputs: list[SegmentInput], options: RenderOptions, out: Path, timeout_s: float
) -> float:
    """Encode the MP4 and return its container duration in seconds."""
    code, stderr = await run_ffmpeg(ffmpeg_args(ffmpeg, inputs, options, out), timeout_s)
    if code != 0 or not out.exists():
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RenderFailed(f"ffmpeg exited with {code}: {' | '.join(tail)[:500]}")
    _, report = await run_ffmpeg([ffmpeg, "-hide_banner", "-nostdin", "-i", str(out)], timeout_s)
    duration = parse_duration(report)
    if duration is None:
        raise RenderFailed("ffmpeg wrote a file whose duration it cannot read")
    return duration


def write_placeholder(out: Path, request: RenderRequest, inputs: list[SegmentInput], reason: str) -> float:
    """Write the labelled placeholder (a text header, then a JSON manifest); returns the total audio duration."""
    total = round(sum(segment.duration_s for segment in inputs), 6)
    by_index = {segment.index: segment for segment in inputs}
    manifest: dict[str, Any] = {
        "render_id": request.render_id,
        "reason": reason,
        "duration_s": total,
        "options": request.options.model_dump(mode="json"),
        "segments": [
            {
                **segment.model_dump(mode="json"),
                "duration_s": by_index[segment.index].duration_s,
                "image_bytes": by_index[segment.index].image.stat().st_size,
                "audio_bytes": by_index[segment.index].audio.stat().st_size,
            }
            for segment in request.segments
        ],
    }
    label = b"This file is NOT a video: the video service simulator wrote it instead of an MP4 (" + reason.encode()
    out.write_bytes(PLACEHOLDER_HEADER + label + b").\n" + json.dumps(manifest, indent=2).encode() + b"\n")
    return total


def read_placeholder(data: bytes) -> dict[str, Any] | None:
    """The manifest of a placeholder file, or ``None`` if ``data`` is not one."""
    if not data.startswith(PLACEHOLDER_HEADER):
        return None
    manifest: dict[str, Any] = json.loads(data.split(b"\n", 2)[2])
    return manifest
