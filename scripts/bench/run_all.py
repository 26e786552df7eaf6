"""Run every benchmark part (each in its own process, one after another) and print one table.

    python scripts/bench/run_all.py            # the full run (under 10 minutes on 2 cores)
    python scripts/bench/run_all.py --quick    # a smoke run of about a minute; its figures mean nothing
    python scripts/bench/run_all.py --only pipeline,ingest

The full run writes every figure, with each run's value and the machine it ran on, to
``scripts/bench/results/latest.json`` (or ``--out``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import json
import subprocess
import tempfile
import time
from typing import Any

from scripts.bench.common import Figure, log, machine, table

HERE = Path(__file__).resolve().parent
PARTS = ("pipeline", "ingest", "completion", "runware_limit", "memory", "scaling", "fallback", "reuse")
PART_TIMEOUT_S = 480


def run_part(name: str, quick: bool, runs: int | None, out: Path) -> dict[str, Any]:
    """Run one part in a fresh process and return what it wrote."""
    command = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out)]
    command += ["--quick"] if quick else []
    command += ["--runs", str(runs)] if runs else []
    subprocess.run(command, check=True, timeout=PART_TIMEOUT_S)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> None:
    """Run the parts, print the table, write the results."""
    args = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args.add_argument("--quick", action="store_true", help="smoke run (about a minute)")
    args.add_argument("--runs", type=int, default=None, help="override each part's number of runs")
    args.add_argument("--only", default="", help=f"comma-separated parts among {', '.join(PARTS)}")
    args.add_argument("--out", type=Path, default=None, help="results JSON (default: results/latest.json if full)")
    options = args.parse_args()
    parts = [p for p in options.only.split(",") if p] or list(PARTS)
    unknown = set(parts) - set(PARTS)
    if unknown:
        args.error(f"unknown parts: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    host = machine()
    results, failed = [], []
    with tempfile.TemporaryDirectory(prefix="strangler-bench-all-") as tmp:
        for name in parts:
            log(f"== {name}")
            try:
                results.append(run_part(name, options.quick, options.runs, Path(tmp) / f"{name}.json"))
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                failed.append(name)
                log(f"{name} failed: {exc}")
    elapsed = time.monotonic() - started
    figures = [Figure(**{k: f[k] for k in Figure.__dataclass_fields__}) for r in results for f in r["figures"]]
    print(f"\n== all parts{' (quick: not meaningful)' if options.quick else ''}: {elapsed:.0f} s")
    print(f"machine: {host['nproc']} CPUs, Python {host['python']}, load average {host['loadavg']}")
    print(table(figures))
    out = options.out or (None if options.quick else HERE / "results" / "latest.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(["python", "scripts/bench/run_all.py", *sys.argv[1:]]),
            "elapsed_s": round(elapsed, 1),
            "machine": host,
            "parts": results,
            "failed": failed,
        }
        out.write_text(json.dumps(body, indent=2) + "\n")
        print(f"results written to {out}")
    if failed:
        sys.exit(f"failed parts: {', '.join(failed)}")


if __name__ == "__main__":
    main()
