"""The header readers behind shadow comparisons: image sizes and MP4 durations, never an exception."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from flask_plugin.media import file_size, image_size, mp4_duration
from flask_plugin.testing import mp4, png

pytestmark = pytest.mark.unit


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _box(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", 8 + len(data)) + kind + data


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_image_size_of_real_files(tmp_path: Path, fmt: str) -> None:
    image = pytest.importorskip("PIL.Image")
    path = tmp_path / f"x.{fmt.lower()}"
    image.new("RGB", (320, 176), "teal").save(path, fmt)
    assert image_size(path) == (320, 176)


def test_image_size_of_lossless_and_extended_webp(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    lossless, extended = tmp_path / "l.webp", tmp_path / "x.webp"
    image.new("RGB", (65, 33)).save(lossless, "WEBP", lossless=True)
    image.new("RGBA", (64, 48), (0, 0, 0, 0)).save(extended, "WEBP", exif=b"Exif\x00\x00")
    assert image_size(lossless) == (65, 33)
    assert image_size(extended) == (64, 48)


def test_image_size_skips_jpeg_metadata_before_the_frame(tmp_path: Path) -> None:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof = b"\xff\xc2" + struct.pack(">HBHH", 17, 8, 480, 640) + bytes(10)
    assert image_size(_write(tmp_path, "p.jpg", b"\xff\xd8" + app0 + b"\xff" + sof)) == (640, 480)


def test_image_size_of_the_fakes_png(tmp_path: Path) -> None:
    assert image_size(_write(tmp_path, "a.png", png(64, 36))) == (64, 36)


@pytest.mark.parametrize("data", [b"", b"GIF89a....", b"\xff\xd8\x00\x00garbage", b"RIFF\x00\x00\x00\x00WEBPVP8 "])
def test_image_size_of_unknown_or_broken_data_is_none(tmp_path: Path, data: bytes) -> None:
    assert image_size(_write(tmp_path, "x", data)) is None


def test_missing_files_read_as_nothing(tmp_path: Path) -> None:
    assert image_size(tmp_path / "nope.png") is None
    assert mp4_duration(tmp_path / "nope.mp4") is None
    assert file_size(tmp_path / "nope") == 0
    assert file_size(None) == 0
    assert file_size(_write(tmp_path, "f", b"abc")) == 3


def test_mp4_duration_of_the_fakes_mp4(tmp_path: Path) -> None:
    assert mp4_duration(_write(tmp_path, "v.mp4", mp4(2.5))) == pytest.approx(2.5)


def test_mp4_duration_finds_moov_after_a_large_mdat(tmp_path: Path) -> None:
    mdat_64 = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 16 + 100_000) + bytes(100_000)
    data = (
        _box(b"ftyp", b"isom" + bytes(8)) + _box(b"mdat", bytes(50_000)) + mdat_64 + mp4(1.25)[28:]
    )  # the fake's moov, without its ftyp
    assert mp4_duration(_write(tmp_path, "v.mp4", data)) == pytest.approx(1.25)


def test_mp4_duration_reads_a_version_1_header(tmp_path: Path) -> None:
    mvhd = b"\x01" + bytes(3) + struct.pack(">QQIQ", 0, 0, 600, 1800) + bytes(80)
    assert mp4_duration(_write(tmp_path, "v.mp4", _box(b"moov", _box(b"mvhd", mvhd)))) == pytest.approx(3.0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"STRANGLER-BRIDGE PLACEHOLDER video",
        _box(b"ftyp", b"isom"),
        _box(b"moov", _box(b"trak", b"")),
        _box(b"moov", _box(b"mvhd", bytes(10))),
        _box(b"moov", _box(b"mvhd", bytes(4) + struct.pack(">IIII", 0, 0, 0, 5))),  # timescale 0
        struct.pack(">I", 4) + b"moov",  # a size smaller than its header
    ],
)
def test_mp4_duration_of_anything_else_is_none(tmp_path: Path, data: bytes) -> None:
    assert mp4_duration(_write(tmp_path, "v.mp4", data)) is None


def test_mp4_duration_of_a_real_encoded_video(tmp_path: Path) -> None:
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    path = tmp_path / "real.mp4"
    command = [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "color=c=blue:s=32x32:d=1.5:r=10", "-pix_fmt", "yuv420p"]
    subprocess.run([*command, str(path)], check=True, timeout=60)
    assert mp4_duration(path) == pytest.approx(1.5, abs=0.05)
