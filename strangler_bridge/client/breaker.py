"""A circuit breaker per phase: after a few consecutive failed calls to the service, go straight to legacy code.

``closed``: calls go through; each failed request (a transport error, a timeout, a 5xx) counts, a success
resets the count, and ``STRANGLER_BREAKER_FAILURES`` failures in a row open the breaker. ``open``: for
``STRANGLER_BREAKER_COOLDOWN_S`` no request is sent and the step falls back at once (:class:`BreakerOpen`).
``half_open``: after the cool-down one trial request goes through (others still fall back); its success
closes the breaker, its failure opens it for another cool-down, twice as long (up to 8 times). With a probe
(the extension uses ``GET /readyz``), a background check must pass before a request becomes the trial, so a
service that is down or hung never costs a request a trial. A step given up for a stall or its deadline opens
the breaker at once: that step already cost the whole wait.

Requests are counted one by one, retries included, so a service that refuses connections opens the breaker
within the first call instead of after several videos. The guard sits in the client's transport
(:class:`GuardedTransport`) and applies to whatever the current step sends (:func:`guarding`).

Why not pybreaker: its ``call()`` holds the breaker's lock for the whole guarded call, so every request of a
phase (30 s long-polls included) would wait for the one before; this one holds its lock only to change state.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import httpx

from strangler_bridge.client.work import GIVE_UP_HEADER, give_up_at
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.errors import BreakerOpen

#: A cool-down grows (doubling after each failed trial) to at most this many times ``STRANGLER_BREAKER_COOLDOWN_S``.
MAX_BACKOFF = 8


class BreakerState(str, Enum):
    """Where one phase's breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's state, since when, and the consecutive failures that led there."""

    phase: Phase
    state: BreakerState
    since: datetime
    failures: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``/strangler/health`` and the ``breaker`` events)."""
        return {
            "phase": self.phase.value,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "failures": self.failures,
            "reason": self.reason,
        }


