"""Documentation that is generated from code stays current."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.readme_sections import OPERATIONS, README, updated

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("doc", [README, OPERATIONS], ids=lambda p: p.name)
def test_generated_sections_are_current(doc: Path) -> None:
    text = doc.read_text()
    assert updated(text) == text, "run: python scripts/readme_sections.py"
