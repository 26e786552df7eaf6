"""RunPod's webhooks, answered at once and applied by the workers.

RunPod counts a webhook as delivered only when it is answered 200 within about 10 s, and retries it
otherwise; applying a result (decoding and storing the audio, rewriting the batch record) costs milliseconds
of CPU, so an API that applied webhooks itself answered at a tenth of its plain request rate and let a burst
queue up for seconds (docs/BENCHMARKS.md, benchmark 2). So the API checks the token and the body, appends
the delivery to a Redis stream (one round trip), and answers. Every worker process runs an
:class:`InboxThread` that reads the stream in a consumer group, applies what it read, batch by batch (one
record update for all the groups of a batch that arrived together), and acknowledges.

Nothing is lost when a process dies: an entry is removed only once applied; the entries a dead worker had
read are taken over by another after :data:`RECLAIM_IDLE_S`. A delivery that cannot be applied at all is
dropped with an error in the log: the group stays in the due index, so the reconciler asks RunPod for the
status, as for a webhook that never came.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from fastapi_app import tasks
from fastapi_app.metrics.families import WEBHOOK_RESULTS
from fastapi_app.metrics.store import Increments, record
from fastapi_app.runtime import Runtime
from fastapi_app.store.queues import stored_trace
from fastapi_app.tts import runpod_work
from strangler_bridge import tracing
from strangler_bridge.errors import ProviderRejected, StoreUnavailable
from strangler_bridge.providers.runpod.client import RunPodJob, parse_tts_output

log = logging.getLogger(__name__)

GROUP = "appliers"
READ_COUNT = 64  # entries applied per round: enough to coalesce a burst, small enough to ack promptly
APPLY_THREADS = 4  # batches applied at once
BLOCK_MS = 1000  # how long one read waits for new entries (also how soon a stop is noticed)
RECLAIM_IDLE_S = 30.0  # an entry read this long ago and not acknowledged belonged to a worker that died
RECLAIM_EVERY_S = 10.0
FORGET_CONSUMER_S = 3600.0  # a consumer with nothing pending and idle this long is a worker that is gone

Entry = tuple[str, dict[str, str]]


async def append(rt: Runtime, batch_id: str, no: int, attempt: int, body: bytes) -> None:
    """Queue one verified delivery (the API's only write on a webhook)."""
    fields: dict[Any, Any] = {"batch": batch_id, "group": no, "attempt": attempt, "body": body}
    await rt.aredis.xadd(rt.keys.tts_inbox, fields)


def ensure_group(rt: Runtime) -> None:
    """Create the stream and its consumer group if they do not exist yet."""
    try:
        rt.redis.xgroup_create(rt.keys.tts_inbox, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def consumer_name() -> str:
    """This process's name in the consumer group."""
    return f"{socket.gethostname()}-{os.getpid()}"


def apply_new(rt: Runtime, consumer: str, *, block_ms: int | None = None, own_pending: bool = False) -> int:
    """Read up to :data:`READ_COUNT` entries and apply them; how many were read.

    ``own_pending`` re-reads what this consumer read before but did not acknowledge (after a Redis error);
    otherwise new entries are read, waiting up to ``block_ms`` for one.
    """
    answer: Any = rt.redis.xreadgroup(
        GROUP, consumer, {rt.keys.tts_inbox: "0" if own_pending else ">"}, count=READ_COUNT, block=block_ms
    )
    entries = _decoded(answer[0][1]) if answer else []  # [[stream, entries]] (RESP2, as Runtime connects)
    apply_entries(rt, entries)
    return len(entries)


def reclaim(rt: Runtime, consumer: str) -> int:
    """Take over and apply entries that a dead consumer read and never acknowledged; how many."""
    _, claimed, *_ = rt.redis.xautoclaim(
        rt.keys.tts_inbox, GROUP, consumer, min_idle_time=int(_reclaim_idle_s(rt) * 1000), count=READ_COUNT
    )
    entries = _decoded(claimed)
    apply_entries(rt, entries)
    for info in rt.redis.xinfo_consumers(rt.keys.tts_inbox, GROUP):
        name = _text(info["name"])
        if name != consumer and info["pending"] == 0 and info["idle"] > FORGET_CONSUMER_S * 1000:
            rt.redis.xgroup_delconsumer(rt.keys.tts_inbox, GROUP, name)
    return len(entries)


def _reclaim_idle_s(rt: Runtime) -> float:
    # Well within the claim lease: a dead worker's unapplied result must be applied before the reconciler takes
    # the group's lapsed claim for a lost submission and pays RunPod again.
    return min(RECLAIM_IDLE_S, rt.settings.reconcile_after_s / 3)


def apply_entries(rt: Runtime, entries: list[Entry]) -> None:
    """Apply deliveries (those of one batch in one record update), then acknowledge and delete them.

    Batches are applied in parallel threads: most of the time goes to fsync and Redis round trips, which do
    not hold the GIL. Redis and store outages propagate and leave the entries to be read again; any other
    failure drops the delivery with an error in the log (the reconciler then polls RunPod for that group).
    """
    by_batch: dict[str, list[runpod_work.Delivery]] = defaultdict(list)
    for entry_id, fields in entries:
        delivery = _delivery(rt, entry_id, fields)
        if delivery is not None:
            by_batch[fields["batch"]].append(delivery)
    outcomes = Increments()
    if by_batch:
        with ThreadPoolExecutor(min(APPLY_THREADS, len(by_batch)), thread_name_prefix="inbox-apply") as pool:
            futures = {batch_id: pool.submit(_apply, rt, batch_id, d) for batch_id, d in by_batch.items()}
        for batch_id, future in futures.items():
            try:
                applied = future.result()
            except (StoreUnavailable, redis.RedisError):
                raise
            except Exception:
                count = len(by_batch[batch_id])
                log.exception("could not apply %d webhook(s) of batch %s; reconciling instead", count, batch_id)
                outcomes.inc(WEBHOOK_RESULTS, ("runpod", "error"), count)
                continue
            for ok in applied:
                outcomes.inc(WEBHOOK_RESULTS, ("runpod", "accepted" if ok else "duplicate"))
    if entries:
        ids = [entry_id for entry_id, _ in entries]
        with rt.redis.pipeline() as pipe:
            pipe.xack(rt.keys.tts_inbox, GROUP, *ids)
            pipe.xdel(rt.keys.tts_inbox, *ids)
            pipe.execute()
        record(rt.redis, rt.keys, outcomes)


def _apply(rt: Runtime, batch_id: str, deliveries: list[runpod_work.Delivery]) -> list[bool]:
    """Apply one batch's deliveries, traced in the trace of the batch (a webhook carries no trace of its own)."""
    attributes: dict[str, tracing.AttributeValue] = {
        "strangler.batch_id": batch_id,
        "strangler.provider": "runpod",
        "strangler.deliveries": len(deliveries),
    }
    with tracing.span("webhook runpod", parent=stored_trace(rt, [batch_id]), kind="consumer", attributes=attributes):
        return runpod_work.apply_jobs(rt, batch_id, deliveries)


def _delivery(rt: Runtime, entry_id: str, fields: dict[str, str]) -> runpod_work.Delivery | None:
    """The delivery of one entry, or ``None`` if it is handed to an RQ task or unusable."""
    try:
        batch_id, no, attempt = fields["batch"], int(fields["group"]), int(fields["attempt"])
        job = RunPodJob.parse(json.loads(fields["body"]))
    except (KeyError, ValueError, ProviderRejected) as exc:
        log.error("dropping unreadable webhook entry %s: %s", entry_id, exc)
        return None
    if _needs_download(job):
        # A download may take long; an RQ task does it so this thread keeps applying other webhooks.
        tasks.apply_tts_webhook.enqueue(rt, batch_id, no, attempt, fields["body"])
        return None
    return no, attempt, job


def _needs_download(job: RunPodJob) -> bool:
    if not job.has_output:
        return False
    try:
        return any(chunk.audio_url and not chunk.audio_base64 for chunk in parse_tts_output(job.output))
    except ProviderRejected:
        return False


def _decoded(raw: list[Any]) -> list[Entry]:
    return [(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}) for entry_id, fields in raw if fields]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class InboxThread(threading.Thread):
    """Applies queued webhooks inside a worker process until :meth:`stop`."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(name="strangler-webhook-inbox", daemon=True)
        self.rt = rt
        self.consumer = consumer_name()
        self.stopping = threading.Event()
        self.caught_up = threading.Event()  # set once the backlog found at start was applied

    def run(self) -> None:
        """Apply entries as they come; a Redis outage is logged and retried, never fatal."""
        own_pending = True  # first what this consumer read before (a restarted thread keeps its name)
        next_reclaim = 0.0
        while not self.stopping.is_set():
            try:
                if own_pending:
                    ensure_group(self.rt)
                    while apply_new(self.rt, self.consumer, own_pending=True):
                        pass
                    own_pending = False
                if not self.caught_up.is_set():
                    while apply_new(self.rt, self.consumer):
                        pass
                    self.caught_up.set()
                if time.monotonic() >= next_reclaim:
                    reclaim(self.rt, self.consumer)
                    next_reclaim = time.monotonic() + min(RECLAIM_EVERY_S, _reclaim_idle_s(self.rt) / 2)
                apply_new(self.rt, self.consumer, block_ms=BLOCK_MS)
            except Exception as exc:
                # Nothing may end the thread silently: webhooks would pile up until the reconciler polled.
                if isinstance(exc, (StoreUnavailable, redis.RedisError)):
                    log.warning("webhook inbox: redis unavailable (%s); retrying", type(exc).__name__)
                else:
                    log.exception("webhook inbox: unexpected error; retrying")
                own_pending = True  # re-read what was read but not acknowledged
                self.stopping.wait(1.0)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the loop to end and wait for the entries it is applying (bounded by ``timeout_s``)."""
        self.stopping.set()
        if self.is_alive():
            self.join(timeout_s)
