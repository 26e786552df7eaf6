"""Benchmark 1, the pipeline's critical path: wall time of whole jobs divided by the sum of the step latencies.

The simulators have fixed latencies (TTS 1.0 s per RunPod job, 1.5 s per image, 2.0 s per render) and caps
too large to bind, so a job can never finish faster than 4.5 s; what is above that is the service's own
overhead. Measured for 1 job and for 50 concurrent jobs of 20 chunks and 20 images, beside two baselines on
the same simulators in the same run: the legacy way (sequential, in the request) and a naive queue design
(one blocking RQ job per chunk and per image, with as many workers as the service has).

    python scripts/bench/pipeline.py [--quick] [--runs N] [--jobs 50] [--workers 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncio
import concurrent.futures
import os
import time
from dataclasses import dataclass
from statistics import median
from typing import Any

import httpx

from scripts.bench import baselines
from scripts.bench.common import (
    TERMINAL,
    CpuMeter,
    Figure,
    dev_stack,
    figure,
    log,
    parser,
    report,
    runs_of,
    workdir,
)
from strangler_bridge.cli.devstack import DevStack

PART = "1 pipeline"


@dataclass(frozen=True)
class Workload:
    """What one job asks for and how long each provider step takes."""

    chunks: int = 20
    tts_s: float = 1.0
    image_s: float = 1.5
    video_s: float = 2.0

    @property
    def critical_path_s(self) -> float:
        """The least time one job can take: the sum of the step latencies."""
        return self.tts_s + self.image_s + self.video_s

    def knobs(self, *, runpod_workers: int = 2000) -> dict[str, dict[str, Any]]:
        """Simulator knobs: fixed latencies, caps that do not bind, small images, no video encoding."""
        return {
            "runpod": {"execution_time_s": self.tts_s, "workers": runpod_workers, "webhook_retry_delay_s": 0.2},
            "runware": {"latency_s": self.image_s, "image_max_side": 32, "concurrency_cap": 100_000},
            # The placeholder skips ffmpeg, whose encoding time would otherwise be added to the 2 s render.
            "video": {"latency_s": self.video_s, "force_placeholder": True, "concurrency": 64},
        }

    def job_body(self, n: int) -> dict[str, Any]:
        """A POST /jobs body (short texts keep the TTS simulator's audio synthesis cheap)."""
        return {
            "chunks": [{"text": f"Scene {k}."} for k in range(self.chunks)],
            "voice": "narrator",
            "images": {"width": 256, "height": 256},
            "video": {"width": 320, "height": 240, "fps": 10},
            "video_id": f"bench-{n}",
        }


FULL = Workload()
QUICK = Workload(chunks=5, tts_s=0.2, image_s=0.3, video_s=0.4)
#: Service settings for benchmark 1: the Runware limit far above what 50 jobs need, so it does not bind.
SETTINGS: dict[str, Any] = {"runware_concurrency": 100_000}


async def follow_job(client: httpx.AsyncClient, body: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Create a job and long-poll it until it completes; its final status (an error if it did not complete)."""
    created = await client.post("/jobs", json=body)
    created.raise_for_status()
    status: dict[str, Any] = created.json()
    while status["status"] not in TERMINAL:
        wait = min(10.0, deadline - time.monotonic())
        if wait <= 0:
            raise TimeoutError(f"job {status['id']} still {status['status']} at the deadline")
        answer = await client.get(f"/jobs/{status['id']}", params={"wait": wait, "since": status["version"]})
        status = answer.raise_for_status().json()
    if status["status"] != "completed":
        raise RuntimeError(f"job {status['id']} ended {status['status']}: {status.get('error')}")
    return status


async def _follow(
    client: httpx.AsyncClient, body: dict[str, Any], started: float, deadline: float, *, n_jobs: int, crit: float
) -> float:
    status = await follow_job(client, body, deadline)
    elapsed = time.monotonic() - started
    if n_jobs == 1 and elapsed > 2 * crit:  # an outlier: say which step took the time
        steps = ", ".join(f"{s['name']} {s['duration_s']} s" for s in status["steps"])
        log(f"pipeline: slow job {status['id']} ({elapsed:.1f} s): {steps}")
    return elapsed


async def _run_jobs(stack: DevStack, work: Workload, n: int, timeout_s: float) -> tuple[float, list[float]]:
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60, limits=limits) as client:
        started = time.monotonic()
        deadline = started + timeout_s
        crit = work.critical_path_s
        each = await asyncio.gather(
            *(_follow(client, work.job_body(i), started, deadline, n_jobs=n, crit=crit) for i in range(n))
        )
    return time.monotonic() - started, list(each)


def run_jobs(stack: DevStack, work: Workload, n: int, timeout_s: float = 300.0) -> tuple[float, list[float]]:
    """Create ``n`` jobs at once and follow each by long-polling; ``(wall time, each job's time)``."""
    return asyncio.run(_run_jobs(stack, work, n, timeout_s))


def measure(options: Any) -> list[Figure]:
    """Run benchmark 1 and return its figures."""
    work = QUICK if options.quick else FULL
    many = options.jobs or (5 if options.quick else 50)
    runs = runs_of(options)
    crit = work.critical_path_s
    with workdir() as wd, dev_stack(wd, workers=options.workers, **work.knobs(), **SETTINGS) as stack:
        log(f"pipeline: warm-up job (critical path {crit:.1f} s, {options.workers} workers)")
        run_jobs(stack, work, 1)
        one, many_walls = [], []
        for r in range(runs):
            one.append(run_jobs(stack, work, 1)[0])
            log(f"pipeline: service, 1 job, run {r + 1}: {one[-1]:.2f} s")
        cpu: list[CpuMeter] = []
        for r in range(runs):
            with CpuMeter(stack) as meter:
                many_walls.append(run_jobs(stack, work, many)[0])
            cpu.append(meter)
            log(f"pipeline: service, {many} jobs, run {r + 1}: {many_walls[-1]:.2f} s; CPU {meter.summary()}")
        # The legacy way and the naive queue's single job run at the same time (to keep the whole suite under
        # 10 minutes): both spend nearly all their time waiting on the simulators, whose caps do not bind.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            legacy_runs = pool.submit(baselines.legacy_runs, stack, work, runs=options.baseline_runs)
            naive_one = baselines.naive_run(stack, work, jobs=1, workers=options.workers, budget_s=600)
            legacy = legacy_runs.result()
        naive_many = baselines.naive_run(
            stack, work, jobs=many, workers=options.workers, budget_s=3.0 if options.quick else 8.0
        )
    cores = os.cpu_count() or 1
    legacy_s = median(legacy)
    one_med = median(one)
    naive_note = (
        f"naive {naive_many.jobs} jobs: projected {naive_many.wall_s:.0f} s "
        f"({naive_many.wall_s / crit:.1f}x crit.) from {naive_many.progress_pct:.0f}% done "
        f"in {naive_many.elapsed_s:.0f} s"
    )
    return [
        figure(
            PART,
            "service, 1 job: wall / critical path",
            "x",
            [w / crit for w in one],
            "<= 1.10",
            baseline=f"legacy {legacy_s / crit:.1f}x, naive {naive_one.wall_s / crit:.1f}x",
            note=f"critical path {crit:.1f} s; service 1 job {one_med:.2f} s",
        ),
        figure(
            PART,
            f"service, {many} jobs: wall / critical path",
            "x",
            [w / crit for w in many_walls],
            "<= 1.25",
            baseline=naive_note,
            note=f"{many} jobs x {work.chunks} chunks + {work.chunks} images; {options.workers} workers",
        ),
        figure(
            PART,
            "speed-up over the legacy way, 1 job",
            "x",
            [legacy_s / w for w in one],
            ">= 10",
            baseline=f"legacy {legacy_s:.1f} s (n={len(legacy)})",
        ),
        figure(
            PART,
            f"CPU floor of {many} jobs on {cores} cores / critical path",
            "x",
            [m.total / cores / crit for m in cpu],
            note=f"CPU seconds of the run: {cpu[len(cpu) // 2].summary()}",
        ),
        figure(PART, "service, 1 job: wall", "s", one, baseline=f"naive queue {naive_one.wall_s:.1f} s"),
        figure(
            PART, f"service, {many} jobs: wall", "s", many_walls, baseline=f"naive projected {naive_many.wall_s:.0f} s"
        ),
        figure(PART, "legacy way, 1 job: wall", "s", legacy),
    ]


def main() -> None:
    """Command line entry point."""
    args = parser(__doc__ or "")
    args.add_argument("--jobs", type=int, default=None, help="concurrent jobs of the second figure (default 50)")
    args.add_argument("--workers", type=int, default=2, help="worker processes (service and naive design)")
    args.add_argument("--baseline-runs", type=int, default=1, help="runs of the legacy baseline (each ~52 s)")
    options = args.parse_args()
    report(PART, measure(options), options)


if __name__ == "__main__":
    main()
