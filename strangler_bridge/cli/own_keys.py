"""A key prefix of its own for ``demo`` and ``dev`` when they use a Redis they did not start.

Pointed at a shared Redis, the demo must not switch a real deployment's flags or take its queued work: it
writes under ``<prefix>-dev-<random>`` and, once every process it started has stopped, deletes what it wrote
there: its records, its RQ queues and registries, and the RQ jobs that came from those queues.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from strangler_bridge.cli.redis_server import check_reachable
from strangler_bridge.keys import QUEUES, Keys
from strangler_bridge.settings import Settings

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@contextmanager
def own_prefix(settings: Settings) -> Iterator[Settings]:
    """``settings`` under a fresh key prefix when Redis is configured; the prefix's keys are removed on exit.

    Without ``STRANGLER_REDIS_URL`` the stack starts its own embedded Redis and deletes it whole, so the
    settings are returned unchanged.
    """
    if not settings.redis_url:
        yield settings
        return
    check_reachable(settings.redis_url)
    prefix = f"{settings.redis_prefix}-dev-{secrets.token_hex(4)}"
    try:
        yield settings.model_copy(update={"redis_prefix": prefix})
    finally:
        remove_prefix(settings.redis_url, prefix)


def remove_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key written under ``prefix`` (records, queues, RQ jobs and workers of those queues).

    Returns how many keys were deleted. RQ's own short-lived global lock (``rq:clean_groups``, which expires
    by itself) is left alone, since a deployment's workers share it.
    """
    import redis

    client: Any = redis.Redis.from_url(redis_url, socket_connect_timeout=2.0, socket_timeout=10.0)
    pattern = _glob_escape(prefix)
    queue_names = {Keys(prefix).queue(name) for name in QUEUES}
    try:
        keys = {*client.scan_iter(f"{pattern}:*", count=1000), *client.scan_iter(f"rq:*:{pattern}-*", count=1000)}
        for job_key in client.scan_iter("rq:job:*", count=1000):
            origin = client.hget(job_key, "origin") if client.type(job_key) == b"hash" else None
            if origin is not None and origin.decode() in queue_names:
                job_id = job_key.decode().removeprefix("rq:job:")
                keys.update({job_key, f"rq:results:{job_id}".encode()})
                keys.update(client.scan_iter(f"{_glob_escape(job_key.decode())}:*", count=1000))
        for worker_key in client.scan_iter("rq:worker:*", count=1000):
            listed = client.hget(worker_key, "queues") if client.type(worker_key) == b"hash" else None
            if listed is not None and set(listed.decode().split(",")) <= queue_names:
                keys.add(worker_key)  # a stopped worker's record, which RQ keeps for 60 s
        client.srem("rq:queues", *(f"rq:queue:{name}" for name in queue_names))
        deleted = 0
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            deleted += int(client.unlink(*ordered[start : start + 500]))
        return deleted
    finally:
        client.close()


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)
