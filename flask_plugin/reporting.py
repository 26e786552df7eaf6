"""Reporting routed-call outcomes (fallbacks, shadow results, breaker changes) to the service, off the request path.

The service's ``/metrics`` and operator page show what the Flask side saw, and the counters operators alert on
are the service's (kept in Redis), so a restart of the Flask app loses nothing already sent.
:class:`ReportingEventLog` is an :class:`~flask_plugin.events.EventLog` that also hands every event to an
:class:`EventReporter`, whose background thread sends them in batches to ``POST /events`` with the bridge's
token. Reporting never blocks or fails a legacy request: events are queued without waiting.

While the service cannot be reached (exactly when fallbacks happen) events wait in a bounded buffer
(``STRANGLER_EVENTS_BUFFER``) and are sent when it is back, retried with a growing pause. When the buffer is
full the oldest event is dropped; drops are counted and the count goes with the next report, so the service's
``strangler_bridge_events_dropped_total`` shows them.

::

    events = ReportingEventLog(EventReporter(client))   # instead of EventLog() in init_app
    ...
    events.close()                                       # sends what is left (BridgeState.close)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections import deque
from datetime import datetime, timezone
from typing import Any, Literal

from flask_plugin.background import BackgroundThread
from flask_plugin.events import BridgeEvent, EventLog
from strangler_bridge.client.service import ServiceClient
from strangler_bridge.contracts.events import BREAKER, EVENTS_PATH, EventKind, EventReport
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.errors import ServiceUnavailable
from strangler_bridge.http import NO_RETRY

log = logging.getLogger(__name__)

#: The longest pause between two tries while the service is unreachable.
MAX_RETRY_INTERVAL_S = 15.0


def _ignore(_: bytes) -> None:
    return None


class EventReporter:
    """Sends events to the service from one background thread, in batches of up to ``batch_size``.

    The thread starts with the first event (and again in a forked child, e.g. under gunicorn with preload),
    so building a reporter starts nothing. ``sent`` and ``dropped`` count events; ``pending`` is the buffer.
    """

    def __init__(
        self,
        client: ServiceClient,
        *,
        source: str | None = None,
        capacity: int = 10_000,
        batch_size: int = 200,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.source = source
        self.capacity = capacity
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.sent = 0
        self.dropped = 0  # the buffer was full: the oldest event made room
        self._unreported_drops = 0
        self._queue: deque[dict[str, Any]] = deque()
        self._submitted = 0
        self._settled = 0
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._thread = BackgroundThread(self._run, "strangler-event-reporter")
        self._failures = 0

    @property
    def pending(self) -> int:
        """Events waiting to be sent."""
        with self._cond:
            return len(self._queue)

    def submit(self, event: BridgeEvent) -> None:
        """Queue one event; returns at once, whatever happens."""
        try:
            self.enqueue(event.to_dict())
        except Exception:  # reporting must never break the legacy request
            log.exception("strangler-bridge: could not queue an event report")

    def enqueue(self, item: dict[str, Any]) -> None:
        """Queue one JSON-ready event (``kind``, ``phase``, ...); the oldest is dropped when the buffer is full."""
        with self._cond:
            if self._closing:
                return
            self._submitted += 1
            self._queue.append(item)
            self._trim()
            self._thread.ensure()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Send what was queued so far now; whether it was all sent (or dropped) within ``timeout_s``."""
        with self._cond:
            target = self._submitted
            self._wake.set()
            return self._cond.wait_for(lambda: self._settled >= target, timeout=timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Try once more to send what is left (within ``timeout_s``) and stop the thread."""
        with self._cond:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout_s)

    def _trim(self) -> None:
        # Called with the lock held.
        while len(self._queue) > self.capacity:
            self._queue.popleft()
            self.dropped += 1
            self._unreported_drops += 1
            self._settled += 1
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            # After failures, wait longer before the next try (a flush or close still wakes the thread at once).
            pause = min(self.interval_s * 2 ** min(self._failures, 10), MAX_RETRY_INTERVAL_S)
            self._wake.wait(max(pause, self.interval_s))
            self._wake.clear()
            with self._cond:
                closing = self._closing
            self._send_pending()
            if closing:
                return

    def _send_pending(self) -> None:
        while True:
            with self._cond:
                batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                drops = self._unreported_drops
            if not batch and not drops:
                return
            outcome = self._send(batch, drops)
            with self._cond:
                if outcome == "sent":
                    self.sent += len(batch)
                elif outcome == "refused":  # the service will never take this report: sending again cannot help
                    self.dropped += len(batch)
                if outcome == "unreachable":
                    self._queue.extendleft(reversed(batch))  # back at the front, in order, for the next try
                    self._trim()
                else:
                    self._settled += len(batch)
                    self._unreported_drops -= drops
                self._cond.notify_all()
            if outcome == "unreachable":
                return

    def _send(self, batch: list[dict[str, Any]], drops: int) -> Literal["sent", "refused", "unreachable"]:
        source = self.source or f"{socket.gethostname()}:{os.getpid()}"
        try:
            # Built with the service's own model: what it would refuse is refused here, without a round trip.
            report = EventReport.model_validate({"events": batch, "source": source, "dropped": drops})
            body = json.dumps(report.model_dump(exclude_defaults=True), default=str).encode()
            self.client.call("POST", EVENTS_PATH, _ignore, policy=NO_RETRY, content=body, timeout=self.timeout_s)
        except ServiceUnavailable as exc:
            if not self._failures:  # once per failure streak, not once per batch
                log.warning(
                    "strangler-bridge: could not report %d event(s) to the service (kept, sent when it is back): %s",
                    len(batch),
                    exc,
                )
            self._failures += 1
            return "unreachable"
        except Exception as exc:
            log.warning("strangler-bridge: the service refused %d event report(s); dropped: %s", len(batch), exc)
            return "refused"
        if self._failures:
            log.info("strangler-bridge: event reports reach the service again")
        self._failures = 0
        return "sent"


def breaker_event(phase: Phase, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready ``breaker`` event of one breaker state change (``data``: the breaker's snapshot)."""
    return {
        "kind": BREAKER,
        "phase": phase.value,
        "video_id": None,
        "detail": data.get("reason") or "",
        "data": data,
        "at": datetime.now(timezone.utc).isoformat(),
    }


class ReportingEventLog(EventLog):
    """An :class:`EventLog` that also reports every event to the service through ``reporter``."""

    def __init__(self, reporter: EventReporter, capacity: int = 200) -> None:
        super().__init__(capacity)
        self.reporter = reporter

    def record(
        self,
        kind: EventKind,
        phase: Phase,
        video_id: str | None = None,
        detail: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Count and keep the event here, and queue it for the service."""
        super().record(kind, phase, video_id, detail, data)
        self.reporter.submit(BridgeEvent(kind, phase, video_id, detail, data or {}))

    def close(self) -> None:
        """Send what is left and stop the reporter's thread."""
        self.reporter.close()
