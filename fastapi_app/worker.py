"""The worker process: an RQ worker on the service's queues."""

from __future__ import annotations

import logging

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from fastapi_app.queues import QUEUES, queue
from strangler_bridge.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> None:
    """Run one worker until stopped (or, with ``burst``, until the queues are empty).

    A ``SimpleWorker`` runs jobs in its own process: jobs are short and idempotent, and skipping a fork
    per job triples throughput on small machines (see docs/DECISIONS.md).
    """
    settings.require("redis_url")
    connection = redis.Redis.from_url(settings.redis_url or "")
    worker = SimpleWorker(
        [queue(connection, name) for name in QUEUES],
        connection=connection,
        serializer=JSONSerializer,
        name=name,
    )
    worker.work(burst=burst, logging_level="INFO")
