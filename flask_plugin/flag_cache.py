"""The Flask side's view of the service's flags: cached for a few seconds, never a reason to fail a request.

Values start as the static ``STRANGLER_FLAGS`` config, are replaced by the service's on each successful
fetch, and stay at the last known values while the service cannot be reached. Fetches happen lazily on
access; while one thread fetches, every other thread reads the current values without waiting.
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        # A short pause after a failure, so an unreachable service costs one fetch timeout per pause, not per call.
        self._retry_after_failure_s = max(ttl_s, retry_after_failure_s)
        self._clock = clock
        self._static = default_flags(static)
        self._current = FlagSnapshot(MappingProxyType(dict(self._static)), "static")
        self._next_fetch = clock()
        self._lock = threading.Lock()
        self._fetching = threading.Lock()

    def get(self, phase: Phase | str) -> PhaseFlag:
        """The flag in force for ``phase`` (refreshing first if the cache is due)."""
        return self.snapshot().flags[Phase(phase)]

    def snapshot(self) -> FlagSnapshot:
        """Every phase's flag, refreshed first if due and no other thread is refreshing."""
        if self._clock() >= self._next_fetch and self._fetching.acquire(blocking=False):
            try:
                if self._clock() >= self._next_fetch:
                    self._refresh()
            finally:
                self._fetching.release()
        with self._lock:
            return self._current

    def peek(self) -> FlagSnapshot:
        """The current values without fetching."""
        with self._lock:
            return self._current

    def invalidate(self) -> None:
        """Make the next access fetch (after a flag change made from this process, for instance)."""
        with self._lock:
            self._next_fetch = self._clock()

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
        if first:
            kept = "static configuration" if source == "static" else f"last known values (version {previous.version})"
            log.warning("strangler-bridge: cannot fetch flags from the service (%s); using %s", exc, kept)
