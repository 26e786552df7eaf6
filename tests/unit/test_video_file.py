"""A completed video is a real MP4 whose duration matches its segments."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from strangler_bridge.audio import tone_wav
from strangler_bridge.simulators.video.render import PLACEHOLDER_HEADER, find_ffmpeg
from strangler_bridge.video_file import check_video, mp4_duration

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 2-second MP4 (a still and a tone), encoded by the ffmpeg the simulators use."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:  # pragma: no cover - the dev extra installs imageio-ffmpeg
        pytest.skip("no ffmpeg")
    folder = tmp_path_factory.mktemp("mp4")
    (folder / "a.wav").write_bytes(tone_wav(2.0))
    out = folder / "v.mp4"
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=blue:s=32x32:r=5:d=2"]
    args += ["-i", str(folder / "a.wav"), "-shortest", "-c:v", "libx264", "-c:a", "aac", "-pix_fmt", "yuv420p"]
    subprocess.run([*args, str(out)], check=True, timeout=60)
    return Path(out).read_bytes()


def test_a_real_mp4_is_measured_and_accepted_when_it_matches(mp4: bytes) -> None:
    assert mp4_duration(io.BytesIO(mp4)) == pytest.approx(2.0, abs=0.1)
    assert check_video(io.BytesIO(mp4), expected_s=2.0, fps=5) == pytest.approx(2.0, abs=0.1)


def test_an_mp4_that_does_not_match_its_segments_is_refused(mp4: bytes) -> None:
    with pytest.raises(ValueError, match=r"segments end at 5\.000 s"):
        check_video(io.BytesIO(mp4), expected_s=5.0, fps=5)


@pytest.mark.parametrize(
    "data",
    [b"", b"<html>302 Found</html>", PLACEHOLDER_HEADER + b"{}", tone_wav(1.0)],
    ids=["empty", "html", "placeholder", "wav"],
)
def test_what_is_not_an_mp4_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not an MP4"):
        check_video(io.BytesIO(data), expected_s=1.0, fps=25)


def test_a_cut_mp4_is_refused(mp4: bytes) -> None:
    with pytest.raises(ValueError, match="not an MP4"):
        mp4_duration(io.BytesIO(mp4[: len(mp4) // 3]))
