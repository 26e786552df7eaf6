"""Regenerate the settings table in README.md from the Settings class (``--check`` fails if it is stale)."""

from __future__ import annotations

import sys
from pathlib import Path

from strangler_bridge.settings import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def render() -> str:
    """The markdown table of every setting."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {f'`{default}`' if default else ''} | {text} |" for name, default, text in settings_table()]
    return "\n".join(rows)


def updated(text: str) -> str:
    """README text with the table between the markers replaced."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main() -> int:
    """Write the table, or with ``--check`` report whether it is current."""
    text = README.read_text()
    new = updated(text)
    if "--check" in sys.argv:
        if new != text:
            print("README settings table is stale: run python scripts/settings_table.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
