"""The Flask side's view of the service's flags: cached for a few seconds, never a reason to fail a request.

Values start as the static ``STRANGLER_FLAGS`` config, are replaced by the service's on each successful
fetch, and stay at the last known values while the service cannot be reached. Fetches happen lazily on
access, one at a time (single flight). A request whose values are older than ``STRANGLER_FLAGS_CACHE_S``
waits for the fetch in flight (at most ``wait_s``, the fetch timeout) instead of using old values, so a flag
change reaches every request within the cache time plus the fetch timeout, bursts included. While the service
is known to be unreachable (the last fetch failed) a background thread fetches again every pause (and when a
request finds the values due), and requests wait for it only :data:`UNREACHABLE_WAIT_S`: enough for a service
that is back, next to nothing for one that hangs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from strangler_bridge.contracts.flags import FlagSet, Phase, PhaseFlag
from strangler_bridge.flags import default_flags

log = logging.getLogger(__name__)

FlagSource = Literal["static", "service", "stale"]

#: While the last fetch failed, a request waits at most this long for the next one.
UNREACHABLE_WAIT_S = 0.05


@dataclass(frozen=True)
class FlagSnapshot:
    """The flags in force and where they came from.

    ``source`` is ``static`` before any successful fetch, ``service`` while fresh fetches succeed, and
    ``stale`` when the last fetch failed and the last known service values are kept.
    """

    flags: Mapping[Phase, PhaseFlag]
    source: FlagSource
    version: int | None = None
    fetched_at: float | None = None
    error: str | None = None


class FlagCache:
    """Thread-safe, lazily refreshed flags with a time-to-live."""

    def __init__(
        self,
        fetch: Callable[[], FlagSet],
        *,
        ttl_s: float,
        static: Mapping[Phase, PhaseFlag] | None = None,
        retry_after_failure_s: float = 1.0,
        wait_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        # A short pause after a failure, so an unreachable service costs one fetch timeout per pause, not per call.
        self._retry_after_failure_s = max(ttl_s, retry_after_failure_s)
        self._clock = clock
        self._static = default_flags(static)
        self._current = FlagSnapshot(MappingProxyType(dict(self._static)), "static")
        self._wait_s = wait_s
        self._next_fetch = clock()
        self._lock = threading.Condition()
        self._fetching = threading.Lock()
        self._fetches = 0  # finished fetches, so a waiter knows when the one in flight is done
        self._retrying = False
        self._retry_now = threading.Event()
        self._closed = threading.Event()

    def get(self, phase: Phase | str) -> PhaseFlag:
        """The flag in force for ``phase`` (refreshing first if the cache is due)."""
        return self.snapshot().flags[Phase(phase)]

    def snapshot(self) -> FlagSnapshot:
        """Every phase's flag, refreshed first if due (waiting briefly for a refresh already in flight)."""
        with self._lock:
            current, seen = self._current, self._fetches
            if self._clock() < self._next_fetch:
                return current
        if current.error is not None:
            # Known unreachable: the retry runs on the background thread. Wake it and wait only a moment (a service
            # that is back answers in time); when a retry is already in flight, the service is slow: do not wait.
            wait_s = 0.0 if self._fetching.locked() else min(self._wait_s, UNREACHABLE_WAIT_S)
            self._retry_now.set()
        elif self._fetching.acquire(blocking=False):
            self._refresh_and_release()
            wait_s = 0.0
        else:
            wait_s = self._wait_s  # another request is fetching: wait for its values rather than use old ones
        with self._lock:
            self._lock.wait_for(lambda: self._fetches != seen, timeout=wait_s)
            return self._current

    def peek(self) -> FlagSnapshot:
        """The current values without fetching."""
        with self._lock:
            return self._current

    def invalidate(self) -> None:
        """Make the next access fetch (after a flag change made from this process, for instance)."""
        with self._lock:
            self._next_fetch = self._clock()

    def close(self) -> None:
        """Stop the background retries (a clean shutdown)."""
        self._closed.set()
        self._retry_now.set()

    def _retry_until_fetched(self) -> None:
        """The background thread while the service is unreachable: fetch every pause (or when woken) until it works."""
        while True:
            self._retry_now.wait(self._retry_after_failure_s)
            self._retry_now.clear()
            if self._closed.is_set():
                break
            if self._fetching.acquire(blocking=False):
                self._refresh_and_release(force=True)
            with self._lock:
                if self._current.error is None:
                    break
        with self._lock:
            self._retrying = False

    def _refresh_and_release(self, *, force: bool = False) -> None:
        try:
            if force or self._clock() >= self._next_fetch:
                self._refresh()
        finally:
            with self._lock:
                self._fetches += 1
                self._lock.notify_all()
            self._fetching.release()

    def _refresh(self) -> None:
        try:
            fetched = self._fetch()
        except Exception as exc:  # any failure keeps the last values: flags must never break a request
            self._failed(exc)
            return
        flags = {**self._static, **fetched.flags}
        with self._lock:
            recovered = self._current.error is not None
            self._current = FlagSnapshot(MappingProxyType(flags), "service", fetched.version, self._clock())
            self._next_fetch = self._clock() + self._ttl_s
        if recovered:
            log.info("strangler-bridge: flags fetched again from the service (version %s)", fetched.version)

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            first = self._current.error is None
            previous = self._current
            source: FlagSource = "static" if previous.source == "static" else "stale"
            self._current = FlagSnapshot(previous.flags, source, previous.version, previous.fetched_at, str(exc))
            self._next_fetch = self._clock() + self._retry_after_failure_s
            start = not self._retrying and not self._closed.is_set()
            self._retrying = self._retrying or start
        if start:
            threading.Thread(target=self._retry_until_fetched, name="strangler-flags", daemon=True).start()
        if first:
            kept = "static configuration" if source == "static" else f"last known values (version {previous.version})"
            log.warning("strangler-bridge: cannot fetch flags from the service (%s); using %s", exc, kept)
