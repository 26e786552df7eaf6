"""Documentation that is generated from code stays current."""

from __future__ import annotations

import pytest

from scripts.readme_sections import README, updated

pytestmark = pytest.mark.unit


def test_readme_generated_sections_are_current() -> None:
    text = README.read_text()
    assert updated(text) == text, "run: python scripts/readme_sections.py"
