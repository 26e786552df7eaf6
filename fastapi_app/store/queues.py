"""RQ queue names and how jobs are enqueued: JSON serializer, explicit timeouts, deterministic ids."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec

import redis
from rq import Queue, get_current_job
from rq.serializers import JSONSerializer

from fastapi_app.logs import current, ids_in, task_meta
from strangler_bridge import tracing
from strangler_bridge.keys import WORK, Keys

if TYPE_CHECKING:
    from fastapi_app.runtime import Runtime

P = ParamSpec("P")

JOB_TIMEOUT_S = 300
RESULT_TTL_S = 60
FAILURE_TTL_S = 24 * 3600
TRACE_META = "trace"


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
        """Run the task here (what the worker does), traced as a child of the work that enqueued it."""
        if not tracing.enabled():
            self.func(*args, **kwargs)
            return
        job = get_current_job()
        parent = job.meta.get(TRACE_META) if job is not None and isinstance(job.meta, dict) else None
        name = self.func.__name__
        attributes: dict[str, tracing.AttributeValue] = {"strangler.task": name}
        if job is not None:
            attributes["strangler.rq_job_id"] = job.id
        attributes.update({f"strangler.{key}": value for key, value in current().items()})  # bound by the worker
        with tracing.span(f"task {name}", parent=parent, kind="consumer", attributes=attributes):
            self.func(*args, **kwargs)

    def enqueue(self, rt: Runtime, *args: P.args, **kwargs: P.kwargs) -> None:
        """Enqueue the task under its deterministic id; running it twice must be harmless."""
        meta = task_meta()  # the video id (and job/batch ids) follow the work into the worker's logs
        trace = tracing.inject() or stored_trace(rt, list(args))
        if trace:
            meta[TRACE_META] = trace
        queue(rt.redis, rt.settings.redis_prefix, self.queue_name).enqueue_call(
            self.func,
            args=args,
            kwargs=kwargs,
            job_id=self.job_id(*args, **kwargs),
            timeout=self.timeout_s,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            meta=meta,
        )


def stored_trace(rt: Runtime, values: list[Any]) -> dict[str, str]:
    """The trace context stored on the batch or job that ``values`` (task arguments, ids) name; ``{}`` if none.

    Work started outside any trace (the reconciler, a provider's webhook) joins the trace of its record this way.
    Costs a read of the record, so only when tracing is on.
    """
    if not tracing.enabled():
        return {}
    ids = ids_in(values)
    if "batch_id" in ids:
        batch = rt.batches.load(ids["batch_id"])
        return batch.trace if batch is not None else {}
    if "job_id" in ids:
        job = rt.jobs.load(ids["job_id"])
        return job.trace if job is not None else {}
    return {}


def task(
    job_id: Callable[..., str], *, queue_name: str = WORK, timeout_s: int = JOB_TIMEOUT_S
) -> Callable[[Callable[P, None]], Task[P]]:
    """Declare an RQ task: ``job_id`` makes its id from the task's arguments (ids and JSON primitives only)."""

    def declare(func: Callable[P, None]) -> Task[P]:
        return Task(func, job_id=job_id, queue_name=queue_name, timeout_s=timeout_s)

    return declare
