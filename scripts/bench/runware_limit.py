"""Benchmark 4 (and issue 6), the Runware limiter: images per second and 429s against a simulator cap of N.

The Runware simulator answers 429 to any request over its account-wide cap of ``CAP`` in-flight requests.
For several settings of ``STRANGLER_RUNWARE_CONCURRENCY`` and 1 and 2 worker processes, the benchmark posts
image batches through the API and times them to completion. The best possible rate is ``CAP / latency``;
every 429 counted by the simulator was caused by us (no 429s are injected). The share of the cap is measured
in the steady state, between 10% and 90% of the images being generated (the simulator's counter, sampled every
20 ms); the end-to-end rate, which adds batch creation, start-up and the last partial wave, is in the note.

    python scripts/bench/runware_limit.py [--quick] [--runs N] [--cap 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncio
import math
import threading
import time
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

import httpx

from scripts.bench.common import (
    TERMINAL,
    Figure,
    dev_stack,
    figure,
    log,
    parser,
    report,
    restart_workers,
    runs_of,
    workdir,
)
from strangler_bridge.cli.devstack import DevStack

PART = "4 Runware limiter"
PER_BATCH = 20


async def _batches(stack: DevStack, batches: int) -> float:
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:

        async def one(n: int) -> None:
            body = {
                "images": [{"prompt": f"scene {n}-{k}"} for k in range(PER_BATCH)],
                "width": 256,
                "height": 256,
                "video_id": f"limit-{n}",
            }
            status: dict[str, Any] = (await client.post("/imagegen/batch", json=body)).raise_for_status().json()
            deadline = time.monotonic() + 120
            while status["status"] not in TERMINAL:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"image batch {status['id']} still {status['status']}")
                params = {"wait": 10, "since": status["version"]}
                status = (await client.get(f"/imagegen/batch/{status['id']}", params=params)).raise_for_status().json()
            if status["status"] != "completed":
                raise RuntimeError(f"image batch ended {status['status']}: {status.get('error')}")

        started = time.monotonic()
        await asyncio.gather(*(one(n) for n in range(batches)))
        return time.monotonic() - started


@dataclass
class Measured:
    """One run: end-to-end and steady-state rates (images/s), 429s, and the most requests in flight."""

    end_to_end: float
    steady: float
    rate_limited: int
    peak: int


def _steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Images per second between 10% and 90% of the images being generated (start-up and tail left out)."""

    def when(count: float) -> float:
        return next(t for t, n in samples if n >= count)

    low, high = math.ceil(0.1 * total), math.floor(0.9 * total)
    return (high - low) / max(when(high) - when(low), 1e-6)


def _measure(stack: DevStack, batches: int) -> Measured:
    total = batches * PER_BATCH
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:  # the simulator's count of generated images, every 20 ms
        with stack.sim("runware") as sim:
            while not done.is_set():
                samples.append((time.monotonic(), int(sim.get("/_sim/counters").json()["images_generated"])))
                done.wait(0.02)

    with stack.sim("runware") as sim:
        sim.post("/_sim/reset").raise_for_status()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            elapsed = asyncio.run(_batches(stack, batches))
        finally:
            done.set()
            sampler.join(5)
        counters = sim.get("/_sim/counters").raise_for_status().json()
    samples.append((time.monotonic(), int(counters["images_generated"])))
    return Measured(
        total / elapsed,
        _steady_rate(samples, total),
        int(counters["rate_limited"]["cap"]),
        int(counters["max_in_flight"]),
    )


def main() -> None:
    """Measure every (limit, workers) pair and report."""
    args = parser(__doc__ or "")
    args.add_argument("--cap", type=int, default=8, help="the simulator's concurrency cap N")
    args.add_argument("--limits", type=int, nargs="*", default=None, help="limits to try (default: N/2, N, 2N)")
    args.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts to try (default: 1 2)")
    options = args.parse_args()
    runs, cap = runs_of(options, full=2), options.cap
    latency = 0.2 if options.quick else 0.4
    batches = 2
    limits = options.limits or ([cap, 2 * cap] if options.quick else [cap // 2, cap, 2 * cap])
    ideal = cap / latency
    runware = {"latency_s": latency, "concurrency_cap": cap, "image_max_side": 32}
    rows: list[dict[str, Any]] = []
    figures: list[Figure] = []
    with workdir() as wd, dev_stack(wd, workers=1, runpod={}, runware=runware, video={}) as stack:
        for workers in [1] if options.quick else options.workers:
            for limit in limits:
                if workers > 1 and limit < cap and not options.limits:
                    continue  # below the cap a second worker changes nothing (1 worker shows it); saves time
                restart_workers(stack, workers, runware_concurrency=limit)
                _measure(stack, 1)  # warm-up: the workers import their task modules
                results = [_measure(stack, batches) for _ in range(runs)]
                rows.append({"workers": workers, "limit": limit, "results": [asdict(r) for r in results]})
                steady = [r.steady for r in results]
                log(
                    f"limiter: {workers} worker(s), limit {limit}: steady {steady} images/s, 429s "
                    f"{[r.rate_limited for r in results]}"
                )
                end_to_end = median(r.end_to_end for r in results)
                figures.append(
                    figure(
                        PART,
                        f"{workers} worker(s), limit {limit}: share of cap throughput",
                        "x",
                        [s / ideal for s in steady],
                        ">= 0.9" if limit == cap else "",
                        baseline=f"cap {ideal:.0f} images/s; peak in flight {max(r.peak for r in results)}/{cap}",
                        note=f"steady {median(steady):.1f} images/s; end to end {end_to_end:.1f} "
                        f"({end_to_end / ideal:.2f} of cap, start-up and tail included)",
                    )
                )
                no_429 = "<= 0" if limit <= cap else ""
                figures.append(
                    figure(
                        PART,
                        f"{workers} worker(s), limit {limit}: 429s",
                        "count",
                        [r.rate_limited for r in results],
                        no_429,
                    )
                )
    report(PART, figures, options, extra={"cap": cap, "latency_s": latency, "rows": rows})


if __name__ == "__main__":
    main()
