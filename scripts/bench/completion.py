"""Benchmark 3, completion latency: from the last webhook of a TTS batch to a client seeing ``completed``.

Each sample is a batch of two chunks (one group each). The first group's webhook is sent, then two clients
watch the batch: one long-polls (``?wait=&since=``, as the Flask side does), the baseline polls every second.
After a random pause (so the poller's phase is random), the benchmark sends the last webhook and notes when
each client sees ``completed``: the API queues the webhook and a worker applies it. Webhooks go straight from
here to the API, so provider latency plays no part.

    python scripts/bench/completion.py [--quick] [--runs N] [--samples 20]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncio
import base64
import json
import random
import time
from statistics import median
from typing import Any

import httpx

from scripts.bench.common import dev_stack, figure, log, parser, percentile, report, runs_of, workdir
from strangler_bridge.audio import tone_wav
from strangler_bridge.cli.devstack import DevStack

PART = "3 completion latency"
POLL_S = 1.0
CONCURRENT = 4


def _webhook(stack: DevStack, batch_id: str, no: int, audio: str) -> tuple[str, bytes]:
    from strangler_bridge.signing import sign

    settings = stack.settings
    token = sign(settings.secret("webhook_secret"), "tts", [batch_id, str(no), "1"], settings.webhook_token_ttl_s)
    body = {"id": f"bench-{no}", "status": "COMPLETED", "output": {"chunks": [{"index": no, "audio_base64": audio}]}}
    return f"/tts/callback?token={token}", json.dumps(body).encode()


async def _sample(stack: DevStack, client: httpx.AsyncClient, audio: str) -> tuple[float, float]:
    created = await client.post("/tts/batch", json={"chunks": [{"text": "one."}, {"text": "two."}], "voice": "v"})
    batch_id = created.raise_for_status().json()["id"]
    path = f"/tts/batch/{batch_id}"
    first, last = _webhook(stack, batch_id, 0, audio), _webhook(stack, batch_id, 1, audio)
    json_type = {"Content-Type": "application/json"}
    (await client.post(first[0], content=first[1], headers=json_type)).raise_for_status()
    status = created.json()
    while status["progress"]["done"] < 1:  # a worker applies the queued webhook
        params = {"wait": 10, "since": status["version"]}
        status = (await client.get(path, params=params)).raise_for_status().json()
    seen: dict[str, float] = {}

    async def long_poll() -> None:
        version = status["version"]
        while True:
            current = (await client.get(path, params={"wait": 30, "since": version})).raise_for_status().json()
            if current["status"] == "completed":
                seen["long"] = time.monotonic()
                return
            version = current["version"]

    async def fixed_poll() -> None:
        await asyncio.sleep(random.uniform(0, POLL_S))
        while True:
            if (await client.get(path)).raise_for_status().json()["status"] == "completed":
                seen["fixed"] = time.monotonic()
                return
            await asyncio.sleep(POLL_S)

    watchers = asyncio.gather(long_poll(), fixed_poll())
    await asyncio.sleep(random.uniform(0.3, 0.3 + POLL_S))  # the long-poll is waiting; the poller's phase is random
    sent = time.monotonic()
    (await client.post(last[0], content=last[1], headers=json_type)).raise_for_status()
    await asyncio.wait_for(watchers, 10)
    return seen["long"] - sent, seen["fixed"] - sent


async def _run(stack: DevStack, samples: int) -> list[tuple[float, float]]:
    audio = base64.b64encode(tone_wav(0.5)).decode()
    headers = {"Authorization": f"Bearer {stack.token}"}
    limits = httpx.Limits(max_connections=4 * CONCURRENT)
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=40, limits=limits) as client:
        await _sample(stack, client, audio)  # warm-up
        out: list[tuple[float, float]] = []
        for start in range(0, samples, CONCURRENT):
            count = min(CONCURRENT, samples - start)
            out += await asyncio.gather(*(_sample(stack, client, audio) for _ in range(count)))
    return out


def main() -> None:
    """Measure and report."""
    args = parser(__doc__ or "")
    args.add_argument("--samples", type=int, default=None, help="samples per run (default 16; quick 4)")
    options = args.parse_args()
    runs, samples = runs_of(options), options.samples or (4 if options.quick else 16)
    long_p95, fixed_p95, long_p50, fixed_p50, raw = [], [], [], [], []
    # One worker applies the queued webhooks; the RunPod simulator keeps the jobs it is sent running for an hour,
    # so the only webhooks are the benchmark's own.
    runpod = {"execution_time_s": 3600.0}
    with workdir() as wd, dev_stack(wd, workers=1, runpod=runpod, runware={}, video={}, tts_group_size=1) as stack:
        for r in range(runs):
            pairs = asyncio.run(_run(stack, samples))
            raw.append(pairs)
            longs, fixeds = [1000 * p[0] for p in pairs], [1000 * p[1] for p in pairs]
            long_p95.append(percentile(longs, 95))
            fixed_p95.append(percentile(fixeds, 95))
            long_p50.append(percentile(longs, 50))
            fixed_p50.append(percentile(fixeds, 50))
            log(f"completion run {r + 1}: long-poll p95 {long_p95[-1]:.1f} ms, 1 s poller p95 {fixed_p95[-1]:.0f} ms")
    figures = [
        figure(
            PART,
            "long-poll: last webhook -> completed, p95",
            "ms",
            long_p95,
            "<= 50",
            baseline=f"1 s poller p95 {median(fixed_p95):.0f} ms",
            note=f"{samples} samples per run",
        ),
        figure(
            PART,
            "long-poll: last webhook -> completed, p50",
            "ms",
            long_p50,
            baseline=f"1 s poller p50 {median(fixed_p50):.0f} ms",
        ),
    ]
    extra: dict[str, Any] = {"samples_s": raw}
    report(PART, figures, options, extra)


if __name__ == "__main__":
    main()
