"""Reporting routed-call outcomes (fallbacks, shadow results) to the service, off the request path.

The service's ``/metrics`` and operator page show what the Flask side saw. :class:`ReportingEventLog` is an
:class:`~flask_plugin.events.EventLog` that also hands every event to an :class:`EventReporter`, whose
background thread sends them in batches to ``POST /events`` with the bridge's token. Reporting never blocks
or fails a legacy request: events are queued without waiting (dropped, and counted, when the queue is full)
and a failed send is logged and dropped, since these are statistics, not work.

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
from typing import Any

from flask_plugin.events import BridgeEvent, EventKind, EventLog
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.http import NO_RETRY
from strangler_bridge.service_client import ServiceClient

log = logging.getLogger(__name__)

EVENTS_PATH = "/events"


def _ignore(_: bytes) -> None:
    return None


class EventReporter:
    """Sends events to the service from one background thread, in batches of up to ``batch_size``.

    The thread starts with the first event (and again in a forked child, e.g. under gunicorn with preload),
    so building a reporter starts nothing.
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
        self.dropped = 0  # queue full, or the send failed
        self._queue: deque[dict[str, Any]] = deque()
        self._submitted = 0
        self._settled = 0
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._failing = False

    def submit(self, event: BridgeEvent) -> None:
        """Queue one event; returns at once, whatever happens."""
        try:
            item = event.to_dict()
            with self._cond:
                if self._closing:
                    return
                self._submitted += 1
                if len(self._queue) >= self.capacity:
                    self.dropped += 1
                    self._settled += 1
                    return
                self._queue.append(item)
                self._ensure_thread()
        except Exception:  # reporting must never break the legacy request
            log.exception("strangler-bridge: could not queue an event report")

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Send what was queued so far now; whether it was all sent or dropped within ``timeout_s``."""
        with self._cond:
            target = self._submitted
            self._wake.set()
            return self._cond.wait_for(lambda: self._settled >= target, timeout=timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is left (within ``timeout_s``) and stop the thread."""
        with self._cond:
            self._closing = True
            thread = self._thread if self._pid == os.getpid() else None
        self._wake.set()
        if thread is not None:
            thread.join(timeout_s)

    def _ensure_thread(self) -> None:
        # Called with the lock held. A forked child inherits the queue but not the thread: start its own.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="strangler-event-reporter", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
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
            if not batch:
                return
            ok = self._send(batch)
            with self._cond:
                if ok:
                    self.sent += len(batch)
                else:
                    self.dropped += len(batch)
                self._settled += len(batch)
                self._cond.notify_all()

    def _send(self, batch: list[dict[str, Any]]) -> bool:
        source = self.source or f"{socket.gethostname()}:{os.getpid()}"
        body = json.dumps({"events": batch, "source": source}, default=str).encode()
        try:
            self.client.call("POST", EVENTS_PATH, _ignore, policy=NO_RETRY, content=body, timeout=self.timeout_s)
        except Exception as exc:
            if not self._failing:  # once per failure streak, not once per batch
                log.warning("strangler-bridge: could not report %d event(s) to the service: %s", len(batch), exc)
            self._failing = True
            return False
        self._failing = False
        return True


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
