"""The two designs benchmark 1 compares the service with, run against the same simulators in the same run.

- **Legacy**: what the Flask app does in its request, written out minimally: ``/runsync`` for each chunk in turn,
  then one Runware request per image in turn, then the render, polled every ``POLL_S``.
- **Naive queue**: one RQ job per chunk blocking on ``/runsync``, one per image blocking on Runware, one per
  video blocking on the render, chained through Redis counters, run by as many ``SimpleWorker`` processes as
  the service has. Its workers are started here as ``python -m scripts.bench.baselines --worker URL QUEUE``.

The audio and images they produce are served to the video simulator from a small static file server, as the
legacy app's ``/media`` route does.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import base64
import json
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import httpx
import redis

from scripts.bench.common import ROOT, log
from strangler_bridge.cli.devstack import SIM_KEY, DevStack
from strangler_bridge.cli.servers import ThreadedServer

if TYPE_CHECKING:
    from scripts.bench.pipeline import Workload

#: How often both baselines poll the render (the legacy app's default is 1 s; this is kinder to them).
POLL_S = 0.2
TASKS = "scripts.bench.baselines"


@dataclass(frozen=True)
class Config:
    """What a baseline step needs to reach the simulators (JSON, so RQ jobs can carry it)."""

    run: str
    runpod: str
    runware: str
    video: str
    media_dir: str
    media_url: str
    chunks: int
    tts_s: float
    image_s: float
    video_s: float

    @property
    def auth(self) -> dict[str, str]:
        """The simulators' API key as a bearer header."""
        return {"Authorization": f"Bearer {SIM_KEY}"}


# --- the steps, shared by both baselines -----------------------------------------------------------------------
def synth(cfg: Config, http: httpx.Client, job: int, index: int) -> float:
    """One chunk through ``/runsync``; writes its WAV and returns its duration."""
    body = {"input": {"chunks": [{"index": index, "text": f"Scene {index}.", "voice": "narrator"}], "format": "wav"}}
    answer = http.post(f"{cfg.runpod}/runsync", json=body, headers=cfg.auth).raise_for_status().json()
    while answer["status"] in ("IN_QUEUE", "IN_PROGRESS"):
        time.sleep(POLL_S)
        answer = http.get(f"{cfg.runpod}/status/{answer['id']}", headers=cfg.auth).raise_for_status().json()
    chunk = answer["output"]["chunks"][0]
    (Path(cfg.media_dir) / f"{cfg.run}-{job}-a{index}.wav").write_bytes(base64.b64decode(chunk["audio_base64"]))
    return float(chunk["duration_s"])


def image(cfg: Config, http: httpx.Client, job: int, index: int) -> None:
    """One image through a synchronous Runware request; downloads and writes it."""
    task = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "positivePrompt": f"Scene {index}.",
        "model": "runware:100@1",
        "width": 256,
        "height": 256,
        "numberResults": 1,
        "outputType": "URL",
        "outputFormat": "PNG",
    }
    answer = http.post(cfg.runware, json=[task], headers=cfg.auth).raise_for_status().json()
    data = http.get(answer["data"][0]["imageURL"]).raise_for_status().content
    (Path(cfg.media_dir) / f"{cfg.run}-{job}-i{index}.png").write_bytes(data)


def render(cfg: Config, http: httpx.Client, job: int, durations: list[float]) -> None:
    """Submit the render and poll it to the end."""
    segments, start = [], 0.0
    for index, duration in enumerate(durations):
        segments.append(
            {
                "index": index,
                "start_s": start,
                "end_s": start + duration,
                "audio_url": f"{cfg.media_url}/{cfg.run}-{job}-a{index}.wav",
                "image_url": f"{cfg.media_url}/{cfg.run}-{job}-i{index}.png",
            }
        )
        start += duration
    body = {"render_id": f"{cfg.run}-{job}", "segments": segments, "options": {"width": 320, "height": 240, "fps": 10}}
    status = http.post(f"{cfg.video}/renders", json=body).raise_for_status().json()
    while status["status"] in ("queued", "rendering"):
        time.sleep(POLL_S)
        status = http.get(f"{cfg.video}/renders/{cfg.run}-{job}").raise_for_status().json()
    if status["status"] != "completed":
        raise RuntimeError(f"baseline render {cfg.run}-{job} ended {status['status']}: {status.get('error')}")


def _config(stack: DevStack, work: Workload, media: ThreadedServer, media_dir: Path, run: str) -> Config:
    settings = stack.settings
    return Config(
        run=run,
        runpod=settings.runpod_endpoint_url or "",
        runware=settings.runware_url,
        video=settings.video_url or "",
        media_dir=str(media_dir),
        media_url=f"{media.url}/media",
        chunks=work.chunks,
        tts_s=work.tts_s,
        image_s=work.image_s,
        video_s=work.video_s,
    )


def _media_server(directory: Path) -> ThreadedServer:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    directory.mkdir(parents=True, exist_ok=True)
    return ThreadedServer(Starlette(routes=[Mount("/media", StaticFiles(directory=directory))])).start()


# --- legacy ----------------------------------------------------------------------------------------------------
def legacy_runs(stack: DevStack, work: Workload, *, runs: int) -> list[float]:
    """Wall time of one job done the legacy way, ``runs`` times."""
    media_dir = stack.log_dir.parent / "media"
    media = _media_server(media_dir)
    walls = []
    try:
        with httpx.Client(timeout=120) as http:
            for r in range(runs):
                cfg = _config(stack, work, media, media_dir, f"legacy{r}")
                started = time.monotonic()
                durations = [synth(cfg, http, 0, i) for i in range(work.chunks)]
                for i in range(work.chunks):
                    image(cfg, http, 0, i)
                render(cfg, http, 0, durations)
                walls.append(time.monotonic() - started)
                log(f"pipeline: legacy, 1 job, run {r + 1}: {walls[-1]:.2f} s")
    finally:
        media.stop()
    return walls


