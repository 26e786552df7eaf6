"""The "Migrating your Flask app" text shows only code that runs: every block is copied from the example app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "legacy_app"
HEADING = "Migrating your Flask app"
#: (document, section heading or None for the whole file)
DOCS = [(ROOT / "docs" / "MIGRATING.md", None), (ROOT / "README.md", HEADING)]

_FENCE = re.compile(r"^```(?P<lang>[^\n]*)\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^(?P<level>#+)\s+(?P<title>.+?)\s*$", re.MULTILINE)


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block."""
    return [(m["lang"].strip(), m["code"]) for m in _FENCE.finditer(markdown)]


def section(markdown: str, title: str) -> str | None:
    """The text under the heading ``title``, up to the next heading of the same or a higher level."""
    headings = list(_HEADING.finditer(markdown))
    for position, match in enumerate(headings):
        if match["title"] == title:
            level = len(match["level"])
            end = next((h.start() for h in headings[position + 1 :] if len(h["level"]) <= level), len(markdown))
            return markdown[match.end() : end]
    return None


@pytest.mark.parametrize(("doc", "heading"), DOCS, ids=lambda value: getattr(value, "name", value))
def test_every_code_block_is_copied_verbatim_from_the_example_app(doc: Path, heading: str | None) -> None:
    text = doc.read_text()
    if heading is not None:
        found = section(text, heading)
        if found is None:
            pytest.skip(f"{doc.name} has no '{heading}' section yet")
        text = found
    blocks = code_blocks(text)
    assert blocks, f"{doc.name}: no code blocks found"
    python = [p.read_text() for p in EXAMPLE.rglob("*.py")]
    every = python + [p.read_text() for p in EXAMPLE.rglob("*.md")]
    missing = [
        code for lang, code in blocks if not any(code in source for source in (python if lang == "python" else every))
    ]
    assert missing == [], f"{doc.name}: blocks not found verbatim in {EXAMPLE.relative_to(ROOT)}"


def test_the_section_finder_stops_at_the_next_heading_of_its_level() -> None:
    text = "# A\n## Migrating your Flask app\nx\n### sub\ny\n## Next\nz\n"
    assert section(text, HEADING) == "\nx\n### sub\ny\n"
