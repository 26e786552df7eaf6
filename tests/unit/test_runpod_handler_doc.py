"""The example RunPod handler in docs/simulators/runpod.md is the one the e2e tests run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_handler_is_the_example_file() -> None:
    handler = (ROOT / "examples" / "runpod_worker" / "handler.py").read_text()
    doc = (ROOT / "docs" / "simulators" / "runpod.md").read_text()
    assert f"```python\n{handler}```" in doc, "copy examples/runpod_worker/handler.py into docs/simulators/runpod.md"
