"""Regenerate the generated sections of README.md and docs/OPERATIONS.md (``--check`` fails if any is stale).

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
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"


def updated(text: str) -> str:
    """A document's text with every generated section it has replaced."""
    for name, render in SECTIONS.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start not in text:
            continue
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{render()}\n{end}{tail}"
    return text


def main() -> int:
    """Write the sections, or with ``--check`` report whether they are current."""
    stale = []
    for doc in (README, OPERATIONS):
        text = doc.read_text()
        new = updated(text)
        if new != text:
            stale.append(doc.name)
            if "--check" not in sys.argv:
                doc.write_text(new)
    if stale and "--check" in sys.argv:
        print(f"generated sections are stale in {', '.join(stale)}: run python scripts/readme_sections.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
