"""The benchmarks of scripts/bench still run: each part's quick mode prints (and writes) its figures.

No timing thresholds here: the quick mode's figures are not meaningful, only their presence is checked.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench"

#: Words that must appear in the names of each part's figures.
EXPECTED = {
    "pipeline": ["1 job: wall / critical path", "jobs: wall / critical path", "speed-up over the legacy way"],
    "ingest": ["no-op POST", "/tts/callback: requests/s", "callback rate / no-op rate", "p99"],
    "completion": ["p95", "p50"],
    "runware_limit": ["share of cap throughput", "429s"],
    "memory": ["API peak RSS", "worker peak RSS", "ingesting 50 MB", "streaming 50 MB"],
    "scaling": ["1 worker(s): jobs/s", "2 worker(s): jobs/s"],
}


def run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.parametrize("part", list(EXPECTED))
def test_each_part_prints_its_figures_in_quick_mode(part: str, tmp_path: Path) -> None:
    out = tmp_path / f"{part}.json"
    result = run([str(BENCH / f"{part}.py"), "--quick", "--json", str(out)], timeout=180)
    written = json.loads(out.read_text())
    names = [f["name"] for f in written["figures"]]
    for words in EXPECTED[part]:
        assert any(words in name for name in names), f"no figure about {words!r} in {names}"
        assert words in result.stdout
    for fig in written["figures"]:
        assert fig["runs"] and all(math.isfinite(value) for value in fig["runs"]), fig


def test_run_all_prints_one_table_of_the_parts_it_ran(tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    result = run([str(BENCH / "run_all.py"), "--quick", "--only", "completion", "--out", str(out)], timeout=180)
    assert "== all parts" in result.stdout
    assert "3 completion latency" in result.stdout.split("== all parts")[1]
    written = json.loads(out.read_text())
    assert written["failed"] == []
    assert written["machine"]["nproc"]
