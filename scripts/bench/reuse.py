"""Benchmark 8, pay once: a 20-chunk job, then the same script with one sentence changed, in the same run.

The second job should reuse the audio and pictures of the 19 unchanged sentences: it pays RunPod for one
chunk and Runware for one image (plus the render, which is never reused), so its provider calls and cost are
at most a tenth of the first's, and its wall time is the changed chunk's critical path (TTS, image) plus the
render, as for any one job. The simulators' latencies are those of benchmark 1 (TTS 1.0 s per RunPod job,
1.5 s per image, 2.0 s per render); RunPod is priced at ``USD_PER_S`` per second of ``executionTime`` and the
Runware simulator reports its default $0.0013 per image. Each run uses a script of its own, so no run reuses
another's work.

    python scripts/bench/reuse.py [--quick] [--runs N] [--workers 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import time
from dataclasses import dataclass
from statistics import median
from typing import Any

from scripts.bench.common import TERMINAL, Figure, dev_stack, figure, log, parser, report, runs_of, workdir
from scripts.bench.pipeline import FULL, QUICK, SETTINGS, Workload
from strangler_bridge.cli.devstack import DevStack

PART = "8 reuse"
#: A plausible serverless GPU price (an A4000-class flex worker is about $0.00016-0.00034 per second).
USD_PER_S = 0.00031
CHANGED = 7  # the sentence the second job rewrites


@dataclass(frozen=True)
class Paid:
    """What one job cost: provider calls (RunPod jobs + Runware tasks), USD, renders and wall time."""

    calls: int
    cost: float
    renders: int
    wall_s: float
    reused: int


def script(work: Workload, run: int, *, edited: bool) -> dict[str, Any]:
    """A job of ``work.chunks`` sentences with fixed-seed pictures; ``edited``: one sentence rewritten."""
    chunks = [{"text": f"Run {run}, scene {k}."} for k in range(work.chunks)]
    if edited:
        chunks[CHANGED % work.chunks]["text"] = f"Run {run}, the scene the editor rewrote."
    return {
        "chunks": chunks,
        "voice": "narrator",
        "images": {"width": 256, "height": 256, "seed": 42},
        "video": {"width": 320, "height": 240, "fps": 10},
        "video_id": f"bench-reuse-{run}",
    }


def _calls(stack: DevStack) -> tuple[int, int]:
    return (
        stack.counters("runpod")["jobs_received_total"] + stack.counters("runware")["tasks_received"],
        stack.counters("video")["submits_total"],
    )


def run_job(stack: DevStack, body: dict[str, Any], timeout_s: float = 300.0) -> Paid:
    """Create one job, follow it to the end by long-polling, and say what it cost."""
    calls, renders = _calls(stack)
    with stack.client() as client:
        started = time.monotonic()
        status: dict[str, Any] = client.post("/jobs", json=body).raise_for_status().json()
        deadline = started + timeout_s
        while status["status"] not in TERMINAL:
            wait = min(10.0, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError(f"job {status['id']} still {status['status']} at the deadline")
            answer = client.get(f"/jobs/{status['id']}", params={"wait": wait, "since": status["version"]})
            status = answer.raise_for_status().json()
        wall = time.monotonic() - started
    if status["status"] != "completed":
        raise RuntimeError(f"job {status['id']} ended {status['status']}: {status.get('error')}")
    after_calls, after_renders = _calls(stack)
    return Paid(after_calls - calls, status["cost_total"] or 0.0, after_renders - renders, wall, status["reused"])


def _ratios(firsts: list[Paid], seconds: list[Paid], field: str) -> list[float]:
    """Each run's second job's ``field`` over its first job's."""
    return [float(getattr(s, field)) / float(getattr(f, field)) for f, s in zip(firsts, seconds, strict=True)]


def measure(options: Any) -> list[Figure]:
    """Run benchmark 8 and return its figures."""
    work = QUICK if options.quick else FULL
    crit = work.critical_path_s  # the changed chunk goes through every step: TTS, image, then the render
    runs = runs_of(options)
    firsts: list[Paid] = []
    seconds: list[Paid] = []
    knobs = {**work.knobs(), **SETTINGS, "runpod_usd_per_s": USD_PER_S, "reuse": True}  # benchmark 1's, priced
    with workdir() as wd, dev_stack(wd, workers=options.workers, **knobs) as stack:
        log("reuse: warm-up job")
        run_job(stack, script(work, -1, edited=False))
        for r in range(runs):
            firsts.append(run_job(stack, script(work, r, edited=False)))
            seconds.append(run_job(stack, script(work, r, edited=True)))
            first, second = firsts[-1], seconds[-1]
            log(
                f"reuse: run {r + 1}: first {first.calls} calls ${first.cost:.5f} {first.wall_s:.2f} s; "
                f"second {second.calls} calls ${second.cost:.5f} {second.wall_s:.2f} s, {second.reused} reused"
            )
    first_calls = median(p.calls for p in firsts)
    first_cost = median(p.cost for p in firsts)
    renders = f"each job also sends {median(p.renders for p in seconds):.0f} render (never reused)"
    return [
        figure(
            PART,
            "second job: provider calls / first's",
            "x",
            _ratios(firsts, seconds, "calls"),
            "<= 0.10",
            baseline=f"first job {first_calls:.0f} calls (RunPod jobs + Runware tasks)",
            note=renders,
        ),
        figure(
            PART,
            "second job: provider cost / first's",
            "x",
            _ratios(firsts, seconds, "cost"),
            "<= 0.10",
            baseline=f"first job ${first_cost:.5f}",
            note=f"RunPod at ${USD_PER_S}/s of executionTime, Runware as reported",
        ),
        figure(
            PART,
            "second job: wall / (changed chunk's critical path + render)",
            "x",
            [s.wall_s / crit for s in seconds],
            "<= 1.10",
            baseline=f"first job {median(p.wall_s for p in firsts) / crit:.2f}x",
            note=f"critical path {crit:.1f} s; {work.chunks - 1} of {work.chunks} chunks and images reused",
        ),
        figure(
            PART,
            "second job: wall / first job's",
            "x",
            _ratios(firsts, seconds, "wall_s"),
            note="the same steps run (one chunk, one image, the render): reuse should add no latency",
        ),
        figure(PART, "second job: items reused", "items", [s.reused for s in seconds]),
        figure(PART, "second job: wall", "s", [s.wall_s for s in seconds]),
        figure(PART, "first job: wall", "s", [f.wall_s for f in firsts]),
    ]


def main() -> None:
    """Command line entry point."""
    args = parser(__doc__ or "")
    args.add_argument("--workers", type=int, default=2, help="worker processes")
    options = args.parse_args()
    report(PART, measure(options), options)


if __name__ == "__main__":
    main()
