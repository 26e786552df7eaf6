"""Metrics computed at scrape time: jobs by state, queue depths, the due index, the webhook inbox, limiter slots.

Jobs are counted over the job index (the newest :data:`~fastapi_app.store.docstore.INDEX_SIZE` jobs). A completed
job never changes again, so each API process remembers which ones it has seen completed and re-reads only
the others (queued, running, failed or cancelled: few) at each scrape; the first scrape reads them all once.

While reading jobs, the census also *harvests* step durations: every finished attempt of a step is added to
the ``strangler_step_duration_seconds`` histogram exactly once across all processes (a Redis set remembers
which attempts were counted), so the histogram is a true counter even though it is fed at scrape time.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from rq import Worker

from fastapi_app.metrics.families import STEP_DURATION
from fastapi_app.runtime import Runtime
from fastapi_app.store.breakers import Breaker
from fastapi_app.store.docstore import INDEX_SIZE
from fastapi_app.store.queues import queue
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.contracts.events import BREAKER_STATES
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.keys import QUEUES

_HARVEST = """
local n = 0
for i = 2, #ARGV, 4 do
  if redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[i]) == 1 then
    redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i + 1], 1)
    redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i + 2], ARGV[i + 3])
    n = n + 1
  end
end
return n
"""
_READ_CHUNK = 200
_HARVEST_CHUNK = 250
FINISHED_STEP_STATES = ("completed", "failed")
#: Runware is the one provider behind a cluster-wide limiter (``fastapi_app.images.runware_work.limiter``).
LIMITERS = ("runware",)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def finished_steps(job_id: str, doc: dict[str, Any]) -> Iterator[tuple[str, str, str, float]]:
    """``(member, step, status, seconds)`` for every finished attempt of a step recorded in a job document."""
    for step in doc.get("steps") or []:
        status, started, finished = step.get("status"), step.get("started_at"), step.get("finished_at")
        if status in FINISHED_STEP_STATES and started and finished:
            name = str(step.get("name"))
            member = f"{job_id}:{name}:{step.get('attempts', 0)}:{status}"
            yield member, name, str(status), max(0.0, float(finished) - float(started))


class JobCensus:
    """Counts jobs by state and harvests step durations; one per API process (it caches completed jobs)."""

    def __init__(self) -> None:
        self._completed: set[str] = set()
        self._lock = threading.Lock()  # two scrapes at once run in two threads of the pool

    def count(self, rt: Runtime) -> Counter[str]:
        """Jobs in the index by status (expired records are not counted)."""
        with self._lock:
            return self._count(rt)

    def _count(self, rt: Runtime) -> Counter[str]:
        ids = [_text(i) for i in rt.redis.zrevrange(rt.keys.index("job"), 0, INDEX_SIZE - 1)]
        cached = [i for i in ids if i in self._completed]
        with rt.redis.pipeline(transaction=False) as pipe:
            for job_id in cached:
                pipe.exists(rt.jobs.key(job_id))
            alive = pipe.execute() if cached else []
        self._completed = {job_id for job_id, exists in zip(cached, alive, strict=True) if exists}
        counts: Counter[str] = Counter({BatchStatus.COMPLETED.value: len(self._completed)})
        steps: list[tuple[str, str, str, float]] = []
        todo = [i for i in ids if i not in self._completed]
        for start in range(0, len(todo), _READ_CHUNK):
            chunk = todo[start : start + _READ_CHUNK]
            for job_id, raw in zip(chunk, rt.redis.mget([rt.jobs.key(i) for i in chunk]), strict=True):
                if raw is None:
                    continue
                doc = json.loads(raw)
                status = str(doc.get("status"))
                counts[status] += 1
                steps.extend(finished_steps(job_id, doc))
                if status == BatchStatus.COMPLETED.value:
                    self._completed.add(job_id)
        harvest(rt, steps)
        return counts


def harvest(rt: Runtime, steps: Iterable[tuple[str, str, str, float]]) -> int:
    """Add each not yet counted step attempt to the step-duration histogram; returns how many were new."""
    now = time.time()
    script = rt.redis.register_script(_HARVEST)
    args: list[str | float] = []
    added = 0
    for member, step, status, seconds in steps:
        values = (step, status)
        args += [member, STEP_DURATION.bucket(values, seconds), STEP_DURATION.total(values), seconds]
        if len(args) >= _HARVEST_CHUNK * 4:
            added += int(script(keys=[rt.keys.steps_seen, rt.keys.histograms], args=[now, *args]))
            args = []
    if args:
        added += int(script(keys=[rt.keys.steps_seen, rt.keys.histograms], args=[now, *args]))
    # Attempts are remembered as long as their job can be: records expire after STRANGLER_RECORD_TTL_S.
    rt.redis.zremrangebyscore(rt.keys.steps_seen, "-inf", now - rt.settings.record_ttl_s - 3600)
    return added


def gauges(rt: Runtime, census: JobCensus) -> list[Metric]:
    """Every scrape-time gauge."""
    jobs = GaugeMetricFamily("strangler_jobs", "Pipeline jobs in the job index, by state.", labels=["state"])
    counts = census.count(rt)
    for state in BatchStatus:
        jobs.add_metric([state.value], counts.get(state.value, 0))
    return [
        jobs,
        *queue_gauges(rt),
        *due_gauges(rt),
        *inbox_gauges(rt),
        *callback_gauges(rt),
        *limiter_gauges(rt),
        *breaker_gauges(rt),
    ]


def breaker_gauges(rt: Runtime) -> list[Metric]:
    """Legacy processes whose circuit breaker for a phase is in each state (as they last reported it)."""
    gauge = GaugeMetricFamily(
        "strangler_bridge_breakers",
        "Flask-side circuit breakers by phase and state (closed, open, half_open), as last reported by each process.",
        labels=["phase", "state"],
    )
    counts: Counter[tuple[str, str]] = Counter()
    for raw in rt.redis.hvals(rt.keys.breakers):
        breaker = Breaker.model_validate_json(raw)
        counts[(breaker.phase, breaker.state)] += 1
    for phase in Phase:
        for state in BREAKER_STATES:
            gauge.add_metric([phase.value, state], counts[(phase.value, state)])
    return [gauge]


def queue_gauges(rt: Runtime) -> list[Metric]:
    """RQ queue lengths, jobs being run, failed jobs kept, and workers listening."""
    depth = GaugeMetricFamily("strangler_queue_depth", "Tasks waiting in an RQ queue.", labels=["queue"])
    started = GaugeMetricFamily("strangler_queue_started", "Tasks being run by a worker.", labels=["queue"])
    failed = GaugeMetricFamily("strangler_queue_failed", "Tasks that raised (kept for a day).", labels=["queue"])
    workers = GaugeMetricFamily("strangler_workers", "Workers listening on a queue.", labels=["queue"])
    for name in QUEUES:
        q = queue(rt.redis, rt.settings.redis_prefix, name)
        depth.add_metric([name], q.count)
        started.add_metric([name], len(q.started_job_registry))
        failed.add_metric([name], len(q.failed_job_registry))
        workers.add_metric([name], Worker.count(connection=rt.redis, queue=q))
    return [depth, started, failed, workers]


def due_gauges(rt: Runtime) -> list[Metric]:
    """The due index: unfinished work with deadlines, and how much of it is overdue."""
    key = rt.keys.due
    items = GaugeMetricFamily("strangler_due_items", "Unfinished provider work and jobs with a reconcile deadline.")
    items.add_metric([], rt.redis.zcard(key))
    overdue = GaugeMetricFamily(
        "strangler_due_overdue_items", "Of those, past their deadline (the reconciler is behind if this grows)."
    )
    overdue.add_metric([], rt.redis.zcount(key, "-inf", time.time()))
    return [items, overdue]


def inbox_gauges(rt: Runtime) -> list[Metric]:
    """Webhooks received and not yet applied by a worker."""
    pending = GaugeMetricFamily(
        "strangler_webhook_inbox_pending", "RunPod webhooks answered and waiting for a worker to apply them."
    )
    pending.add_metric([], rt.redis.xlen(rt.keys.tts_inbox))
    return [pending]


def callback_gauges(rt: Runtime) -> list[Metric]:
    """Completion webhooks not yet taken by their receivers, and how many of them no worker is sending."""
    owed, overdue = rt.outbox.backlog(time.time())
    pending = GaugeMetricFamily(
        "strangler_callbacks_pending", "Completion webhooks owed (being sent or waiting to retry)."
    )
    pending.add_metric([], owed)
    late = GaugeMetricFamily(
        "strangler_callbacks_overdue", "Of those, due over a minute ago and unclaimed (no worker is delivering)."
    )
    late.add_metric([], overdue)
    return [pending, late]


def limiter_gauges(rt: Runtime) -> list[Metric]:
    """Slots in use and the limit of each cluster-wide limiter (leases past their expiry are not counted)."""
    in_use = GaugeMetricFamily("strangler_limiter_slots_in_use", "Limiter slots held.", labels=["limiter"])
    limit = GaugeMetricFamily("strangler_limiter_slots_limit", "Limiter size.", labels=["limiter"])
    seconds, micros = rt.redis.time()
    now = seconds + micros / 1e6  # the limiter scores leases by the Redis server's clock
    for name in LIMITERS:
        in_use.add_metric([name], rt.redis.zcount(rt.keys.limiter(name), f"({now}", "+inf"))
        limit.add_metric([name], rt.settings.runware_concurrency)
    return [in_use, limit]
