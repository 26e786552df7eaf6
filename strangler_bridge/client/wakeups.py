"""Waiting for a record's completion webhook instead of long-polling it (``STRANGLER_JOBS_WAIT=callback``).

The waiting thread sleeps on an event that this process's webhook receiver sets when the record's completion
webhook arrives (:meth:`Wakeups.notify`), then reads the record's status once. A wake is only a hint to read:
the status read is the truth, so a stale or duplicated wake costs one read and nothing else. As a safety net
(the webhook may reach another process, arrive late, or never), the status is also read every
``check_every_s`` seconds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: How often a thread waiting for a webhook reads the record's status anyway.
CHECK_EVERY_S = 15.0
#: Records notified while nobody watched them, remembered (the most recent ones) to wake a watcher that comes later.
EARLY_CAPACITY = 1024


class Wakeups:
    """Events per record id, set when the record's completion webhook reaches this process; thread-safe.

    A notification for a record nobody watches yet is remembered (the latest ``early_capacity`` of them) and
    wakes the first thread that starts watching it: the webhook of a quick job may beat the answer to its create.
    """

    def __init__(self, early_capacity: int = EARLY_CAPACITY) -> None:
        self.early_capacity = early_capacity
        self._lock = threading.Lock()
        self._watchers: dict[str, list[threading.Event]] = {}
        self._early: OrderedDict[str, None] = OrderedDict()

    @contextmanager
    def watch(self, record_id: str) -> Iterator[threading.Event]:
        """An event set by every :meth:`notify` of ``record_id`` while the block runs (already set if one came
        before)."""
        event = threading.Event()
        with self._lock:
            if record_id in self._early:
                del self._early[record_id]
                event.set()
            self._watchers.setdefault(record_id, []).append(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._watchers[record_id]
                events.remove(event)
                if not events:
                    del self._watchers[record_id]

    def notify(self, record_id: str) -> int:
        """Wake every thread watching ``record_id``; the number woken (0: remembered for a later watcher)."""
        with self._lock:
            events = list(self._watchers.get(record_id, ()))
            if not events:
                self._early[record_id] = None
                self._early.move_to_end(record_id)
                while len(self._early) > self.early_capacity:
                    self._early.popitem(last=False)
        for event in events:
            event.set()
        return len(events)

    def watching(self, record_id: str) -> int:
        """How many threads watch ``record_id`` now."""
        with self._lock:
            return len(self._watchers.get(record_id, ()))


@dataclass(frozen=True)
class CallbackWait:
    """How a step waits for its work in callback mode.

    The work is created with ``callback_url=url`` (this process's receiver, or a load balancer in front of every
    process's receiver), the step sleeps until ``wakeups`` says the webhook came, and reads the status every
    ``check_every_s`` seconds meanwhile.
    """

    url: str
    wakeups: Wakeups
    check_every_s: float = CHECK_EVERY_S
