"""RQ queue names and how jobs are enqueued: JSON serializer, explicit timeouts, deterministic ids."""

from __future__ import annotations

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from fastapi_app.logs import task_meta

#: Submissions to providers and continuations of the pipeline.
WORK = "work"
#: Reconciliation of overdue provider work (polls providers); kept apart so it cannot starve submissions.
RECONCILE = "reconcile"
QUEUES = (WORK, RECONCILE)

JOB_TIMEOUT_S = 300
RESULT_TTL_S = 60
FAILURE_TTL_S = 24 * 3600


def queue(connection: redis.Redis, prefix: str, name: str = WORK) -> Queue:
    """An RQ queue named under the deployment's key prefix, using the JSON serializer.

    Job arguments are ids and JSON primitives only. Prefixing queue names lets several deployments (or test
    runs) share one Redis without taking each other's jobs.
    """
    return Queue(f"{prefix}-{name}", connection=connection, serializer=JSONSerializer, default_timeout=JOB_TIMEOUT_S)


def enqueue(
    connection: redis.Redis,
    func: str,
    *args: str | int | float | bool | None,
    prefix: str,
    job_id: str,
    queue_name: str = WORK,
    timeout_s: int = JOB_TIMEOUT_S,
) -> None:
    """Enqueue the task named ``func`` (dotted path) under a deterministic id; running it twice must be harmless."""
    queue(connection, prefix, queue_name).enqueue_call(
        func,
        args=args,
        job_id=job_id,
        timeout=timeout_s,
        result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
        meta=task_meta(),  # the video id (and job/batch ids) follow the work into the worker's logs
    )
