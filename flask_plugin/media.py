"""Just enough of the PNG, JPEG, WebP and MP4 formats to compare shadow results without a media library.

Shadow comparisons read an image's pixel size and an MP4's duration from the files' headers. Anything
these readers do not understand gives ``None`` (the comparison then skips that check), never an error.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_PNG = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (the ones that carry the size): SOF0-3, 5-7, 9-11, 13-15.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_HEAD_BYTES = 256 * 1024  # a JPEG's frame header comes after its metadata, which is rarely larger


def file_size(path: object) -> int:
    """Bytes in the file at ``path``; 0 when it is missing, unreadable or ``path`` is not a path."""
    try:
        return Path(path).stat().st_size  # type: ignore[arg-type]
    except (OSError, TypeError):
        return 0


def image_size(path: Path | str) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, JPEG or WebP file; ``None`` if unknown or unreadable."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_HEAD_BYTES)
    except OSError:
        return None
    if data.startswith(_PNG) and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind, body = data[12:16], data[20:30]
    if len(body) < 10:
        return None
    if kind == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    return None


def mp4_duration(path: Path | str) -> float | None:
    """Seconds of an MP4 (its ``moov/mvhd`` box, wherever in the file); ``None`` if not an MP4 or unreadable."""
    try:
        with open(path, "rb") as handle:
            moov = _find_box(handle, b"moov")
    except OSError:
        return None
    if moov is None:
        return None
    position = 0
    while position + 8 <= len(moov):
        size, kind = struct.unpack(">I4s", moov[position : position + 8])
        if kind == b"mvhd":
            return _mvhd_seconds(moov[position + 8 : position + size])
        if size < 8:
            return None
        position += size
    return None


def _find_box(handle: BinaryIO, wanted: bytes, limit: int = 64 * 1024 * 1024) -> bytes | None:
    """The payload of the first top-level box of type ``wanted`` (skipping the others without reading them)."""
    while header := handle.read(8):
        if len(header) < 8:
            return None
        size, kind = struct.unpack(">I4s", header)
        header_size = 8
        if size == 1:  # a 64-bit size follows
            size, header_size = struct.unpack(">Q", handle.read(8))[0], 16
        elif size == 0:  # the box runs to the end of the file
            return handle.read(limit) if kind == wanted else None
        if size < header_size:
            return None
        if kind == wanted:
            return handle.read(min(size - header_size, limit))
        handle.seek(size - header_size, 1)
    return None


def _mvhd_seconds(body: bytes) -> float | None:
    if not body:
        return None
    if body[0] == 1 and len(body) >= 32:  # version 1: 64-bit times
        timescale, duration = struct.unpack(">IQ", body[20:32])
    elif len(body) >= 20:
        timescale, duration = struct.unpack(">II", body[12:20])
    else:
        return None
    return duration / timescale if timescale else None
