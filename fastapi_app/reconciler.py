"""The reconciler: nothing waits on a webhook alone.

Every submission puts its group in the due index (a sorted set scored by deadline). Each worker runs a
small thread that, every ``STRANGLER_RECONCILE_INTERVAL_S``, atomically takes the overdue members (pushing
their deadline one lease ahead, so two workers never take the same member at once) and enqueues a
``reconcile`` task for each; the task submits, waits or polls the provider, and either resolves the member
or sets its next deadline. :data:`RECONCILERS` says what resolves an entry of each kind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from types import MappingProxyType

import redis

from fastapi_app import tasks
from fastapi_app.batching.kinds import BATCH_WORK, Reconcile
from fastapi_app.pipeline import orchestrator
from fastapi_app.runtime import Runtime
from strangler_bridge.keys import DueKind, DueMember

log = logging.getLogger(__name__)

_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
"""


def take_due(rt: Runtime, *, now: float, lease_s: float, limit: int = 200) -> list[str]:
    """Atomically take up to ``limit`` overdue members, leasing each for ``lease_s`` seconds."""
    script = rt.redis.register_script(_TAKE_DUE)
    members = script(keys=[rt.keys.due], args=[now, now + lease_s, limit])
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


def _advance_job(rt: Runtime, due: DueMember) -> None:
    orchestrator.advance(rt, due.record_id)


#: What resolves an overdue entry of each kind: a batch's group through its kind's work, a job by moving it on.
RECONCILERS: Mapping[DueKind, Reconcile] = MappingProxyType(
    {**{kind: work.reconcile for kind, work in BATCH_WORK.items()}, DueKind.JOB: _advance_job}
)


def resolve(rt: Runtime, member: str) -> None:
    """Resolve one overdue entry of the due index; an entry that names no known kind is dropped from it."""
    try:
        due = DueMember.parse(member)
    except ValueError:
        rt.redis.zrem(rt.keys.due, member)
        return
    RECONCILERS[due.kind](rt, due)


def reconcile_once(rt: Runtime) -> int:
    """Enqueue a reconcile task for every overdue member; returns how many."""
    members = take_due(rt, now=time.time(), lease_s=max(rt.settings.reconcile_after_s, 5.0))
    for member in members:
        tasks.reconcile.enqueue(rt, member)
    return len(members)


class ReconcilerThread(threading.Thread):
    """Runs :func:`reconcile_once` on a schedule inside a worker process."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(name="strangler-reconciler", daemon=True)
        self.rt = rt
        self.stopping = threading.Event()

    def run(self) -> None:
        """Loop until :meth:`stop`; a Redis outage is logged and retried, never fatal."""
        while not self.stopping.wait(self.rt.settings.reconcile_interval_s):
            try:
                reconcile_once(self.rt)
            except redis.RedisError as exc:
                log.warning("reconciler: redis unavailable (%s); retrying", type(exc).__name__)

    def stop(self) -> None:
        """Ask the loop to end."""
        self.stopping.set()
