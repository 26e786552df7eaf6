"""RQ queue names and how jobs are enqueued: JSON serializer, explicit timeouts, deterministic ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer

#: Submissions to providers and continuations of the pipeline.
WORK = "strangler-work"
#: Reconciliation of overdue provider work (polls providers); kept apart so it cannot starve submissions.
RECONCILE = "strangler-reconcile"
QUEUES = (WORK, RECONCILE)

JOB_TIMEOUT_S = 300
RESULT_TTL_S = 60
FAILURE_TTL_S = 24 * 3600


def queue(connection: redis.Redis, name: str = WORK) -> Queue:
    """An RQ queue using the JSON serializer (job arguments are ids and JSON primitives only)."""
    return Queue(name, connection=connection, serializer=JSONSerializer, default_timeout=JOB_TIMEOUT_S)


def enqueue(
    connection: redis.Redis,
    func: Callable[..., Any],
    *args: str | int | float | bool | None,
    job_id: str,
    queue_name: str = WORK,
) -> None:
    """Enqueue ``func(*args)`` under a deterministic id; running it twice must be harmless."""
    queue(connection, queue_name).enqueue_call(
        func,
        args=args,
        job_id=job_id,
        timeout=JOB_TIMEOUT_S,
        result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
    )