class CircuitBreaker:
    """One phase's breaker, shared by every thread of the app.

    ``on_change`` is called with the new snapshot after each state change, outside the lock. ``probe`` (a quick
    check that the service answers, e.g. ``GET /readyz``) runs on a background thread when the cool-down ends:
    only if it passes does a request become the trial, so a service that is down or hung never holds up a
    request for a trial. Each failed trial or probe doubles the cool-down (up to :data:`MAX_BACKOFF` times).
    """

    def __init__(
        self,
        phase: Phase,
        *,
        failures: int = 3,
        cooldown_s: float = 30.0,
        on_change: Callable[[BreakerSnapshot], None] | None = None,
        probe: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.phase = phase
        self.max_failures = failures
        self.cooldown_s = cooldown_s
        self._on_change = on_change
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._changed_at = clock()
        self._since = datetime.now(timezone.utc)
        self._failures = 0
        self._failed_trials = 0
        self._probing = False
        self._reason: str | None = None
        self._trial_until = 0.0

    def allow(self) -> bool:
        """Whether a request may go to the service now (in ``half_open``, only the one trial request)."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            now = self._clock()
            if self._state is BreakerState.OPEN:
                if now - self._changed_at < self._cooldown():
                    return False
                if self._probe is not None:
                    if not self._probing:
                        self._probing = True
                        threading.Thread(target=self._run_probe, name="strangler-breaker-probe", daemon=True).start()
                    return False
                snapshot = self._move(BreakerState.HALF_OPEN, self._reason)
            elif now < self._trial_until:
                return False  # a trial request is in flight
            else:
                snapshot = None  # the trial never reported back (its thread died): let another one try
            self._trial_until = now + self.cooldown_s
        self._notify(snapshot)
        return True

    def succeeded(self) -> None:
        """A request reached a working service: reset the count, close the breaker."""
        with self._lock:
            self._failures = 0
            self._failed_trials = 0
            snapshot = self._move(BreakerState.CLOSED, None) if self._state is not BreakerState.CLOSED else None
        self._notify(snapshot)

    def _run_probe(self) -> None:
        assert self._probe is not None
        try:
            ok = self._probe()
        except Exception:  # a probe that breaks is a failed probe
            ok = False
        with self._lock:
            self._probing = False
            snapshot = None
            if self._state is BreakerState.OPEN:
                if ok:  # the next request is the trial
                    snapshot = self._move(BreakerState.HALF_OPEN, self._reason)
                else:  # still down: another (longer) cool-down
                    self._failed_trials += 1
                    self._changed_at = self._clock()
        self._notify(snapshot)

    def _cooldown(self) -> float:
        # Called with the lock held.
        return self.cooldown_s * min(1 << min(self._failed_trials, 8), MAX_BACKOFF)

    def failed(self, reason: str) -> bool:
        """A request failed (transport error, timeout, 5xx): count it; open at the limit or after a failed trial.

        Returns whether the breaker is open now.
        """
        with self._lock:
            self._failures += 1
            snapshot = None
            if self._state is BreakerState.HALF_OPEN:
                self._failed_trials += 1
                snapshot = self._move(BreakerState.OPEN, reason)
            elif self._state is BreakerState.CLOSED and self._failures >= self.max_failures:
                snapshot = self._move(BreakerState.OPEN, reason)
            is_open = self._state is BreakerState.OPEN
        self._notify(snapshot)
        return is_open

    def trip(self, reason: str) -> None:
        """Open the breaker now (a step stalled or outlived its deadline)."""
        with self._lock:
            self._failures += 1
            snapshot = self._move(BreakerState.OPEN, reason) if self._state is not BreakerState.OPEN else None
        self._notify(snapshot)

    def snapshot(self) -> BreakerSnapshot:
        """The current state (an open breaker whose cool-down is over still shows ``open`` until a call tries)."""
        with self._lock:
            return BreakerSnapshot(self.phase, self._state, self._since, self._failures, self._reason)

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 otherwise)."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._cooldown() - (self._clock() - self._changed_at))

    def _move(self, state: BreakerState, reason: str | None) -> BreakerSnapshot:
        # Called with the lock held.
        self._state = state
        self._changed_at = self._clock()
        self._since = datetime.now(timezone.utc)
        self._reason = reason
        if state is not BreakerState.HALF_OPEN:
            self._trial_until = 0.0
        return BreakerSnapshot(self.phase, state, self._since, self._failures, reason)

    def _notify(self, snapshot: BreakerSnapshot | None) -> None:
        if snapshot is not None and self._on_change is not None:
            self._on_change(snapshot)


_active: ContextVar[CircuitBreaker | None] = ContextVar("strangler_breaker", default=None)


@contextlib.contextmanager
def guarding(breaker: CircuitBreaker) -> Iterator[None]:
    """Route every service request sent by this thread inside the block through ``breaker``."""
    token = _active.set(breaker)
    try:
        yield
    finally:
        _active.reset(token)


class GuardedTransport(httpx.BaseTransport):
    """Asks the current step's breaker (if any) before each request, and tells it how the request went.

    It also stamps each try of a create with when this client stops waiting for it (``X-Strangler-Give-Up-At``),
    since retries resend the same request object.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` unless the active breaker refuses it (:class:`BreakerOpen`)."""
        if GIVE_UP_HEADER in request.headers:
            timeouts = request.extensions.get("timeout") or {}
            waits = sum(timeouts.get(name) or 0 for name in ("connect", "write", "read"))
            request.headers[GIVE_UP_HEADER] = give_up_at(waits)
        breaker = _active.get()
        if breaker is None:
            return self.inner.handle_request(request)
        if not breaker.allow():
            raise _open(breaker)
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError as exc:
            # The failure that opens the breaker ends the call now, rather than after another back-off.
            if breaker.failed(f"{type(exc).__name__}: {exc}".rstrip(": ")):
                raise _open(breaker) from exc
            raise
        if response.status_code >= 500:
            if breaker.failed(f"HTTP {response.status_code} from {request.url.path}"):
                response.close()
                raise _open(breaker)
        else:
            breaker.succeeded()
        return response

    def close(self) -> None:
        """Close the wrapped transport."""
        self.inner.close()


def _open(breaker: CircuitBreaker) -> BreakerOpen:
    snapshot = breaker.snapshot()
    return BreakerOpen(
        f"the {breaker.phase.value} breaker is open after {snapshot.failures} service failures (last: "
        f"{snapshot.reason}); the next trial call is in {breaker.retry_in():.0f} s",
        status_code=0,
        service_code="breaker_open",
    )
