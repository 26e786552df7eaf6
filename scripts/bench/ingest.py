"""Benchmark 2, webhook ingest: how fast ``POST /tts/callback`` takes valid RunPod results.

Every request is a first delivery of a COMPLETED status object for its own group (one chunk, ``AUDIO_S`` of
16 kHz WAV as base64), so each one is really applied: token and body checked and queued by the API, then audio
decoded and stored and the record updated by one worker process running beside it (its webhook inbox thread).
Requests go to many batches in random order. The ceiling is a no-op POST route of the same app in the same
server process, measured in the same run. The answer rate and latency are measured with the worker paused
(SIGSTOP), as when workers run on other machines; then the benchmark measures how fast the worker applies
what was queued, and both again with the worker applying beside the API on the same two cores. The load
generator (``loadgen.py``) runs in its own process. The API's CPU time per request (callback against no-op)
is measured too: unlike the rates it hardly depends on what else the two cores are doing.

    python scripts/bench/ingest.py [--quick] [--runs N] [--rate 500]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import median
from typing import Any

from scripts.bench.common import bench_settings, figure, log, parser, report, runs_of, workdir
from strangler_bridge.audio import tone_wav
from strangler_bridge.cli.processes import Child, wait_http_ok
from strangler_bridge.cli.redis_server import free_port, redis_for_dev
from strangler_bridge.settings import Settings

PART = "2 webhook ingest"
HERE = Path(__file__).resolve().parent
AUDIO_S = 1.0
CHUNKS = 20  # per batch; one group (one webhook) per chunk
CONNECTIONS = 32


def _bodies() -> list[str]:
    audio = base64.b64encode(tone_wav(AUDIO_S)).decode()
    return [
        json.dumps(
            {
                "id": f"bench-{index}",
                "status": "COMPLETED",
                "delayTime": 12,
                "executionTime": 1000,
                "output": {"chunks": [{"index": index, "audio_base64": audio, "duration_s": AUDIO_S}]},
            }
        )
        for index in range(CHUNKS)
    ]


def _groups(settings: Settings, count: int) -> tuple[list[list[Any]], list[str]]:
    """Store batches whose groups await their results; ``([path, body_index] per group, batch ids)``."""
    from fastapi_app.runtime import Runtime
    from fastapi_app.tts import service
    from fastapi_app.tts.runpod_work import webhook_url
    from strangler_bridge.contracts.tts import TtsBatchCreate

    rt = Runtime.build(settings)
    body = TtsBatchCreate.model_validate({"chunks": [{"text": f"Scene {k}."} for k in range(CHUNKS)], "voice": "v"})
    requests, ids = [], []
    try:
        for _ in range(-(-count // CHUNKS)):
            batch, _created = service.create_batch(rt, body, idempotency_key=None)
            ids.append(batch.id)
            for no in range(CHUNKS):
                url = webhook_url(rt, batch.id, no, 1)
                requests.append([url[url.index("/tts/") :], no])
    finally:
        rt.close()
    # Many batches in flight, as under benchmark 1's load: the groups of one batch do not all arrive at once
    # (when they do, the worker applies them in fewer record updates, which would flatter the figure).
    random.Random(9).shuffle(requests)
    return requests, ids


def _completed(settings: Settings, ids: list[str]) -> int:
    from fastapi_app.runtime import Runtime

    rt = Runtime.build(settings)
    try:
        return sum(
            sum(g.status.value == "completed" for g in batch.groups)
            for batch in (rt.batches.load(i) for i in ids)
            if batch is not None
        )
    finally:
        rt.close()


def _inbox_empty(settings: Settings, timeout_s: float = 120.0) -> float:
    """Wait until the worker has applied every queued webhook; when that was (``time.monotonic()``)."""
    from fastapi_app.runtime import Runtime

    rt = Runtime.build(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while rt.redis.xlen(rt.keys.tts_inbox):
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not apply the queued webhooks in time")
            time.sleep(0.005)
        return time.monotonic()
    finally:
        rt.close()


def _load(wd: Path, port: int, bodies: list[str], requests: list[list[Any]], **spec: Any) -> dict[str, Any]:
    spec_path, out_path = wd / "spec.json", wd / "result.json"
    spec_path.write_text(
        json.dumps({"host": "127.0.0.1", "port": port, "bodies": bodies, "requests": requests, **spec})
    )
    subprocess.run([sys.executable, str(HERE / "loadgen.py"), str(spec_path), str(out_path)], check=True, timeout=300)
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


@dataclass
class _Bench:
    """The running API (``ingest_server.py``, its own process), one worker, and the requests still unused."""

    wd: Path
    settings: Settings
    port: int
    worker: Child
    server_pid: int
    bodies: list[str]
    requests: list[list[Any]]
    ids: list[str]
    at: int = 0

    def load(self, requests: list[list[Any]], **spec: Any) -> dict[str, Any]:
        """Run the load generator; its result plus ``api_cpu_us``, the API's CPU time per request sent."""
        import psutil

        server = psutil.Process(self.server_pid)
        before = sum(server.cpu_times()[:2])
        result = _load(self.wd, self.port, self.bodies, requests, **spec)
        result["api_cpu_us"] = (sum(server.cpu_times()[:2]) - before) / len(requests) * 1e6
        return result

    def callbacks(self, n: int, **spec: Any) -> dict[str, Any]:
        """Send the next ``n`` callbacks."""
        self.at += n
        return self.load(self.requests[self.at - n : self.at], **spec)

    @contextlib.contextmanager
    def worker_paused(self) -> Iterator[None]:
        """SIGSTOP the worker: the API alone on the cores, as when workers run on other machines."""
        os.killpg(self.worker.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.worker.proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def _serving(wd: Path, settings: Settings, groups: int) -> Iterator[_Bench]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")} | settings.to_env()
    with (wd / "server.log").open("ab") as server_log:
        server = subprocess.Popen(
            [sys.executable, str(HERE / "ingest_server.py"), "--port", str(port)],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
    worker = Child(["worker"], settings, wd / "worker.log")
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=30)
        requests, ids = _groups(settings, groups)
        yield _Bench(wd, settings, port, worker, server.pid, _bodies(), requests, ids)
    finally:
        worker.stop()
        server.terminate()
        server.wait(10)


def _one_run(bench: _Bench, rows: dict[str, list[Any]], rate: float, *, noop_n: int, cb_n: int, open_s: float) -> None:
    """One run of every measurement, each appended to its row."""
    open_n = int(rate * open_s)
    noop = [["/bench/noop", 0]] * max(noop_n, open_n)
    closed = {"mode": "closed", "connections": CONNECTIONS, "duration_s": 60}
    opened = {"mode": "open", "rate": rate, "duration_s": open_s}
    rows["noop"].append(bench.load(noop[:noop_n], **closed))
    with bench.worker_paused():
        rows["cb"].append(bench.callbacks(cb_n, **closed))
    resumed = time.monotonic()
    rows["applied"].append(cb_n / (_inbox_empty(bench.settings) - resumed))
    rows["noop_open"].append(bench.load(noop[:open_n], **opened))
    with bench.worker_paused():
        rows["cb_open"].append(bench.callbacks(open_n, **opened))
    _inbox_empty(bench.settings)
    started = time.monotonic()
    rows["shared"].append(bench.callbacks(cb_n, **closed))
    rows["shared_applied"].append(cb_n / (_inbox_empty(bench.settings) - started))


def main() -> None:
    """Measure and report."""
    args = parser(__doc__ or "")
    args.add_argument("--rate", type=float, default=500.0, help="offered rate of the latency figure (requests/s)")
    options = args.parse_args()
    runs = runs_of(options)
    # Every callback is applied afterwards (~1.5-5 ms each here), so the closed-loop runs are not longer; at a
    # few thousand requests per second shorter runs were mostly noise.
    noop_n, cb_n, open_s = (600, 300, 1.0) if options.quick else (6000, 3000, 3.0)
    warm = 200
    rows: dict[str, list[Any]] = {
        k: [] for k in ("noop", "cb", "applied", "noop_open", "cb_open", "shared", "shared_applied")
    }
    with workdir() as wd, redis_for_dev(bench_settings(wd)) as url:
        settings = bench_settings(
            wd, redis_url=url, api_tokens=["bench-token"], webhook_secret="bench-secret", tts_group_size=1
        )
        groups = warm + runs * (2 * cb_n + int(options.rate * open_s))
        with _serving(wd, settings, groups) as bench:
            log(f"ingest: {groups} groups ready; body {len(bench.bodies[0]) // 1024} KB")
            bench.load([["/bench/noop", 0]] * warm, mode="closed", connections=CONNECTIONS, duration_s=60)
            bench.callbacks(warm, mode="closed", connections=CONNECTIONS, duration_s=60)
            _inbox_empty(settings)
            for r in range(runs):
                _one_run(bench, rows, options.rate, noop_n=noop_n, cb_n=cb_n, open_s=open_s)
                log(
                    f"ingest run {r + 1}: no-op {rows['noop'][-1]['rps']:.0f}/s,"
                    f" callback {rows['cb'][-1]['rps']:.0f}/s (worker paused), applied {rows['applied'][-1]:.0f}/s,"
                    f" p99 at {options.rate:.0f}/s {rows['cb_open'][-1]['p99_ms']:.1f} ms,"
                    f" worker beside: answered {rows['shared'][-1]['rps']:.0f}/s,"
                    f" applied {rows['shared_applied'][-1]:.0f}/s"
                )
            answered = (int(row["statuses"].get("200", 0)) for key in ("cb", "cb_open", "shared") for row in rows[key])
            ok = sum(answered) + warm
            applied = _completed(settings, bench.ids)
    if applied != ok:
        raise RuntimeError(f"{ok} callbacks answered 200 but {applied} groups were completed")
    noop_rps = [row["rps"] for row in rows["noop"]]
    cb_rps = [row["rps"] for row in rows["cb"]]
    rate = f"{options.rate:.0f}/s"
    figures = [
        figure(PART, "no-op POST, same app: requests/s", "req/s", noop_rps, note=f"{CONNECTIONS} connections"),
        figure(
            PART,
            "POST /tts/callback: requests/s",
            "req/s",
            cb_rps,
            baseline=f"no-op {median(noop_rps):.0f}/s",
            note="worker paused: the API alone, as with workers on other machines",
        ),
        figure(
            PART, "callback rate / no-op rate", "x", [c / n for c, n in zip(cb_rps, noop_rps, strict=True)], ">= 0.5"
        ),
        figure(
            PART,
            "API CPU per request: no-op / callback",
            "x",
            [n["api_cpu_us"] / c["api_cpu_us"] for c, n in zip(rows["cb"], rows["noop"], strict=True)],
            baseline=(
                f"no-op {median(r['api_cpu_us'] for r in rows['noop']):.0f} us,"
                f" callback {median(r['api_cpu_us'] for r in rows['cb']):.0f} us"
            ),
            note="the rate ratio's CPU-bound ceiling, steadier than the rates",
        ),
        figure(
            PART,
            "queued callbacks applied by 1 worker: per second",
            "req/s",
            rows["applied"],
            note="the worker resumed with the API idle, until the inbox is empty",
        ),
        figure(
            PART,
            "worker beside the API on the 2 cores: callbacks answered/s",
            "req/s",
            [row["rps"] for row in rows["shared"]],
            note="closed loop, the worker applying meanwhile",
        ),
        figure(
            PART,
            "worker beside the API on the 2 cores: callbacks applied/s",
            "req/s",
            rows["shared_applied"],
            note="first request until the inbox is empty",
        ),
        figure(
            PART,
            f"callback p50 at {rate}",
            "ms",
            [row["p50_ms"] for row in rows["cb_open"]],
            baseline=f"no-op p50 {median(row['p50_ms'] for row in rows['noop_open']):.1f} ms",
        ),
        figure(
            PART,
            f"callback p99 at {rate}",
            "ms",
            [row["p99_ms"] for row in rows["cb_open"]],
            "<= 25",
            baseline=f"no-op p99 {median(row['p99_ms'] for row in rows['noop_open']):.1f} ms",
        ),
    ]
    report(PART, figures, options, extra={"rows": rows, "applied_groups": applied, "audio_s": AUDIO_S})


if __name__ == "__main__":
    main()
