"""Benchmark 9, artifacts in S3: benchmark 1's jobs with a local directory and with S3 (moto) in the same run.

Three stacks, one after the other, on the same simulators' latencies: a local directory (today's default),
S3 with downloads redirected to presigned URLs (the default with S3), and S3 with downloads streamed through
the API (``STRANGLER_ARTIFACTS_DELIVERY=proxy``). Each runs 1 job (``--runs`` times) and ``--jobs`` concurrent
jobs; after each job its video, audio and images are downloaded through the API as a client would (following a
redirect). The figures are ratios to the local store, and the API's CPU seconds per job (the video service's
asset fetches and the downloads included), redirect against proxy.

moto's server stands in for the bucket: it runs on the same two cores, so S3's wall times include a Python S3
server's CPU that a real bucket would not charge to this machine (reported as its own figure).

    python scripts/bench/storage.py [--quick] [--runs N] [--jobs 50] [--workers 2]

Not part of run_all.py: its three stacks take about 4 minutes, which would overrun run_all's 10.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncio
import os
import time
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import httpx

from scripts.bench.common import CpuMeter, Figure, dev_stack, figure, log, parser, report, runs_of, workdir
from scripts.bench.pipeline import FULL, QUICK, SETTINGS, Workload, follow_job
from strangler_bridge.cli.devstack import DevStack
from tests.support.s3 import AWS_ENV, MotoServer, new_bucket

PART = "9 storage"
STORES = ("local", "s3 redirect", "s3 proxy")


@dataclass
class Measured:
    """One store's figures."""

    one: list[float] = field(default_factory=list)
    many: list[float] = field(default_factory=list)
    api_cpu_per_job: list[float] = field(default_factory=list)
    store_cpu_per_job: list[float] = field(default_factory=list)
    downloaded_mb: float = 0.0


async def _download_all(client: httpx.AsyncClient, job: dict[str, Any]) -> int:
    """Fetch the job's video, audio and images through the API (following a redirect to the bucket)."""
    files = (await client.get(f"/jobs/{job['id']}/files")).raise_for_status().json()
    urls = [job["video_url"], *(f["url"] for f in files["audio"]), *(f["url"] for f in files["images"])]
    size = 0
    for url in urls:
        response = await client.get(url, follow_redirects=True)
        response.raise_for_status()
        size += len(response.content)
    return size


async def _job(client: httpx.AsyncClient, body: dict[str, Any], deadline: float) -> int:
    return await _download_all(client, await follow_job(client, body, deadline))


async def _jobs(stack: DevStack, work: Workload, n: int) -> tuple[float, int]:
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60, limits=limits) as client:
        started = time.monotonic()
        done = await asyncio.gather(*(_job(client, work.job_body(i), started + 300) for i in range(n)))
    return time.monotonic() - started, sum(done)


def run_jobs(stack: DevStack, work: Workload, n: int) -> tuple[float, int]:
    """``n`` jobs at once, each followed and its files downloaded: ``(wall time, bytes downloaded)``."""
    return asyncio.run(_jobs(stack, work, n))


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process so far."""
    import psutil

    return float(sum(psutil.Process(pid).cpu_times()[:2]))


def measure_store(store: str, work: Workload, options: Any, many: int, moto: MotoServer) -> Measured:
    """Run the jobs on a stack whose artifacts are in ``store``."""
    settings: dict[str, Any] = dict(SETTINGS)
    if store != "local":
        endpoint = moto.url
        settings |= {
            "artifacts_url": f"s3://{new_bucket(endpoint)}/bench",
            "s3_endpoint_url": endpoint,
            "artifacts_delivery": "proxy" if store.endswith("proxy") else "redirect",
        }
    measured = Measured()
    # Benchmark 1's knobs: the video is the simulator's placeholder (ffmpeg's encoding would dwarf the rest); the
    # bytes moved are mostly the audio (a WAV per chunk).
    with workdir() as wd, dev_stack(wd, workers=options.workers, **work.knobs(), **settings) as stack:
        run_jobs(stack, work, 1)  # warm-up
        for r in range(runs_of(options)):
            measured.one.append(run_jobs(stack, work, 1)[0])
            log(f"storage: {store}, 1 job, run {r + 1}: {measured.one[-1]:.2f} s")
        for r in range(runs_of(options, full=1)):
            moto_before = cpu_s(moto.proc.pid)
            with CpuMeter(stack) as meter:
                wall, size = run_jobs(stack, work, many)
            moto_used = cpu_s(moto.proc.pid) - moto_before
            measured.many.append(wall)
            measured.api_cpu_per_job.append(meter.used["api"] / many)
            measured.store_cpu_per_job.append(moto_used / many)
            measured.downloaded_mb = size / 1e6
            log(
                f"storage: {store}, {many} jobs, run {r + 1}: {wall:.2f} s; {size / 1e6:.1f} MB; {meter.summary()}, "
                f"moto {moto_used:.1f} s"
            )
    return measured


def measure(options: Any) -> list[Figure]:
    """Run benchmark 9 and return its figures."""
    work = QUICK if options.quick else FULL
    many = options.jobs or (5 if options.quick else 50)
    os.environ.update(AWS_ENV)  # the stack's processes find moto's credentials in the standard chain
    results: dict[str, Measured] = {}
    with workdir() as wd:
        moto = MotoServer(wd / "moto.log")
        try:
            for store in STORES:
                results[store] = measure_store(store, work, options, many, moto)
        finally:
            moto.stop()
    local, redirect, proxy = (results[s] for s in STORES)
    figures = []
    for store in STORES[1:]:
        got = results[store]
        figures += [
            figure(PART, f"{store}, 1 job: wall / local", "x", [w / median(local.one) for w in got.one]),
            figure(PART, f"{store}, {many} jobs: wall / local", "x", [w / median(local.many) for w in got.many]),
        ]
    figures += [
        figure(
            PART,
            f"API CPU per job, {many} jobs with downloads: redirect / proxy",
            "x",
            [r / median(proxy.api_cpu_per_job) for r in redirect.api_cpu_per_job],
            note=f"{redirect.downloaded_mb:.1f} MB downloaded per run",
        ),
    ]
    for store in STORES:
        got = results[store]
        figures += [
            figure(PART, f"{store}, 1 job: wall", "s", got.one),
            figure(PART, f"{store}, {many} jobs: wall", "s", got.many),
            figure(PART, f"{store}: API CPU per job", "ms", [c * 1e3 for c in got.api_cpu_per_job]),
            figure(PART, f"{store}: moto (S3 server) CPU per job", "ms", [c * 1e3 for c in got.store_cpu_per_job]),
        ]
    return figures


def main() -> None:
    """Command line entry point."""
    args = parser(__doc__ or "")
    args.add_argument("--jobs", type=int, default=None, help="concurrent jobs of the second figure (default 50)")
    args.add_argument("--workers", type=int, default=2, help="worker processes")
    options = args.parse_args()
    report(PART, measure(options), options)


if __name__ == "__main__":
    main()
