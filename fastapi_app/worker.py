"""The worker process: an RQ worker on the service's queues, plus the reconciler and webhook inbox threads."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import redis
from rq.serializers import JSONSerializer

from fastapi_app.callbacks.delivery import DeliveryThread
from fastapi_app.images import request_loop
from fastapi_app.instrumentation import instrument_worker
from fastapi_app.logs import LogContextWorker
from fastapi_app.reconciler import ReconcilerThread
from fastapi_app.retention import SweepThread
from fastapi_app.runtime import Runtime, install_runtime
from fastapi_app.store.queues import queue
from fastapi_app.tts.webhook_inbox import InboxThread
from strangler_bridge.keys import QUEUES
from strangler_bridge.settings import Settings

log = logging.getLogger(__name__)
CATCH_UP_S = 30.0  # the longest a starting worker waits for the webhook backlog before reconciling anyway


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> None:
    """Run one worker until stopped (or, with ``burst``, until the queues are empty).

    A ``SimpleWorker`` runs jobs in its own process: jobs are short and idempotent, and skipping a fork
    per job triples throughput on small machines (see docs/DECISIONS.md). The reconciler thread runs beside
    it, so no second tool (cron, rq-scheduler) is needed, and so does the thread applying RunPod's queued
    webhooks, the retention sweep (docs/OPERATIONS.md) and the delivery of completion webhooks. A ``burst``
    worker runs none of them.
    """
    settings.require_for("worker")
    instrument_worker()  # with the [otel] extra and OTEL_* set only
    rt = Runtime.build(settings)
    install_runtime(rt)
    rt.warn_if_evicting()
    reconciler = ReconcilerThread(rt)
    inbox = InboxThread(rt)
    sweeper = SweepThread(rt)
    callbacks = DeliveryThread(rt)
    if not burst:
        inbox.start()
        # Webhooks that arrived while no worker ran are applied before the reconciler looks for lapsed claims:
        # otherwise it could submit again a group whose result is already waiting here (RunPod paid twice).
        inbox.caught_up.wait(CATCH_UP_S)
        reconciler.start()
        sweeper.start()
        callbacks.start()
    try:
        rounds = 0
        # RQ's loop ends when Redis goes away; wait for Redis and start a new loop (a fresh RQ name, as the
        # old registration may still be in Redis), so an outage or a Redis restart needs no process restart.
        while _work(rt, burst=burst, name=name if rounds == 0 or name is None else f"{name}-{rounds}"):
            if not _wait_for_redis(rt):
                break
            rounds += 1
    finally:
        request_loop.drain()  # image requests handed off by submit tasks (before their clients close)
        inbox.stop()  # lets the webhooks being applied finish; unread ones wait in Redis for another worker
        reconciler.stop()
        sweeper.stop()
        callbacks.stop()
        if callbacks.is_alive():
            callbacks.join()  # attempts under way finish before the HTTP client closes
        rt.close()


class _Worker(LogContextWorker):
    """Remembers a requested (warm) stop, so that only a lost Redis ends up starting the loop again."""

    stop_requested = False

    def handle_warm_shutdown_request(self) -> None:
        self.stop_requested = True
        super().handle_warm_shutdown_request()  # type: ignore[no-untyped-call]


def _work(rt: Runtime, *, burst: bool, name: str | None) -> bool:
    """Run RQ's work loop once; ``True`` if it ended without being asked to (Redis went away)."""
    try:
        worker = _Worker(
            [queue(rt.redis, rt.settings.redis_prefix, q) for q in QUEUES],
            connection=rt.redis,
            serializer=JSONSerializer,
            name=name,
        )
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if burst:
            raise
        log.warning("worker: Redis unavailable at start (%s); waiting for it", type(exc).__name__)
        return True
    try:
        worker.work(burst=burst, logging_level="INFO")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("worker: lost Redis (%s); will reconnect", type(exc).__name__)
    return not (burst or worker.stop_requested)


def _wait_for_redis(rt: Runtime, max_delay_s: float = 5.0) -> bool:
    """Wait until Redis answers PING (``True``), or until SIGTERM/SIGINT asks the process to stop (``False``)."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    delay = 0.2  # waited before the first PING too, so a loop that keeps ending cannot spin
    while not stop.wait(delay):
        try:
            rt.redis.ping()
            return True
        except redis.RedisError:
            delay = min(delay * 2, max_delay_s)
    return False
