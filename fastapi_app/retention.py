"""Retention: artifacts go when no record names them any more.

Records (batches, jobs) expire ``STRANGLER_RECORD_TTL_S`` after their last change. Every
``STRANGLER_ARTIFACTS_SWEEP_S`` one worker (a Redis lock picks it) lists the store and removes each artifact
that is older than the record TTL and that no check in :data:`REFERENCE_CHECKS` says is still referenced. An
artifact is written after its record was created and before its record's last change, so once the record is
gone the artifact is at least that old: the age rule only spares what is being written. A key whose layout is
unknown is kept. Other features whose records point at artifacts (a reuse index, say) add their own check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from fastapi_app.reuse.index import ReuseIndex
from fastapi_app.runtime import Runtime
from strangler_bridge.errors import BridgeError

log = logging.getLogger(__name__)

#: ``check(rt, key)``: True while something still needs the artifact ``key``.
ReferenceCheck = Callable[[Runtime, str], bool]
#: The first part of an artifact key names the store of its owning record.
_OWNERS = {"tts": "batches", "img": "batches", "vid": "batches", "jobs": "jobs"}


def referenced_by_record(rt: Runtime, key: str) -> bool:
    """Whether the batch or job the key belongs to (``tts/<batch>/...``, ``jobs/<job>/...``, and a handler's
    upload ``uploads/tts/<batch>/...``) still exists.

    A key of another layout counts as referenced: the sweep removes only what it understands.
    """
    parts = key.split("/")
    if parts[0] == "uploads":
        parts = parts[1:]
    owner = _OWNERS.get(parts[0]) if len(parts) >= 3 else None
    if owner is None:
        return True
    store = rt.batches if owner == "batches" else rt.jobs
    return bool(rt.redis.exists(store.key(parts[1])))


def referenced_by_reuse(rt: Runtime, key: str) -> bool:
    """Whether an entry of the reuse index (issue 20) points at the artifact."""
    return ReuseIndex(rt).referenced(key)


#: Every check an artifact must fail before it is removed; extend it, never replace it.
REFERENCE_CHECKS: list[ReferenceCheck] = [referenced_by_record, referenced_by_reuse]


@dataclass
class SweepResult:
    """What one sweep saw and removed."""

    seen: int = 0
    removed: int = 0


def sweep(rt: Runtime, *, now: float | None = None) -> SweepResult:
    """Remove every artifact older than the record TTL that no reference check claims."""
    cutoff = (now if now is not None else time.time()) - rt.settings.record_ttl_s
    result = SweepResult()
    for key, modified in rt.artifacts.entries():
        result.seen += 1
        if modified > cutoff or any(check(rt, key) for check in REFERENCE_CHECKS):
            continue
        rt.artifacts.delete(key)
        result.removed += 1
    return result


class SweepThread(threading.Thread):
    """Runs :func:`sweep` in a worker every ``STRANGLER_ARTIFACTS_SWEEP_S``, in one worker at a time."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(name="strangler-retention", daemon=True)
        self.rt = rt
        self.stopping = threading.Event()

    def run(self) -> None:
        """Loop until :meth:`stop`; a failed sweep is logged and tried again next interval."""
        interval = self.rt.settings.artifacts_sweep_s
        while interval > 0 and not self.stopping.wait(interval):
            try:
                # The lock lasts one interval: whichever worker takes it sweeps, the others skip this round.
                if self.rt.redis.set(self.rt.keys.retention_lock, "1", nx=True, ex=max(1, int(interval))):
                    result = sweep(self.rt)
                    log.info("retention sweep: %d artifacts seen, %d removed", result.seen, result.removed)
            except (redis.RedisError, BridgeError) as exc:
                log.warning("retention sweep failed (%s); next try in %.0f s", exc, interval)

    def stop(self) -> None:
        """Ask the loop to end."""
        self.stopping.set()
