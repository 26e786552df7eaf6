"""Cancelling, on the service, the work a step gave up on: nobody waits for it, so nobody should pay for it.

When a step falls back (deadline, stall, open breaker, a failure) or the app shuts down while steps wait, the
batches and jobs the step created are cancelled through ``POST .../{id}/cancel``, from one background thread,
best effort: a cancel that cannot reach the service is tried again with a growing pause for
:data:`GIVE_UP_AFTER_S`, since an unreachable service may come back and go on with the work.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask_plugin.background import BackgroundThread
from strangler_bridge.client.service import ServiceClient
from strangler_bridge.client.work import BatchRoute, Deadline
from strangler_bridge.errors import ServiceError, ServiceUnavailable
from strangler_bridge.http import NO_RETRY

log = logging.getLogger(__name__)

#: A cancel the service cannot take is given up after this long.
GIVE_UP_AFTER_S = 600.0
#: The longest pause between two tries.
MAX_PAUSE_S = 15.0
#: Cancels kept at most (the oldest are given up first).
CAPACITY = 1000


@dataclass
class _Cancel:
    route: BatchRoute[Any]
    work_id: str
    since: float = field(default_factory=time.monotonic)


class AbandonedWork:
    """Cancels abandoned batches and jobs in the background; tracks the steps in flight for a clean shutdown."""

    def __init__(self, client: ServiceClient, *, timeout_s: float = 2.0, interval_s: float = 0.5) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.cancelled = 0
        self.given_up = 0
        self._queue: deque[_Cancel] = deque()
        self._running: set[Deadline] = set()
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._thread = BackgroundThread(self._run, "strangler-cancel")

    @contextlib.contextmanager
    def running(self, deadline: Deadline) -> Iterator[None]:
        """Mark a step as in flight (its work is cancelled if the app shuts down meanwhile)."""
        with self._lock:
            self._running.add(deadline)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(deadline)

    def abandon(self, deadline: Deadline) -> None:
        """Queue a cancel of every batch or job started under ``deadline``; returns at once."""
        with self._lock:
            if self._closing:
                return
            for route, work_id in deadline.started:
                self._queue.append(_Cancel(route, work_id))
            while len(self._queue) > CAPACITY:
                self._queue.popleft()
                self.given_up += 1
            if deadline.started:
                self._thread.ensure()
        self._wake.set()

    def pending(self) -> int:
        """Cancels not yet taken by the service."""
        with self._lock:
            return len(self._queue)

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop waiting steps, cancel their work and what is queued (within ``timeout_s``), stop the thread."""
        with self._lock:
            self._closing = True
            running = list(self._running)
            for deadline in running:
                deadline.abandon("the app is shutting down")
                self._queue.extend(_Cancel(route, work_id) for route, work_id in deadline.started)
            here = self._thread.started_here()
        if not here:  # no thread to hand the cancels to: send them from here
            self._drain(time.monotonic() + timeout_s)
            return
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        failures = 0
        while True:
            self._wake.wait(min(self.interval_s * 2**failures, MAX_PAUSE_S) if failures else None)
            self._wake.clear()
            with self._lock:
                closing = self._closing
            deadline = time.monotonic() + (self.timeout_s if closing else GIVE_UP_AFTER_S)
            failures = 0 if self._drain(deadline) else min(failures + 1, 10)
            if closing:
                return

    def _drain(self, until: float) -> bool:
        """Send the queued cancels; False if the service could not be reached (the rest stay queued)."""
        while time.monotonic() < until:
            with self._lock:
                if not self._queue:
                    return True
                item = self._queue.popleft()
            if not self._send(item):
                with self._lock:
                    if time.monotonic() - item.since < GIVE_UP_AFTER_S:
                        self._queue.appendleft(item)
                    else:
                        self.given_up += 1
                return False
        return True

    def _send(self, item: _Cancel) -> bool:
        url = f"{item.route.url(item.work_id)}/cancel"
        try:
            self.client.call("POST", url, _ignore, policy=NO_RETRY, timeout=self.timeout_s)
        except ServiceUnavailable as exc:
            log.info("strangler-bridge: cannot cancel %s %s yet: %s", item.route.label, item.work_id, exc)
            return False
        except ServiceError as exc:  # 404 (gone), 409 (a job that already finished): nothing left to cancel
            log.info("strangler-bridge: %s %s not cancelled: %s", item.route.label, item.work_id, exc)
        else:
            self.cancelled += 1
            log.info("strangler-bridge: cancelled %s %s on the service", item.route.label, item.work_id)
        return True


def _ignore(_: bytes) -> None:
    return None
