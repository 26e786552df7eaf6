"""Audio helpers: measure a clip's duration from its data, make a tone.

A duration is never taken from a provider's word or from a header's length field alone: a WAV's ``data`` chunk
size is capped by the bytes actually present (a header claiming 4 GB of samples in a 40 kB file measures the
40 kB), and other containers are measured by mutagen, which reads their frames or stream info.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from typing import BinaryIO

import mutagen

#: How much of a WAV file is read to find its ``fmt`` and ``data`` chunk headers (TTS models write them first).
WAV_HEAD_BYTES = 65536
#: WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT and WAVE_FORMAT_EXTENSIBLE.
_WAV_FORMATS = frozenset({1, 3, 0xFFFE})


def wav_duration(data: bytes) -> float:
    """Duration in seconds of a WAV file held in memory; ``ValueError`` if it is not one (or has no samples)."""
    return wav_duration_of(data, len(data))


def wav_duration_of(head: bytes, size: int) -> float:
    """Duration of a WAV file of ``size`` bytes that begins with ``head``, measured from the sample bytes present.

    ``head`` must reach the ``data`` chunk's header (:data:`WAV_HEAD_BYTES` is plenty). A ``data`` size larger than
    what the file holds counts only the bytes there; ``ValueError`` says why a file is not a usable WAV.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("not a WAV file: no RIFF/WAVE header")
    block_align = rate = 0
    position = 12
    while position + 8 <= len(head):
        chunk_id, length = head[position : position + 4], struct.unpack_from("<I", head, position + 4)[0]
        body = position + 8
        if chunk_id == b"fmt ":
            if length < 16 or body + 16 > len(head):
                raise ValueError("not a WAV file: its fmt chunk is truncated")
            kind, channels, rate, _, block_align = struct.unpack_from("<HHIIH", head, body)
            if kind not in _WAV_FORMATS or channels == 0 or rate == 0 or block_align == 0:
                raise ValueError(f"not a PCM WAV file (format {kind}, {channels} channels, {rate} Hz)")
        elif chunk_id == b"data":
            if not rate:
                raise ValueError("not a WAV file: data comes before its fmt chunk")
            frames: int = min(length, max(0, size - body)) // block_align
            if frames == 0:
                raise ValueError("the WAV file holds no audio samples")
            return frames / rate
        position = body + length + (length & 1)
    raise ValueError(f"not a WAV file: no data chunk in its first {len(head)} bytes")


def audio_duration(stream: BinaryIO, size: int, container: str) -> float:
    """Duration of the ``size``-byte clip in ``stream`` (seekable), a ``wav``, ``mp3``, ``ogg`` or ``flac`` file.

    ``ValueError`` if the bytes are not audio of that kind.
    """
    stream.seek(0)
    if container == "wav":
        return wav_duration_of(stream.read(WAV_HEAD_BYTES), size)
    try:
        parsed = mutagen.File(stream)
    except mutagen.MutagenError as exc:
        raise ValueError(f"not {container} audio: {exc}") from None
    length = getattr(getattr(parsed, "info", None), "length", 0) or 0
    if parsed is None or length <= 0:
        raise ValueError(f"not {container} audio")
    return float(length)


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
