"""Small WAV helpers: read a duration, make a tone. Standard library only."""

from __future__ import annotations

import io
import math
import struct
import wave


def wav_duration(data: bytes) -> float:
    """Duration in seconds of a PCM WAV file held in memory; ``ValueError`` if it is not one."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a PCM WAV file: {exc}") from exc
    if rate <= 0:
        raise ValueError("not a PCM WAV file: zero sample rate")
    return frames / rate


def tone_wav(duration_s: float, *, sample_rate: int = 16_000, frequency: float = 220.0) -> bytes:
    """A mono 16-bit WAV of a quiet sine tone lasting ``duration_s`` seconds."""
    frames = max(1, round(duration_s * sample_rate))
    step = 2 * math.pi * frequency / sample_rate
    samples = struct.pack(f"<{frames}h", *(int(3000 * math.sin(step * i)) for i in range(frames)))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(samples)
    return out.getvalue()
