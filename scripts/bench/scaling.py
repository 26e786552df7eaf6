"""Benchmark 6, scaling: throughput of benchmark 1's jobs with 1, 2 and 4 worker processes.

The simulators answer almost at once (50 ms per step) and have no caps, so what limits throughput is the
service itself (API, workers, Redis) and the machine's CPU, which the simulators and this client share.
Throughput is jobs completed per second of wall time; the machine's CPU use during the run is shown beside it.

    python scripts/bench/scaling.py [--quick] [--runs N] [--jobs 10]
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench.common import dev_stack, figure, log, parser, report, restart_workers, runs_of, workdir
from scripts.bench.pipeline import SETTINGS, Workload, run_jobs

PART = "6 scaling"
FAST = Workload(chunks=20, tts_s=0.05, image_s=0.05, video_s=0.05)
QUICK_FAST = Workload(chunks=5, tts_s=0.05, image_s=0.05, video_s=0.05)


def main() -> None:
    """Measure and report."""
    import psutil

    args = parser(__doc__ or "")
    args.add_argument("--jobs", type=int, default=None, help="concurrent jobs (default 10; quick 6)")
    options = args.parse_args()
    work = QUICK_FAST if options.quick else FAST
    jobs, runs = options.jobs or (6 if options.quick else 10), runs_of(options, full=2)
    counts = (1, 2) if options.quick else (1, 2, 4)
    rates: dict[int, list[float]] = {}
    cpu: dict[int, float] = {}
    with workdir() as wd, dev_stack(wd, workers=1, **work.knobs(), **SETTINGS) as stack:
        for workers in counts:
            restart_workers(stack, workers)
            run_jobs(stack, work, 1)  # warm-up
            rates[workers] = []
            psutil.cpu_percent()
            for r in range(runs):
                wall = run_jobs(stack, work, jobs)[0]
                rates[workers].append(jobs / wall)
                log(f"scaling: {workers} worker(s), run {r + 1}: {jobs / wall:.2f} jobs/s")
            cpu[workers] = psutil.cpu_percent()
    base = median(rates[1])
    figures = [
        figure(
            PART,
            f"{workers} worker(s): jobs/s",
            "jobs/s",
            rates[workers],
            baseline=f"{median(rates[workers]) / base:.2f}x of 1 worker",
            note=f"machine CPU {cpu[workers]:.0f}% busy",
        )
        for workers in counts
    ]
    report(PART, figures, options, extra={"cpu_busy_pct": cpu, "jobs": jobs, "chunks": work.chunks})


if __name__ == "__main__":
    main()
