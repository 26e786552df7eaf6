"""Durations are measured from the audio data, never trusted from a header's length field."""

from __future__ import annotations

import io
import struct

import pytest

from strangler_bridge.audio import WAV_HEAD_BYTES, audio_duration, tone_wav, wav_duration, wav_duration_of
from strangler_bridge.simulators.runpod.handlers import with_lying_header

pytestmark = pytest.mark.unit


def test_a_wav_whose_header_claims_4_gb_is_measured_by_the_samples_it_holds() -> None:
    honest = tone_wav(1.0)
    lying = with_lying_header(honest)
    assert lying != honest and len(lying) == len(honest)
    assert wav_duration(lying) == pytest.approx(1.0)  # not 134,217 s


def test_a_truncated_wav_counts_only_the_samples_present() -> None:
    clip = tone_wav(1.0, sample_rate=16_000)
    assert wav_duration(clip[: 44 + 16_000]) == pytest.approx(0.5)  # 8000 16-bit frames


def test_the_head_and_the_size_of_a_stored_file_are_enough() -> None:
    clip = tone_wav(3.0)
    assert wav_duration_of(clip[:WAV_HEAD_BYTES], len(clip)) == pytest.approx(3.0)


def test_a_data_size_smaller_than_the_file_stops_at_the_data_chunk() -> None:
    clip = tone_wav(1.0) + b"LIST" + struct.pack("<I", 4) + b"INFO"
    assert wav_duration(clip) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<html>not found</html>", "no RIFF/WAVE header"),
        (b"RIFF\x00\x00\x00\x00WAVE", "no data chunk"),
        (tone_wav(0.1)[:44], "no audio samples"),
        (tone_wav(0.1)[:22] + b"\x00\x00" + tone_wav(0.1)[24:], "0 channels"),
    ],
)
def test_what_is_not_audio_is_refused_with_the_reason(data: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        wav_duration(data)


def test_other_containers_are_measured_by_their_frames_and_garbage_is_refused() -> None:
    with pytest.raises(ValueError, match="not mp3 audio"):
        audio_duration(io.BytesIO(b"\x00" * 4096), 4096, "mp3")
    clip = with_lying_header(tone_wav(0.25))
    assert audio_duration(io.BytesIO(clip), len(clip), "wav") == pytest.approx(0.25)
