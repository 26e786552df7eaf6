"""Real images for the simulator: a two-colour gradient picked from the prompt and seed, with the prompt written on.

Drawing is deterministic (same prompt, seed, size and format give the same bytes) and fast: the image has the
requested aspect ratio, scaled down so its longest side is at most ``max_side`` (the ``image_max_side`` knob).
"""

from __future__ import annotations

import hashlib
import io
import textwrap

from PIL import Image, ImageDraw, ImageFont

#: outputFormat -> (Pillow format, file extension, MIME type).
FORMATS = {
    "PNG": ("PNG", "png", "image/png"),
    "JPG": ("JPEG", "jpg", "image/jpeg"),
    "WEBP": ("WEBP", "webp", "image/webp"),
}


def drawn_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size actually drawn: ``width x height`` scaled down to fit ``max_side``, aspect ratio kept."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def render(prompt: str, seed: int, width: int, height: int, output_format: str, *, max_side: int) -> bytes:
    """Encode one image for ``prompt`` in ``output_format`` (PNG, JPG or WEBP, any case)."""
    pil_format = FORMATS[output_format.upper()][0]
    size = drawn_size(width, height, max_side)
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    start, end = digest[:3], digest[3:6]
    # A 256-step gradient resized to the target is much faster than drawing it pixel by pixel.
    ramp = Image.linear_gradient("L").rotate(90 * (digest[6] % 4)).resize(size)
    channels = [ramp.point(_mix(start[i], end[i])) for i in range(3)]
    image = Image.merge("RGB", channels)
    _write_prompt(image, prompt)
    out = io.BytesIO()
    image.save(out, format=pil_format)
    return out.getvalue()


def _mix(low: int, high: int) -> list[int]:
    return [low + (high - low) * level // 255 for level in range(256)]


def _write_prompt(image: Image.Image, prompt: str) -> None:
    width, height = image.size
    if width < 48 or height < 24:
        return
    font = ImageFont.load_default()
    lines = textwrap.wrap(prompt, width=max(8, width // 7))[: max(1, height // 14 - 1)]
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        y = 4 + row * 13
        draw.text((5, y + 1), line, fill=(0, 0, 0), font=font)
        draw.text((4, y), line, fill=(255, 255, 255), font=font)
