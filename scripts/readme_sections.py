"""Regenerate README.md's generated sections (``--check`` fails if any is stale).

- the settings table, from the :class:`~strangler_bridge.settings.Settings` class;
- "Migrating your Flask app", copied from docs/MIGRATING.md (whose code blocks a test keeps identical to
  the example app).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from strangler_bridge.settings import settings_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def settings_markdown() -> str:
    """The markdown table of every setting."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {f'`{default}`' if default else ''} | {text} |" for name, default, text in settings_table()]
    return "\n".join(rows)


def migrating_markdown() -> str:
    """docs/MIGRATING.md without its own heading (README supplies it)."""
    lines = (ROOT / "docs" / "MIGRATING.md").read_text().strip().splitlines()
    body = lines[1:] if lines and lines[0].startswith("#") else lines
    return "\n".join(body).strip()


SECTIONS: dict[str, Callable[[], str]] = {"settings-table": settings_markdown, "migrating": migrating_markdown}


def updated(text: str) -> str:
    """README text with every generated section replaced."""
    for name, render in SECTIONS.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{render()}\n{end}{tail}"
    return text


def main() -> int:
    """Write the sections, or with ``--check`` report whether they are current."""
    text = README.read_text()
    new = updated(text)
    if "--check" in sys.argv:
        if new != text:
            print("README generated sections are stale: run python scripts/readme_sections.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
