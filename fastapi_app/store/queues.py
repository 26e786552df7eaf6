"""RQ queue names and how jobs are enqueued: JSON serializer, explicit timeouts, deterministic ids."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, ParamSpec

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from fastapi_app.logs import task_meta
from strangler_bridge.keys import WORK, Keys

if TYPE_CHECKING:
    from fastapi_app.runtime import Runtime

P = ParamSpec("P")

JOB_TIMEOUT_S = 300
RESULT_TTL_S = 60
FAILURE_TTL_S = 24 * 3600


def queue(connection: redis.Redis, prefix: str, name: str = WORK) -> Queue:
    """An RQ queue named under the deployment's key prefix, using the JSON serializer.

    Job arguments are ids and JSON primitives only. Prefixing queue names lets several deployments (or test
    runs) share one Redis without taking each other's jobs.
    """
    return Queue(
        Keys(prefix).queue(name), connection=connection, serializer=JSONSerializer, default_timeout=JOB_TIMEOUT_S
    )


class Task(Generic[P]):
    """An RQ task: the function the worker runs, and how it is enqueued (id scheme, queue, timeout).

    Like ``rq.decorators.job``, but enqueued with a :class:`Runtime` because the queue's name carries the
    deployment's key prefix, which is not known when the task is declared. The job names the plain function
    (``module.qualname``); the worker imports that name, finds this wrapper and calls it.
    """

    def __init__(self, func: Callable[P, None], *, job_id: Callable[..., str], queue_name: str, timeout_s: int) -> None:
        self.func = func
        self.job_id = job_id
        self.queue_name = queue_name
        self.timeout_s = timeout_s
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run the task here (what the worker does)."""
        self.func(*args, **kwargs)

    def enqueue(self, rt: Runtime, *args: P.args, **kwargs: P.kwargs) -> None:
        """Enqueue the task under its deterministic id; running it twice must be harmless."""
        queue(rt.redis, rt.settings.redis_prefix, self.queue_name).enqueue_call(
            self.func,
            args=args,
            kwargs=kwargs,
            job_id=self.job_id(*args, **kwargs),
            timeout=self.timeout_s,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            meta=task_meta(),  # the video id (and job/batch ids) follow the work into the worker's logs
        )


def task(
    job_id: Callable[..., str], *, queue_name: str = WORK, timeout_s: int = JOB_TIMEOUT_S
) -> Callable[[Callable[P, None]], Task[P]]:
    """Declare an RQ task: ``job_id`` makes its id from the task's arguments (ids and JSON primitives only)."""

    def declare(func: Callable[P, None]) -> Task[P]:
        return Task(func, job_id=job_id, queue_name=queue_name, timeout_s=timeout_s)

    return declare
