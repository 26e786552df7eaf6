"""The simulated endpoint: a queue, a pool of workers, job state transitions, TTL and retention, faults.

Everything runs on the server's event loop: each job executes as an asyncio task (a sync handler in a
thread), at most ``workers`` at once; the others stay IN_QUEUE. States follow RunPod:
IN_QUEUE -> IN_PROGRESS -> COMPLETED | FAILED | CANCELLED | TIMED_OUT, and FAILED/TIMED_OUT -> IN_QUEUE on retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import uuid
from collections import defaultdict, deque
from typing import Any

from pydantic import ValidationError

from strangler_bridge.providers.runpod.models import RunPodStatus
from strangler_bridge.simulators.runpod.config import WEEK_MS, Handler, Operation, RunPodSimConfig, sample
from strangler_bridge.simulators.runpod.handlers import (
    ABSENT,
    CURRENT_JOB,
    AudioStore,
    JobContext,
    Outcome,
    TtsHandler,
    exception_error,
    invoke,
    load_handler,
)
from strangler_bridge.simulators.runpod.jobs import Counters, SimError, SimJob, fingerprint
from strangler_bridge.simulators.runpod.webhooks import WebhookSender

RETRYABLE = (RunPodStatus.FAILED, RunPodStatus.TIMED_OUT)


class SimulatedFailure(RuntimeError):
    """Raised (as if by the handler) when a failure knob decides an execution fails."""


class RunPodEngine:
    """State and behaviour of one simulated endpoint; the routes in ``app.py`` are thin over it."""

    def __init__(self, config: RunPodSimConfig) -> None:
        self.initial_config = config
        self.config = _with_own_faults(config)
        self.rng = random.Random(config.seed)
        self.counters = Counters()
        self.audio = AudioStore()
        self.jobs: dict[str, SimJob] = {}
        self.webhooks = WebhookSender(lambda: self.config, self.rng, self.counters.webhooks)
        self._handler = _resolve(config.handler, self.audio)
        self._queue: dict[str, SimJob] = {}  # insertion order is FIFO order
        self._busy: dict[int, SimJob] = {}  # worker slot -> running job
        self._windows: defaultdict[str, deque[float]] = defaultdict(deque)
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the dispatcher and the webhook client (called by the app's lifespan)."""
        self._wake = asyncio.Event()
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_forever())
        await self.webhooks.start()

    async def stop(self) -> None:
        """Stop every job, timer and delivery."""
        tasks = self._drop_all_jobs()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            tasks.append(self._dispatcher)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.webhooks.stop()

    def reset(self, *, restore_config: bool = False) -> None:
        """Forget every job, counter, held webhook and stored audio; optionally restore the initial knobs."""
        self._drop_all_jobs()
        if restore_config:
            self._apply(self.initial_config)
        self.counters.clear()
        self.webhooks.cancel_all()
        self._windows.clear()
        self.audio.clear()
        self.rng.seed(self.config.seed)

    def configure(self, patch: dict[str, Any]) -> RunPodSimConfig:
        """Change knobs at run time; 422 naming the problem if the result is invalid."""
        try:
            config = self.config.merged(patch)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
            raise SimError(422, f"invalid simulator config: {problems}") from None
        try:
            self._apply(config, reseed="seed" in patch)
        except ValueError as exc:
            raise SimError(422, str(exc)) from None
        return config

    def _apply(self, config: RunPodSimConfig, *, reseed: bool = False) -> None:
        if config.handler is not self.config.handler:
            self._handler = _resolve(config.handler, self.audio)
        self.config = _with_own_faults(config)
        if reseed:
            self.rng.seed(config.seed)
        self._wakeup()

    # --- admission (every API request) ------------------------------------------------------------
    def admit(self, operation: Operation, endpoint_id: str, authorization: str | None) -> None:
        """Check endpoint, key, rate limit and injected faults before an operation does anything."""
        config = self.config
        self.counters.requests[operation] += 1
        if config.endpoint_id is not None and endpoint_id != config.endpoint_id:
            raise SimError(404, f"endpoint {endpoint_id!r} not found")
        scheme, _, rest = (authorization or "").strip().partition(" ")
        key = rest.strip() if scheme.lower() == "bearer" else scheme  # "Bearer <key>" or the bare key
        if not key or (config.api_key is not None and key != config.api_key):
            raise SimError(401, "Unauthorized: missing or invalid API key")
        limit = config.rate_limits.get(operation)
        if limit is not None:
            now, window = asyncio.get_running_loop().time(), self._windows[operation]
            while window and window[0] <= now - config.rate_window_s:
                window.popleft()
            if len(window) >= limit:
                self.counters.events["responses_429"] += 1
                raise SimError(429, f"rate limit of {limit} {operation} requests per {config.rate_window_s:g} s")
            window.append(now)
        faults = config.http_faults.get(operation)
        if faults:
            status = faults.pop(0)
            self.counters.events["injected_faults"] += 1
            self.counters.events["responses_429"] += int(status == 429)
            raise SimError(status, f"simulated HTTP {status} (injected fault)")

    # --- operations -------------------------------------------------------------------------------
    def submit(self, body: Any, *, sync: bool, base_url: str, endpoint_id: str) -> SimJob:
        """Create and queue a job from a ``/run`` or ``/runsync`` body (400 naming the bad field)."""
        if not isinstance(body, dict):
            raise SimError(400, "request body must be a JSON object")
        if "input" not in body:
            raise SimError(400, 'missing required field "input"')
        webhook = body.get("webhook")
        if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))):
            raise SimError(400, "webhook must be an http(s) URL")
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise SimError(400, "policy must be an object")
        cfg = self.config
        timeout_ms = _policy_ms(policy, "executionTimeout", cfg.execution_timeout_ms, cfg.min_execution_timeout_ms)
        ttl_ms = _policy_ms(policy, "ttl", cfg.ttl_ms, cfg.min_ttl_ms)
        job = SimJob(
            id=f"{'sync-' if sync else ''}{uuid.uuid4()}-u1",
            input=body["input"],
            webhook=webhook,
            s3_config=body.get("s3Config"),
            sync=sync,
            base_url=base_url,
            endpoint_id=endpoint_id,
            execution_timeout_s=timeout_ms / 1000,
            fingerprint=fingerprint(body["input"]),
        )
        self.jobs[job.id] = job
        self.counters.jobs_received["runsync" if sync else "run"] += 1
        chunks = body["input"].get("chunks") if isinstance(body["input"], dict) else None
        self.counters.events["chunks_received"] += len(chunks) if isinstance(chunks, list) else 0
        job.ttl_timer = asyncio.get_running_loop().call_later(ttl_ms / 1000, self._ttl_expired, job.id)
        self._enqueue(job)
        return job

    def get(self, job_id: str) -> SimJob:
        """The job, or 404 if it is unknown, expired or deleted."""
        job = self.jobs.get(job_id)
        if job is None:
            raise SimError(404, f"job {job_id} not found (unknown, expired or deleted)")
        return job

    async def wait(self, job: SimJob, timeout_s: float) -> None:
        """Until the job is terminal (or deleted), at most ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job.done.wait(), timeout_s)

    def cancel(self, job_id: str) -> SimJob:
        """Cancel a queued or running job; a finished job is left as it is."""
        job = self.get(job_id)
        if not job.status.terminal:
            self._stop(job, RunPodStatus.CANCELLED)
        return job

    def retry(self, job_id: str) -> SimJob:
        """Requeue a FAILED or TIMED_OUT job under the same id, its output and error cleared."""
        job = self.get(job_id)
        if job.status not in RETRYABLE:
            raise SimError(400, f"job {job_id} is {job.status.value}; only FAILED or TIMED_OUT jobs can be retried")
        if job.retention_timer is not None:
            job.retention_timer.cancel()
        job.retention_timer = None
        job.started_at = job.delay_ms = job.execution_ms = job.error = job.worker_id = None
        job.output = ABSENT
        job.retries += 1
        job.done = asyncio.Event()
        self.counters.events["retried"] += 1
        self._enqueue(job)
        return job

    def purge(self) -> int:
        """Remove every queued job (running jobs go on); returns how many were removed."""
        queued = list(self._queue)
        for job_id in queued:
            self._delete(job_id)
        self.counters.events["purged"] += len(queued)
        return len(queued)

    def health(self) -> dict[str, Any]:
        """``/health``: job counters and worker states."""
        running = len(self._busy)
        idle = max(0, self.config.workers - running)
        return {
            "jobs": {
                "completed": self.counters.outcomes[RunPodStatus.COMPLETED.value],
                "failed": self.counters.outcomes[RunPodStatus.FAILED.value],
                "inProgress": running,
                "inQueue": len(self._queue),
                "retried": self.counters.events["retried"],
            },
            "workers": {"idle": idle, "running": running, "initializing": 0, "ready": idle, "throttled": 0},
        }

    def live(self) -> dict[str, int]:
        """What is in flight right now (for ``/_sim/counters``)."""
        return {
            "jobs_stored": len(self.jobs),
            "in_queue": len(self._queue),
            "in_progress": len(self._busy),
            "webhooks_pending": self.webhooks.pending,
        }

    # --- scheduling -------------------------------------------------------------------------------
    def _enqueue(self, job: SimJob) -> None:
        now = asyncio.get_running_loop().time()
        job.status = RunPodStatus.IN_QUEUE
        job.queued_at = now
        job.ready_at = now + sample(self.rng, self.config.queue_delay_s)
        self._queue[job.id] = job
        self._wakeup()

    def _wakeup(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _dispatch_forever(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            next_in = self._dispatch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), next_in)

    def _dispatch(self) -> float | None:
        """Start every ready job a free worker can take; seconds until the next queued job is ready."""
        now = asyncio.get_running_loop().time()
        soonest: float | None = None
        for job in list(self._queue.values()):
            if len(self._busy) >= self.config.workers:
                return None
            if job.ready_at > now:
                soonest = job.ready_at if soonest is None else min(soonest, job.ready_at)
                continue
            self._start(job, now)
        return None if soonest is None else soonest - now

    def _start(self, job: SimJob, now: float) -> None:
        del self._queue[job.id]
        slot = next(i for i in itertools.count() if i not in self._busy)
        self._busy[slot] = job
        job.status = RunPodStatus.IN_PROGRESS
        job.started_at = now
        job.delay_ms = _ms(now - job.queued_at)
        job.worker_id = f"simworker{slot:05d}"
        self.counters.executions[job.id] += 1
        self.counters.executions_by_input[job.fingerprint] += 1
        job.task = asyncio.get_running_loop().create_task(self._execute(job, slot))

    async def _execute(self, job: SimJob, slot: int) -> None:
        config = self.config
        mode = config.output_mode
        CURRENT_JOB.set(
            JobContext(
                config.public_url or job.base_url,
                job.endpoint_id,
                mode,
                job.worker_id or "",
                lying_wav_header=config.lying_wav_header,
            )
        )
        try:
            outcome = await asyncio.wait_for(self._work(job, config), job.execution_timeout_s)
        except TimeoutError:
            status = RunPodStatus(config.execution_timeout_status)
            error = "execution timeout exceeded" if status is RunPodStatus.FAILED else None
            self._finish(job, status, Outcome(error=error))
        else:
            outcome = self._maybe_partial(_checked_output(outcome, config.max_output_bytes), config)
            self._finish(job, RunPodStatus.FAILED if outcome.error else RunPodStatus.COMPLETED, outcome)
        finally:
            if self._busy.get(slot) is job:
                del self._busy[slot]
            self._wakeup()

    async def _work(self, job: SimJob, config: RunPodSimConfig) -> Outcome:
        executions = self.counters.executions_by_input[job.fingerprint]
        fail = executions <= config.fail_first_executions or self.rng.random() < config.failure_rate
        await asyncio.sleep(sample(self.rng, config.execution_time_s))
        if fail:
            reason = f"simulated failure (execution {executions} of this input)"
            return Outcome(error=exception_error(SimulatedFailure(reason)))
        return await invoke(self._handler, job.worker_job(), aggregate_stream=config.aggregate_stream)

    def _maybe_partial(self, outcome: Outcome, config: RunPodSimConfig) -> Outcome:
        """Drop the last chunk of a TTS output while ``partial_outputs`` asks for more such outputs."""
        output = outcome.output
        chunks = output.get("chunks") if isinstance(output, dict) else None
        if (
            not isinstance(chunks, list)
            or len(chunks) < 2
            or self.counters.events["partial_outputs"] >= config.partial_outputs
        ):
            return outcome
        self.counters.events["partial_outputs"] += 1
        return Outcome(output={**output, "chunks": chunks[:-1]})

    # --- endings ----------------------------------------------------------------------------------
    def _finish(self, job: SimJob, status: RunPodStatus, outcome: Outcome) -> None:
        if job.status.terminal or job.id not in self.jobs:
            return
        loop = asyncio.get_running_loop()
        job.status = status
        if job.started_at is not None:
            job.execution_ms = _ms(loop.time() - job.started_at)
        job.output, job.error = outcome.output, outcome.error
        self._queue.pop(job.id, None)
        self.counters.outcomes[status.value] += 1
        job.done.set()
        retention = self.config.runsync_retention_s if job.sync else self.config.run_retention_s
        job.retention_timer = loop.call_later(retention, self._delete, job.id)
        if job.webhook and status in self.config.webhook_states:
            self.webhooks.send(job.webhook, job.webhook_payload())

    def _stop(self, job: SimJob, status: RunPodStatus) -> None:
        running = job.task if job.status is RunPodStatus.IN_PROGRESS else None
        self._finish(job, status, Outcome())
        if running is not None:
            running.cancel()

    def _ttl_expired(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            return
        if self.config.ttl_expiry == "timed_out" and not job.status.terminal:
            self._stop(job, RunPodStatus.TIMED_OUT)
        else:
            self._delete(job_id)

    def _delete(self, job_id: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        self._queue.pop(job_id, None)
        job.cancel_timers()
        if job.task is not None and not job.task.done():
            job.task.cancel()
        job.done.set()
        self._wakeup()

    def _drop_all_jobs(self) -> list[asyncio.Task[None]]:
        tasks = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
        for job_id in list(self.jobs):
            self._delete(job_id)
        self._busy.clear()
        return tasks


def _resolve(handler: str | Handler | None, audio: AudioStore) -> Handler:
    """The handler to run: the built-in TTS, a loaded ``module:function``, or the callable itself."""
    if handler is None:
        return TtsHandler(audio)
    if isinstance(handler, str):
        return load_handler(handler)
    return handler


def _with_own_faults(config: RunPodSimConfig) -> RunPodSimConfig:
    """A copy whose injected-fault lists may be consumed without touching ``config`` (kept for a reset)."""
    return config.model_copy(update={"http_faults": {op: list(codes) for op, codes in config.http_faults.items()}})


def _checked_output(outcome: Outcome, max_bytes: int) -> Outcome:
    """What the platform receives from the worker: the output must be JSON and not too large."""
    if outcome.error is not None or outcome.output is ABSENT:
        return outcome
    try:
        size = len(json.dumps(outcome.output))
    except (TypeError, ValueError) as exc:
        return Outcome(error=exception_error(exc))
    # Like a real worker whose result POST is too large: the job completes with no output.
    return Outcome() if size > max_bytes else outcome


def _policy_ms(policy: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = policy.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= WEEK_MS:
        raise SimError(400, f"policy.{key} must be an integer number of milliseconds from {minimum} to {WEEK_MS}")
    return value


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
