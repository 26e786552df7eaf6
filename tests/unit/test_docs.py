"""Documentation that is generated from code stays current."""

from __future__ import annotations

import pytest

from scripts.settings_table import README, updated

pytestmark = pytest.mark.unit


def test_readme_settings_table_matches_settings_class() -> None:
    text = README.read_text()
    assert updated(text) == text, "run: python scripts/settings_table.py"
