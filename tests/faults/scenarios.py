"""The rows of the fault matrix: what each scenario injects, and the disruptions it runs while jobs are in flight.

Disruptions wait on conditions (a provider has started the work, a worker is busy) with deadlines; the only
fixed durations are how long an outage lasts, which is the fault itself.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import redis
from rq import Worker

from strangler_bridge.cli.processes import Child
from tests.faults.harness import CHUNKS_PER_JOB, Run, Scenario
from tests.faults.legacy import run_fallback
from tests.support.waiting import wait_for

OUTAGE_S = 3.0  # how long the video service stays down once renders have been refused


def _busy_worker(run: Run) -> tuple[Child, str] | None:
    """A worker process running a task right now and the task's kind (from RQ's worker registry), if any."""
    prefix = run.stack.settings.redis_prefix
    with redis.Redis.from_url(run.redis.url) as connection:
        running = {
            worker.pid: worker.get_current_job_id()
            for worker in Worker.all(connection=connection)
            if worker.get_state() == "busy" and any(name.startswith(prefix) for name in worker.queue_names())
        }
    busy = {pid: task for pid, task in running.items() if task}
    for child in run.stack.workers:
        if child.alive() and child.proc.pid in busy:
            task = busy[child.proc.pid]
            return child, "-".join(task.split("-")[:2]).split("_")[0]  # e.g. "submit-tts", "reconcile-img"
    return None


def _kill_busy_worker(run: Run, started: str) -> None:
    """SIGKILL a worker in the middle of a task, then start a replacement (as a supervisor would)."""
    victim, task = wait_for(lambda: _busy_worker(run), timeout=30, interval=0.01, what=f"a busy worker ({started})")
    run.mark_fault()
    victim.kill()
    run.outcome.notes.append(f"SIGKILLed a worker running a {task} task once {started}")
    run.stack.add_worker()


def kill_workers_twice(run: Run) -> None:
    """Kill a worker while TTS submissions are held by RunPod, and another while images are being made."""
    wait_for(lambda: run.stack.counters("runpod")["jobs_received_total"] >= 1, timeout=30, what="a RunPod submission")
    _kill_busy_worker(run, "RunPod had a submission")
    wait_for(lambda: run.stack.counters("runware")["tasks_received"] >= 1, timeout=60, what="a Runware submission")
    _kill_busy_worker(run, "Runware had a submission")


def _failed_webhooks(run: Run) -> int:
    return int(run.stack.counters("runpod")["webhooks"]["failed_attempts"])


def restart_api(run: Run) -> None:
    """SIGKILL the API while webhooks are due, keep it down until RunPod's webhook was refused, start it again."""
    wait_for(lambda: run.stack.counters("runpod")["jobs_received_total"] >= 1, timeout=30, what="a RunPod submission")
    run.mark_fault()
    assert run.stack.api is not None
    failed_before = _failed_webhooks(run)
    run.stack.api.kill()
    wait_for(lambda: _failed_webhooks(run) > failed_before, timeout=30, what="a webhook refused by the stopped API")
    run.stack.start_api()
    run.outcome.notes.append("API SIGKILLed while RunPod webhooks were due, restarted")


def _noticed_outage(child: Child, seen: int) -> bool:
    """Whether a process has logged a Redis problem since its output was ``seen`` characters long."""
    return "redis" in child.output()[seen:].lower()


def restart_redis(run: Run) -> None:
    """Stop Redis (append-only, fsync always) once the first jobs are past TTS; start it again once the API and
    every worker have run into the outage."""
    wait_for(lambda: run.stack.counters("runware")["tasks_received"] >= 1, timeout=60, what="a Runware submission")
    run.mark_fault()
    workers = [(child, len(child.output())) for child in run.stack.workers]
    run.redis.stop()
    with run.client() as client:
        wait_for(lambda: client.get("/readyz").status_code == 503, timeout=30, what="the API to see the outage")
    for child, seen in workers:
        wait_for(lambda c=child, n=seen: _noticed_outage(c, n), timeout=30, what="every worker to see the outage")
    run.redis.start()
    run.outcome.notes.append(
        "redis-server stopped until the API answered 503 and every worker had logged the outage, then started again "
        "(appendonly yes, appendfsync always)"
    )


