"""Delivering completion webhooks: every worker runs a :class:`DeliveryThread` over the shared outbox.

One attempt: the ``callback_url`` passes the same address rules as every outbound fetch (checked at each attempt,
and the request pinned to the checked address), the body is signed per Standard Webhooks with every
``STRANGLER_CALLBACK_SECRET``, redirects are not followed, and only a 2xx counts as taken. Anything else is
sent again after the next delay of ``STRANGLER_CALLBACK_RETRY_S`` (jittered, so receivers that fail together
are not retried together); once the delays are used up, or if the URL is refused, the delivery fails. Each
attempt is noted on the outbox entry, on the record (its ``callback`` field) and in ``/metrics``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

import httpx
import redis

from fastapi_app.metrics.families import CALLBACK_ATTEMPTS, CALLBACK_LATENCY
from fastapi_app.metrics.store import Increments, record
from fastapi_app.runtime import Runtime
from fastapi_app.store.outbox import Delivery, note_attempt
from strangler_bridge import tracing
from strangler_bridge.callbacks import signed_headers
from strangler_bridge.contracts.callbacks import CallbackState, DeliveryStatus
from strangler_bridge.contracts.common import as_time
from strangler_bridge.errors import BridgeError, ProviderRejected, ProviderUnavailable, RecordNotFound
from strangler_bridge.fetch import check_url

log = logging.getLogger(__name__)

POLL_S = 0.2  # how soon a worker sends a webhook that was just owed
JITTER = 0.2  # each retry delay is stretched or shrunk by up to this fraction
LEASE_MARGIN_S = 5.0


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: taken (a 2xx), or not and whether it is worth another try."""

    delivered: bool
    retry: bool
    status_code: int | None = None
    error: str | None = None


def attempt(client: httpx.Client, delivery: Delivery, *, secrets: Sequence[str], allow_hosts: Sequence[str]) -> Outcome:
    """POST the delivery's body to its URL once, signed with ``secrets``."""
    if not secrets:
        return Outcome(False, True, error="this worker has no STRANGLER_CALLBACK_SECRET to sign with")
    try:
        target = check_url(delivery.url, allow_hosts)
    except ProviderRejected as exc:
        return Outcome(False, False, error=f"callback_url refused: {exc.message}")
    except ProviderUnavailable as exc:
        return Outcome(False, True, error=exc.message)
    body = delivery.body.encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "strangler-bridge",
        **signed_headers(secrets, delivery.webhook_id, body, datetime.now(timezone.utc)),
    }
    try:
        response = client.send(target.request(client, headers, method="POST", content=body), stream=True)
    except httpx.HTTPError as exc:
        return Outcome(False, True, error=f"{type(exc).__name__}: {exc}"[:300])
    response.close()  # the receiver's body is not read: only its status counts
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, False, status_code=code)
    return Outcome(False, True, status_code=code, error=f"HTTP {code}")


def next_state(
    state: CallbackState, outcome: Outcome, *, now: float, schedule: Sequence[float], rand: random.Random
) -> tuple[CallbackState, float | None]:
    """The delivery's state after ``outcome``, and when it is due again (``None``: finished)."""
    attempts = state.attempts + 1
    update = {
        "attempts": attempts,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "last_attempt_at": as_time(now),
        "next_attempt_at": None,
    }
    if outcome.delivered:
        return state.model_copy(
            update={**update, "status": DeliveryStatus.DELIVERED, "delivered_at": as_time(now)}
        ), None
    if outcome.retry and attempts <= len(schedule):
        due = now + schedule[attempts - 1] * rand.uniform(1 - JITTER, 1 + JITTER)
        return state.model_copy(update={**update, "next_attempt_at": as_time(due)}), due
    return state.model_copy(update={**update, "status": DeliveryStatus.FAILED}), None


