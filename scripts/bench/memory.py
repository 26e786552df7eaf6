"""Benchmark 5, memory: peak RSS of the API and of a worker under benchmark 1's load, and with a 50 MB audio file.

The API and the workers are child processes of the dev stack; their resident set size is sampled every 50 ms
(psutil). The 50 MB file is a chunk whose RunPod output is a URL: the worker downloads it into the artifact
store (ingest), then a client downloads it from the API (``GET .../audio``). For both, the figure is how far the
process's RSS rose above what it was just before.

    python scripts/bench/memory.py [--quick] [--runs N] [--jobs 50]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import io
import json
import time
import wave

from scripts.bench import baselines
from scripts.bench.common import (
    RssSampler,
    dev_stack,
    figure,
    log,
    parser,
    report,
    rss_mb,
    runs_of,
    wait_until,
    workdir,
)
from scripts.bench.pipeline import FULL, QUICK, SETTINGS, run_jobs
from strangler_bridge.cli.devstack import DevStack

PART = "5 memory"
BIG_BYTES = 50_000_000


def _big_wav(path: Path) -> None:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(bytes(BIG_BYTES))
    path.write_bytes(out.getvalue())


def _stream_big(stack: DevStack, wd: Path) -> tuple[float, float]:
    """RSS rise (MB) of the worker ingesting the 50 MB audio, and of the API serving it."""
    from strangler_bridge.signing import sign

    media_dir = wd / "media"
    media_dir.mkdir(exist_ok=True)
    _big_wav(media_dir / "big.wav")
    media = baselines._media_server(media_dir)
    stack.set_knobs("runpod", workers=0)  # RunPod holds the job, so only our webhook completes the chunk
    pids = {f"worker{n}": w.proc.pid for n, w in enumerate(stack.workers)}
    try:
        with stack.client() as client:
            batch = (
                client.post("/tts/batch", json={"chunks": [{"text": "big."}], "voice": "v"}).raise_for_status().json()
            )
            wait_until(
                lambda: client.get(f"/tts/batch/{batch['id']}").json()["chunks"][0]["status"] == "submitted",
                30,
                "submit",
            )
            settings = stack.settings
            token = sign(settings.secret("webhook_secret"), "tts", [batch["id"], "0", "1"], 600)
            chunk = {"index": 0, "audio_url": f"{media.url}/media/big.wav", "duration_s": BIG_BYTES / 32_000}
            body = {"id": "big", "status": "COMPLETED", "output": {"chunks": [chunk]}}
            before = {name: rss_mb(pid) for name, pid in pids.items()}
            with RssSampler(pids) as sampler:
                client.post(f"/tts/callback?token={token}", content=json.dumps(body)).raise_for_status()
                wait_until(
                    lambda: client.get(f"/tts/batch/{batch['id']}").json()["status"] == "completed", 60, "ingest"
                )
                time.sleep(0.2)  # one more sample after the worker let go of the data
            worker_rise = max(sampler.peak_mb(name) - before[name] for name in pids)
            api_before = rss_mb(stack.api.proc.pid) if stack.api else 0.0
            with RssSampler({"api": stack.api.proc.pid if stack.api else 0}) as sampler:
                size = 0
                with client.stream("GET", f"/tts/batch/{batch['id']}/chunks/0/audio") as answer:
                    for part in answer.iter_bytes():
                        size += len(part)
            if size < BIG_BYTES:
                raise RuntimeError(f"streamed only {size} bytes")
            return worker_rise, sampler.peak_mb("api") - api_before
    finally:
        media.stop()


def main() -> None:
    """Measure and report."""
    args = parser(__doc__ or "")
    args.add_argument("--jobs", type=int, default=None, help="concurrent jobs (default 50; quick 10)")
    args.add_argument("--workers", type=int, default=2)
    args.add_argument("--load-runs", type=int, default=1, help="runs of the job load (the 50 MB part: --runs)")
    options = args.parse_args()
    work = QUICK if options.quick else FULL
    jobs, runs = options.jobs or (10 if options.quick else 50), runs_of(options)
    load_runs = 1 if options.quick else options.load_runs
    api_peak, worker_peak, worker_rise, api_rise = [], [], [], []
    with workdir() as wd, dev_stack(wd, workers=options.workers, **work.knobs(), **SETTINGS) as stack:
        run_jobs(stack, work, 1)
        assert stack.api is not None
        pids = {"api": stack.api.proc.pid} | {f"worker{n}": w.proc.pid for n, w in enumerate(stack.workers)}
        idle = {name: rss_mb(pid) for name, pid in pids.items()}
        for r in range(load_runs):
            with RssSampler(pids) as sampler:
                run_jobs(stack, work, jobs)
            api_peak.append(sampler.peak_mb("api"))
            worker_peak.append(max(sampler.peak_mb(n) for n in pids if n != "api"))
            log(f"memory run {r + 1}: API peak {api_peak[-1]:.0f} MB, worker peak {worker_peak[-1]:.0f} MB")
        for r in range(runs):
            rise = _stream_big(stack, wd)
            worker_rise.append(rise[0])
            api_rise.append(rise[1])
            log(f"memory, 50 MB audio, run {r + 1}: worker +{rise[0]:.1f} MB, API +{rise[1]:.1f} MB")
    idle_workers = max(v for k, v in idle.items() if k != "api")
    figures = [
        figure(PART, f"API peak RSS, {jobs} jobs", "MB", api_peak, "<= 150", baseline=f"idle {idle['api']:.0f} MB"),
        figure(
            PART, f"worker peak RSS, {jobs} jobs", "MB", worker_peak, "<= 150", baseline=f"idle {idle_workers:.0f} MB"
        ),
        figure(PART, "worker RSS rise, ingesting 50 MB audio", "MB", worker_rise, "<= 20"),
        figure(PART, "API RSS rise, streaming 50 MB audio out", "MB", api_rise, "<= 20"),
    ]
    report(PART, figures, options, extra={"idle_mb": idle})


if __name__ == "__main__":
    main()
