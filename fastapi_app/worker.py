"""The worker process: an RQ worker on the service's queues, plus the reconciler thread."""

from __future__ import annotations

import logging

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from fastapi_app.queues import QUEUES, queue
from fastapi_app.reconciler import ReconcilerThread
from fastapi_app.runtime import Runtime, install_runtime
from strangler_bridge.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> None:
    """Run one worker until stopped (or, with ``burst``, until the queues are empty).

    A ``SimpleWorker`` runs jobs in its own process: jobs are short and idempotent, and skipping a fork
    per job triples throughput on small machines (see docs/DECISIONS.md). The reconciler thread runs beside
    it, so no second tool (cron, rq-scheduler) is needed.
    """
    rt = Runtime.build(settings)
    install_runtime(rt)
    worker = SimpleWorker(
        [queue(rt.redis, settings.redis_prefix, q) for q in QUEUES],
        connection=rt.redis,
        serializer=JSONSerializer,
        name=name,
    )
    reconciler = ReconcilerThread(rt)
    if not burst:
        reconciler.start()
    try:
        worker.work(burst=burst, logging_level="INFO")
    finally:
        reconciler.stop()
        rt.close()
