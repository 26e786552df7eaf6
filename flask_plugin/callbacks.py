"""The receiving end of the service's completion webhooks (``POST /strangler/callbacks``).

A webhook is verified with the app's ``STRANGLER_CALLBACK_SECRET`` (Standard Webhooks, any secret of a rotation),
wakes the steps of this process that wait for its record (callback mode, :mod:`strangler_bridge.client.wakeups`),
and is handed to the handlers registered with ``@bridge.on_callback`` unless its ``webhook-id`` was handled
before. The service delivers at least once: a retry resends the same id and body, so a handled id is answered
204 again without calling the handlers.

The memory of handled ids (:class:`SeenIds`) lives in this process only: behind a load balancer, each Flask
process keeps its own, and a redelivery reaching another process is handled again there. Handlers must
therefore be idempotent (key their effects by ``webhook_id`` or by the record's ``id`` and ``version``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import IO

from strangler_bridge.callbacks import verify
from strangler_bridge.client.wakeups import CHECK_EVERY_S, CallbackWait, Wakeups
from strangler_bridge.contracts.callbacks import CallbackEvent
from strangler_bridge.errors import BridgeError, Conflict, PayloadTooLarge

log = logging.getLogger(__name__)

#: ``handler(webhook_id, event)``, called once per new webhook with the app context of the receiving request.
CallbackHandler = Callable[[str, CallbackEvent], None]

#: Largest webhook body read (an event is a few hundred bytes plus the request's metadata, at most 16 KiB).
MAX_CALLBACK_BYTES = 64 * 1024
#: Handled webhook ids remembered per process, and for how long (the service retries for about 28 hours;
#: a redelivery after the id was forgotten is handled again, which idempotent handlers allow).
SEEN_CAPACITY = 10_000
SEEN_TTL_S = 24 * 3600.0


class HandlerFailed(BridgeError):
    """A callback handler raised: answered 500, so the service delivers the webhook again later."""

    code = "callback_handler_failed"
    http_status = 500


class Claim(Enum):
    """What to do with a webhook id."""

    NEW = "new"  # handle it
    SEEN = "seen"  # handled before: answer 2xx, call nothing
    BUSY = "busy"  # being handled by another request right now: let the service try again later


class SeenIds:
    """The webhook ids this process handled recently (at most ``capacity``, each for ``ttl_s``); thread-safe.

    An id is claimed before its handlers run and remembered only once they succeeded (:meth:`done`); a failure
    releases it (:meth:`release`), so the service's retry is handled again.
    """

    def __init__(
        self, capacity: int = SEEN_CAPACITY, ttl_s: float = SEEN_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> when it was handled, oldest first
        self._busy: set[str] = set()

    def claim(self, webhook_id: str) -> Claim:
        """:attr:`Claim.NEW` (and the id is now busy) unless it was handled recently or is being handled."""
        with self._lock:
            self._forget_expired()
            if webhook_id in self._seen:
                return Claim.SEEN
            if webhook_id in self._busy:
                return Claim.BUSY
            self._busy.add(webhook_id)
            return Claim.NEW

    def done(self, webhook_id: str) -> None:
        """Remember a claimed id as handled (the oldest is forgotten past ``capacity``)."""
        with self._lock:
            self._busy.discard(webhook_id)
            self._seen[webhook_id] = self._clock()
            self._seen.move_to_end(webhook_id)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)

    def release(self, webhook_id: str) -> None:
        """Give a claimed id up without remembering it (its handling failed)."""
        with self._lock:
            self._busy.discard(webhook_id)

    def __len__(self) -> int:
        with self._lock:
            self._forget_expired()
            return len(self._seen)

    def _forget_expired(self) -> None:
        horizon = self._clock() - self.ttl_s
        while self._seen and next(iter(self._seen.values())) <= horizon:
            self._seen.popitem(last=False)


class CallbackReceiver:
    """What the receiver route uses, per app: the secrets, the handlers, the handled ids and the waiting steps.

    ``handlers`` is the extension's list (handlers registered after ``init_app`` count too). ``path`` is the
    route's path in the app (``None`` without the blueprint). ``receiver_url`` is set in callback mode
    (``STRANGLER_JOBS_WAIT=callback``): jobs are then created with it as their ``callback_url`` and their steps
    wait for the webhook, reading the status every ``check_every_s`` seconds meanwhile.
    """

    def __init__(
        self,
        secrets: Sequence[str] = (),
        handlers: list[CallbackHandler] | None = None,
        *,
        path: str | None = None,
        receiver_url: str | None = None,
        seen: SeenIds | None = None,
        wakeups: Wakeups | None = None,
    ) -> None:
        self.secrets = list(secrets)
        self.handlers = handlers if handlers is not None else []
        self.path = path
        self.receiver_url = receiver_url
        self.seen = seen or SeenIds()
        self.wakeups = wakeups or Wakeups()
        self.check_every_s = CHECK_EVERY_S

    def job_wait(self) -> CallbackWait | None:
        """How jobs wait in callback mode; ``None`` in long-poll mode."""
        if self.receiver_url is None:
            return None
        return CallbackWait(self.receiver_url, self.wakeups, self.check_every_s)

    def receive(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Verify one webhook, wake the steps waiting for its record and run the handlers; ``False`` for an id
        handled before (nothing is called).

        Raises :class:`~strangler_bridge.errors.Unauthorized` (bad signature or timestamp),
        :class:`~strangler_bridge.errors.InvalidInput` (signed, but not an event), :class:`Conflict` (the same id is
        being handled right now) and :class:`HandlerFailed`.
        """
        webhook_id, event = verify(self.secrets, body, headers)
        # Every verified delivery wakes the waiters (a wake only makes them read the status), duplicates too: a
        # step that started waiting after the first delivery still learns of it.
        self.wakeups.notify(event.data.id)
        claim = self.seen.claim(webhook_id)
        if claim is Claim.SEEN:
            return False
        if claim is Claim.BUSY:
            raise Conflict(f"webhook {webhook_id} is being handled by another request; deliver it again later")
        try:
            for handler in list(self.handlers):
                _call(handler, webhook_id, event)
        except BaseException:
            self.seen.release(webhook_id)
            raise
        self.seen.done(webhook_id)
        return True


def _call(handler: CallbackHandler, webhook_id: str, event: CallbackEvent) -> None:
    try:
        handler(webhook_id, event)
    except Exception as exc:
        name = getattr(handler, "__qualname__", repr(handler))
        log.exception("strangler-bridge: callback handler %s failed on webhook %s (%s)", name, webhook_id, event.type)
        # The service records this message on the record's status: the handler and the exception type, no details.
        raise HandlerFailed(f"callback handler {name} raised {type(exc).__name__}; deliver it again later") from exc


def read_body(stream: IO[bytes], content_length: int | None, limit: int = MAX_CALLBACK_BYTES) -> bytes:
    """The request body, or :class:`PayloadTooLarge` as soon as it is over ``limit`` bytes (never read whole)."""
    if content_length is not None and content_length > limit:
        raise PayloadTooLarge(f"a callback body is at most {limit} bytes, this one has {content_length}")
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        block = stream.read(limit + 1 - size)
        if not block:
            break
        parts.append(block)
        size += len(block)
    if size > limit:
        raise PayloadTooLarge(f"a callback body is at most {limit} bytes")
    return b"".join(parts)