def deliver(rt: Runtime, client: httpx.Client, webhook_id: str, rand: random.Random) -> CallbackState | None:
    """Make one attempt of a claimed entry and record how it went; ``None`` if the entry has expired."""
    delivery = rt.outbox.load(webhook_id)
    if delivery is None:
        rt.outbox.forget(webhook_id)
        return None
    settings = rt.settings
    started = time.monotonic()
    attributes = {"strangler.webhook_id": webhook_id, "strangler.record_id": delivery.record_id}
    # A span of the record's trace: the receiver's request joins it too (httpx sends the trace context).
    with tracing.span(f"callback {delivery.store}", parent=delivery.trace, kind="producer", attributes=attributes):
        outcome = attempt(
            client, delivery, secrets=settings.callback_secrets(), allow_hosts=settings.callback_allow_hosts
        )
    took = time.monotonic() - started
    state, due = next_state(delivery.state, outcome, now=time.time(), schedule=settings.callback_retry_s, rand=rand)
    delivery.state = state
    rt.outbox.save(delivery, due)
    store = rt.jobs if delivery.store == rt.jobs.kind else rt.batches
    with contextlib.suppress(RecordNotFound):  # an expired record: the outbox entry still tells how it went
        store.update(delivery.record_id, partial(note_attempt, state=state))
    label = "delivered" if outcome.delivered else ("retry" if due is not None else "failed")
    increments = Increments()
    increments.inc(CALLBACK_ATTEMPTS, (label,))
    increments.observe(CALLBACK_LATENCY, (), took)
    record(rt.redis, rt.keys, increments)
    level = logging.INFO if outcome.delivered else logging.WARNING
    log.log(
        level,
        "callback %s of %s %s: %s (attempt %d)",
        webhook_id,
        delivery.store,
        delivery.record_id,
        label,
        state.attempts,
        extra={"record_id": delivery.record_id, "error": outcome.error},
    )
    return state


class DeliveryThread(threading.Thread):
    """Claims due webhooks from the outbox and sends up to ``STRANGLER_CALLBACK_CONCURRENCY`` of them at once."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(name="strangler-callbacks", daemon=True)
        self.rt = rt
        self.stopping = threading.Event()
        self.slots = rt.settings.callback_concurrency
        self._busy = 0
        self._lock = threading.Lock()
        self._rand = random.Random()  # jitter, not a secret

    def run(self) -> None:
        """Loop until :meth:`stop`: claim what is due into free slots, then wait a moment."""
        settings = self.rt.settings
        # Every phase of an attempt (connect, write, read) is bounded, so a claim outlives the slowest attempt.
        lease_s = 3 * settings.callback_timeout_s + LEASE_MARGIN_S
        with (
            httpx.Client(timeout=settings.callback_timeout_s, follow_redirects=False) as client,
            ThreadPoolExecutor(self.slots, thread_name_prefix="strangler-callback") as pool,
        ):
            while not self.stopping.wait(POLL_S):
                with self._lock:
                    free = self.slots - self._busy
                if free <= 0:
                    continue
                try:
                    ids = self.rt.outbox.claim(time.time(), lease_s, free)
                except redis.RedisError as exc:
                    log.warning("callbacks: cannot claim (%s); trying again", type(exc).__name__)
                    continue
                for webhook_id in ids:
                    with self._lock:
                        self._busy += 1
                    pool.submit(self._deliver, client, webhook_id)

    def _deliver(self, client: httpx.Client, webhook_id: str) -> None:
        try:
            deliver(self.rt, client, webhook_id, self._rand)
        except (redis.RedisError, BridgeError) as exc:
            # The claim lapses and another attempt follows; the entry is unchanged, so nothing is lost.
            log.warning("callback %s: attempt not recorded (%s)", webhook_id, exc)
        finally:
            with self._lock:
                self._busy -= 1

    def stop(self) -> None:
        """Ask the loop to end; attempts under way finish (each bounded by the callback timeout)."""
        self.stopping.set()