def video_outage(run: Run) -> None:
    """Keep the video service down from the start until renders have been refused, then for OUTAGE_S more."""
    wait_for(lambda: run.stack.counters("video")["requests_down"] >= 1, timeout=60, what="a refused render")
    run.mark_fault()
    run.stack.set_knobs("video", down=False, down_window_s=[0.0, OUTAGE_S])
    run.outcome.notes.append(f"video service answered 503 until renders were refused, then {OUTAGE_S:.0f} s more")


def _tts_groups(run: Run) -> int:
    return len(run.job_ids) * -(-CHUNKS_PER_JOB // run.stack.settings.tts_group_size)


def _tts_stored(client: httpx.Client, job_id: str) -> bool:
    batch_id = client.get(f"/jobs/{job_id}").json()["steps"][0]["batch_id"]
    chunks = client.get(f"/tts/batch/{batch_id}").json()["chunks"] if batch_id else []
    return bool(chunks) and all(chunk["status"] == "completed" for chunk in chunks)


def cancel_during_delivery(run: Run) -> None:
    """Cancel every job once RunPod has finished its audio but before the (held) webhooks arrive; release them,
    check the late audio was kept, then retry every job (which must not pay RunPod again)."""
    groups = _tts_groups(run)
    wait_for(lambda: _runpod_done(run) >= groups, timeout=60, what="RunPod to finish every TTS job")
    wait_for(lambda: run.stack.counters("runpod")["webhooks"]["held"] >= groups, timeout=30, what="held webhooks")
    run.mark_fault()
    with run.client() as client:
        for job_id in run.job_ids:
            client.post(f"/jobs/{job_id}/cancel").raise_for_status()
        with run.stack.sim("runpod") as sim:
            sim.post("/_sim/webhooks/release").raise_for_status()
        wait_for(
            lambda: all(_tts_stored(client, job_id) for job_id in run.job_ids),
            timeout=60,
            what="the late audio of every cancelled job stored",
        )
        for job_id in run.job_ids:
            client.post(f"/jobs/{job_id}/retry").raise_for_status()
    run.outcome.notes.append(
        f"every job cancelled while its {groups // len(run.job_ids)} finished RunPod results were held; the webhooks "
        "then delivered, every late result was stored on the cancelled batch, and every job retried"
    )


def _runpod_done(run: Run) -> int:
    return int(run.stack.counters("runpod")["outcomes"].get("COMPLETED", 0))


SCENARIOS: list[Scenario] = [
    Scenario("baseline", "No faults (control)", "none"),
    Scenario(
        "duplicate-webhooks",
        "Duplicated webhooks (x3)",
        "every RunPod webhook and video callback delivered 3 times",
        runpod={"webhook_faults": {"duplicates": 2}},
        video={"callback_duplicate_rate": 1.0},
        evidence=("runpod_webhooks_duplicated", "video_callbacks_duplicated"),
    ),
    Scenario(
        "lost-webhooks",
        "30% lost webhooks",
        "30% of RunPod webhooks and video callbacks never sent",
        runpod={"webhook_faults": {"lost_rate": 0.3}},
        video={"callback_lost_rate": 0.3},
        evidence=("runpod_webhooks_lost",),
    ),
    Scenario(
        "reordered-webhooks",
        "Reordered and late webhooks",
        "RunPod webhooks held and released shuffled in threes, 0-1.5 s late",
        runpod={"webhook_faults": {"reorder": "shuffle", "reorder_batch": 3, "extra_delay_s": (0.0, 1.5)}},
        evidence=("runpod_webhooks_held",),
    ),
    Scenario(
        "runpod-5xx-429",
        "RunPod 5xx and 429 bursts",
        "bursts of 503/502/500/429 on /run and /status",
        runpod={
            "http_faults": {"run": [503, 503, 429, 429, 502, 500, 429, 503] * 2, "status": [503, 429, 500, 429]},
            "rate_limits": {"run": 4},
            "rate_window_s": 1.0,
        },
        evidence=("runpod_error_answers",),
    ),
    Scenario(
        "runware-429-timeouts",
        "Runware 429 bursts and timeouts",
        "429 bursts; answers cut after the task ran (charged); Runware task timeouts",
        runware={"rate_limit_burst": 6, "drop_next_responses": 3, "drop_mode": "close", "fail_next_tasks": 2},
        evidence=("runware_429", "runware_cut_answers", "runware_task_failures", "runware_get_response"),
    ),
    Scenario(
        "video-down",
        "Video service down for a while",
        f"video service answers 503 until renders are refused, then {OUTAGE_S:.0f} s more",
        video={"down": True},
        disrupt=video_outage,
        evidence=("video_refused",),
    ),
    Scenario(
        "worker-sigkill",
        "Worker SIGKILLed mid-step (twice)",
        "a worker SIGKILLed mid-task once RunPod has work, another once Runware has work",
        runpod={"run_response_delay_s": 0.5},
        runware={"latency_s": (0.3, 0.6)},
        settings={"reconcile_after_s": 3.0},
        disrupt=kill_workers_twice,
    ),
    Scenario(
        "api-restart",
        "API restarted mid-run",
        "API SIGKILLed while webhooks are due, restarted on the same port",
        runpod={"execution_time_s": (0.3, 0.6)},
        disrupt=restart_api,
        evidence=("runpod_webhooks_failed",),
    ),
    Scenario(
        "redis-restart",
        "Redis restarted mid-run",
        "redis-server (appendonly) stopped and started while jobs run",
        disrupt=restart_redis,
    ),
    Scenario(
        "service-down-fallback",
        "Service down; Flask serves through fallback",
        "the whole service stopped; the legacy app (tts flag fastapi + fallback) makes the videos itself",
        runner=run_fallback,
        evidence=("fallbacks",),
    ),
    Scenario(
        "lying-wav-headers",
        "WAV headers that lie about their size",
        "RunPod returns audio_url WAVs whose header claims ~4 GB of samples (134,217 s if trusted)",
        runpod={"lying_wav_header": True, "output_mode": "url"},
        evidence=("wav_headers_lying",),
    ),
    Scenario(
        "redirecting-images",
        "Runware imageURL answers a redirect",
        "every Runware imageURL answers 302 (to the image itself): a redirect is never followed",
        transient=False,
        expect_reason="redirect",
        runware={"redirect_image_urls": True},
        evidence=("runware_image_redirects",),
    ),
    Scenario(
        "redirecting-video",
        "Video service video_url answers a redirect",
        "the video service's video_url answers 302 (to the video itself): a redirect is never followed",
        transient=False,
        expect_reason="redirect",
        video={"redirect_downloads": True},
        evidence=("video_download_redirects",),
    ),
    Scenario(
        "partial-outputs",
        "Partial RunPod outputs",
        "every RunPod output of two or more chunks lacks its last chunk",
        runpod={"partial_outputs": 1_000_000},
        evidence=("runpod_partial_outputs",),
    ),
    Scenario(
        "unfetchable-outputs",
        "Outputs that cannot be fetched",
        "every Runware imageURL is on a loopback host name the service refuses to fetch from",
        runware={"public_url": "http://localhost:9"},  # refused before any connection: nothing listens there
        transient=False,
        expect_reason="refusing to fetch",
    ),
    Scenario(
        "dead-output-host",
        "Outputs on a host that is down",
        "every RunPod audio_url points at a loopback port nothing listens on (connection refused)",
        runpod={"output_mode": "url", "public_url": "http://127.0.0.1:9"},
        transient=False,
        expect_reason="not fetched",
    ),
    Scenario(
        "differing-duplicates",
        "Differing duplicate deliveries",
        "every RunPod webhook delivered 3 times at once, each copy with other audio and duration",
        runpod={"webhook_faults": {"duplicates": 2, "differing_duplicates": True}},
        evidence=("runpod_webhooks_differing",),
    ),
    Scenario(
        "cancel-during-delivery",
        "Cancel during delivery, then retry",
        "jobs cancelled while RunPod's finished results are in flight (webhooks held), then retried",
        runpod={"webhook_faults": {"reorder": "shuffle", "reorder_batch": 1_000_000}},
        settings={"reconcile_after_s": 60.0},  # no poll reaches RunPod before the held webhooks
        disrupt=cancel_during_delivery,
        evidence=("runpod_webhooks_held",),
    ),
]


def on_s3(scenario: Scenario) -> Scenario:
    """The same row with artifacts in S3 (moto) and no disk shared between the API and the workers."""
    return replace(scenario, key=f"{scenario.key}-s3", title=f"{scenario.title}, artifacts in S3", storage="s3")


SCENARIOS += [on_s3(row) for row in SCENARIOS if row.key in ("worker-sigkill", "redis-restart")]


def by_key(key: str) -> Scenario:
    """The scenario named ``key``."""
    for scenario in SCENARIOS:
        if scenario.key == key:
            return scenario
    raise KeyError(f"no scenario {key!r}; choose from {', '.join(s.key for s in SCENARIOS)}")
