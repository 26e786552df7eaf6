"""Run the fault matrix and print (and publish) its table.

    python -m tests.faults.matrix --jobs 20                 # every scenario, updates docs/RELIABILITY.md
    python -m tests.faults.matrix --jobs 5 --scenario redis-restart --no-write

Exits 1 if a transient scenario did not end with every job completed, a permanent one with every job failed for
the expected reason, or any paid twice, lost an artifact or stored a file unlike its record.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from tests.faults import report
from tests.faults.harness import Outcome, Scenario, run_scenario
from tests.faults.scenarios import SCENARIOS, by_key

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "RELIABILITY.md"
SIZE_ENV = "STRANGLER_FAULT_JOBS"


def jobs_from_env(default: int) -> int:
    """The matrix size from ``STRANGLER_FAULT_JOBS`` (jobs per scenario), else ``default``."""
    value = os.environ.get(SIZE_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def run_all(scenarios: list[Scenario], jobs: int, workdir: Path) -> list[tuple[Scenario, Outcome]]:
    """Run each scenario in turn, printing a line as each ends."""
    rows = []
    for scenario in scenarios:
        outcome = run_scenario(scenario, jobs, workdir / scenario.key)
        print(f"{scenario.key}: {json.dumps(outcome.as_json())}", flush=True)
        rows.append((scenario, outcome))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults.matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=jobs_from_env(20), help="pipeline jobs per scenario")
    parser.add_argument("--scenario", action="append", choices=[s.key for s in SCENARIOS], help="run only these")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/RELIABILITY.md alone")
    parser.add_argument("--json", type=Path, help="also write the outcomes as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep logs and artifacts here (default: a temp dir)")
    args = parser.parse_args(argv)
    scenarios = [by_key(key) for key in args.scenario] if args.scenario else SCENARIOS
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="strangler-faults-"))
    print(f"fault matrix: {len(scenarios)} scenarios x {args.jobs} jobs; logs under {workdir}", flush=True)
    rows = run_all(scenarios, args.jobs, workdir)
    print()
    print(report.table(rows))
    if args.json:
        args.json.write_text(json.dumps([outcome.as_json() for _, outcome in rows], indent=2))
    if not args.no_write:
        command = "python -m tests.faults.matrix " + shlex.join(sys.argv[1:] if argv is None else argv)
        report.write(DOC, report.block(rows, command.strip(), args.jobs))
        print(f"\nupdated {DOC.relative_to(ROOT)}")
    broken = [s.key for s, outcome in rows if (s.transient or s.expect_reason) and not s.passed(outcome)]
    if broken:
        print(f"\nnot clean: {', '.join(broken)}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
