"""The benchmarks of scripts/bench still run: each part's quick mode prints (and writes) its figures.

No timing thresholds here: the quick mode's figures are not meaningful, only their presence is checked. The
parts run three at a time (each in its own process, with its own stack).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
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
    "fallback": ["API stopped: breaker open", "API hung: breaker open", "provider stuck: first video"],
    "storage": ["s3 redirect, 1 job: wall / local", "s3 proxy, 5 jobs: wall / local", "API CPU per job"],
    "reuse": ["provider calls / first's", "provider cost / first's", "changed chunk's critical path"],
}
TIMEOUT_S = 300
AT_ONCE = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str, Path]]]:
    """Every part's quick mode, plus run_all on one part, started together; ``name -> (code, output, json)``."""
    tmp = tmp_path_factory.mktemp("bench")
    commands = {part: [str(BENCH / f"{part}.py"), "--quick", "--json", str(tmp / f"{part}.json")] for part in EXPECTED}
    commands["run_all"] = [str(BENCH / "run_all.py"), "--quick", "--only", "completion", "--out", str(tmp / "all.json")]
    results = {}
    names = list(commands)
    # A few at a time: all seven at once (each a stack of processes) starved the other tests' servers of CPU
    # for seconds on a 2-core machine under `pytest -n 3`.
    for start in range(0, len(names), AT_ONCE):
        procs = {
            name: subprocess.Popen(
                [sys.executable, *commands[name]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for name in names[start : start + AT_ONCE]
        }
        try:
            for name, proc in procs.items():
                output, _ = proc.communicate(timeout=TIMEOUT_S)
                json_path = tmp / ("all.json" if name == "run_all" else f"{name}.json")
                results[name] = (proc.returncode, output, json_path)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    yield results


@pytest.mark.parametrize("part", list(EXPECTED))
def test_each_part_prints_its_figures_in_quick_mode(part: str, runs: dict[str, tuple[int, str, Path]]) -> None:
    code, output, json_path = runs[part]
    assert code == 0, output[-4000:]
    written = json.loads(json_path.read_text())
    names = [f["name"] for f in written["figures"]]
    for words in EXPECTED[part]:
        assert any(words in name for name in names), f"no figure about {words!r} in {names}"
        assert words in output
    for fig in written["figures"]:
        assert fig["runs"] and all(math.isfinite(value) for value in fig["runs"]), fig


def test_run_all_prints_one_table_of_the_parts_it_ran(runs: dict[str, tuple[int, str, Path]]) -> None:
    code, output, json_path = runs["run_all"]
    assert code == 0, output[-4000:]
    assert "3 completion latency" in output.split("== all parts")[1]
    written = json.loads(json_path.read_text())
    assert written["failed"] == []
    assert written["machine"]["nproc"]