# --- naive queue: the RQ tasks ---------------------------------------------------------------------------------
def _context(cfg_text: str) -> tuple[Config, redis.Redis]:
    from rq import get_current_job

    current = get_current_job()
    assert current is not None
    return Config(**json.loads(cfg_text)), current.connection


def _enqueue(conn: redis.Redis, run: str, func: str, *args: Any) -> None:
    from rq import Queue
    from rq.serializers import JSONSerializer

    Queue(f"naive-{run}", connection=conn, serializer=JSONSerializer).enqueue_call(f"{TASKS}.{func}", args=args)


def naive_tts(cfg_text: str, job: int, index: int) -> None:
    """RQ task: one chunk, blocking on ``/runsync``; the last chunk of a job enqueues its images."""
    cfg, conn = _context(cfg_text)
    with httpx.Client(timeout=120) as http:
        duration = synth(cfg, http, job, index)
    key = f"naive:{cfg.run}:{job}"
    conn.hset(f"{key}:durations", str(index), duration)
    conn.incrbyfloat(f"naive:{cfg.run}:work", cfg.tts_s)
    if int(conn.incr(f"{key}:tts")) == cfg.chunks:
        for i in range(cfg.chunks):
            _enqueue(conn, cfg.run, "naive_image", cfg_text, job, i)


def naive_image(cfg_text: str, job: int, index: int) -> None:
    """RQ task: one image, blocking on Runware; the last image of a job enqueues its render."""
    cfg, conn = _context(cfg_text)
    with httpx.Client(timeout=120) as http:
        image(cfg, http, job, index)
    conn.incrbyfloat(f"naive:{cfg.run}:work", cfg.image_s)
    if int(conn.incr(f"naive:{cfg.run}:{job}:img")) == cfg.chunks:
        _enqueue(conn, cfg.run, "naive_video", cfg_text, job)


def naive_video(cfg_text: str, job: int) -> None:
    """RQ task: the render, blocking until it is done; then the job counts as finished."""
    cfg, conn = _context(cfg_text)
    raw: Any = conn.hgetall(f"naive:{cfg.run}:{job}:durations")
    durations = {int(k): float(v) for k, v in raw.items()}
    with httpx.Client(timeout=120) as http:
        render(cfg, http, job, [durations[i] for i in range(cfg.chunks)])
    conn.incrbyfloat(f"naive:{cfg.run}:work", cfg.video_s)
    conn.rpush(f"naive:{cfg.run}:done", job)


# --- naive queue: the driver -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NaiveResult:
    """A naive-design run: measured wall time, or projected from the share done when the budget ran out."""

    jobs: int
    wall_s: float
    elapsed_s: float
    progress_pct: float
    completed: bool


def naive_run(stack: DevStack, work: Workload, *, jobs: int, workers: int, budget_s: float) -> NaiveResult:
    """Run ``jobs`` jobs the naive way for at most ``budget_s``; project the wall time if they did not finish."""
    run = f"naive{uuid.uuid4().hex[:6]}"
    media_dir = stack.log_dir.parent / "media"
    media = _media_server(media_dir)
    cfg = _config(stack, work, media, media_dir, run)
    cfg_text = json.dumps(asdict(cfg))
    url = stack.settings.redis_url or ""
    conn = redis.Redis.from_url(url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", TASKS, "--worker", url, f"naive-{run}"],
            cwd=ROOT,
            stdout=(stack.log_dir / f"naive-{run}-{n}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        for n in range(workers)
    ]
    try:
        _wait_workers(conn, f"naive-{run}", workers, procs)
        started = time.monotonic()
        for j in range(jobs):
            for i in range(work.chunks):
                _enqueue(conn, run, "naive_tts", cfg_text, j, i)
        total = jobs * (work.chunks * (work.tts_s + work.image_s) + work.video_s)
        while int(conn.llen(f"naive:{run}:done")) < jobs and time.monotonic() - started < budget_s:
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        done = float(conn.get(f"naive:{run}:work") or 0)
        completed = int(conn.llen(f"naive:{run}:done")) >= jobs
        # The naive design keeps every worker blocked on a provider call, so its progress is linear in time.
        wall = elapsed if completed else elapsed * total / max(done, 1e-9)
        log(f"pipeline: naive queue, {jobs} job(s): {'measured' if completed else 'projected'} {wall:.1f} s")
        return NaiveResult(jobs, wall, elapsed, 100.0 * min(done / total, 1.0), completed)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        conn.close()
        media.stop()


def _wait_workers(conn: redis.Redis, queue: str, count: int, procs: list[subprocess.Popen[bytes]]) -> None:
    from rq import Worker

    deadline = time.monotonic() + 30
    while len([w for w in Worker.all(connection=conn) if queue in w.queue_names()]) < count:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a naive-design worker exited early (see its log)")
        if time.monotonic() > deadline:
            raise TimeoutError("naive-design workers did not start within 30 s")
        time.sleep(0.05)


def _worker(url: str, queue_name: str) -> None:
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    conn = redis.Redis.from_url(url)
    queue = Queue(queue_name, connection=conn, serializer=JSONSerializer)
    SimpleWorker([queue], connection=conn, serializer=JSONSerializer).work(logging_level="WARNING")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m scripts.bench.baselines --worker REDIS_URL QUEUE")
