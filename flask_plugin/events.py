"""What the step router observed: counters per phase, and a ring buffer of recent notable events.

Counters are plain integers keyed by phase and :class:`EventKind` so an exporter (Prometheus, statsd)
can read them with :meth:`EventLog.counters`; the ``/strangler/events`` view reads the recent events.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from strangler_bridge.contracts.events import NOTABLE, EventKind
from strangler_bridge.contracts.flags import Phase


@dataclass(frozen=True)
class BridgeEvent:
    """One notable outcome of a routed call; :meth:`to_dict` is its wire form (``contracts.events.ReportedEvent``)."""

    kind: EventKind
    phase: Phase
    video_id: str | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out.update(kind=self.kind.value, phase=self.phase.value, at=self.at.isoformat())
        return out


class EventLog:
    """Thread-safe counters and a bounded history of fallbacks and shadow outcomes."""

    def __init__(self, capacity: int = 200) -> None:
        self._recent: deque[BridgeEvent] = deque(maxlen=capacity)
        self._counts: Counter[tuple[Phase, EventKind]] = Counter()
        self._lock = threading.Lock()

    def record(
        self,
        kind: EventKind,
        phase: Phase,
        video_id: str | None = None,
        detail: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Count an outcome, and keep it in the history if it is notable."""
        with self._lock:
            self._counts[(phase, kind)] += 1
            if kind in NOTABLE:
                self._recent.append(BridgeEvent(kind, phase, video_id, detail, data or {}))

    def close(self) -> None:
        """Release what the log holds (nothing here; a reporting log stops its sender)."""

    def count(self, phase: Phase | str, kind: EventKind | str) -> int:
        """How many times ``kind`` happened for ``phase``."""
        with self._lock:
            return self._counts[(Phase(phase), EventKind(kind))]

    def counters(self) -> dict[str, dict[str, int]]:
        """Every counter as ``{phase: {kind: n}}``, zeros included, for exporters and the JSON view."""
        with self._lock:
            return {phase.value: {kind.value: self._counts[(phase, kind)] for kind in EventKind} for phase in Phase}

    def recent(self, kinds: Iterable[EventKind] | None = None, limit: int = 50) -> list[BridgeEvent]:
        """The latest notable events, newest first, optionally only of some kinds."""
        wanted = set(kinds) if kinds is not None else None
        with self._lock:
            events = [e for e in reversed(self._recent) if wanted is None or e.kind in wanted]
        return events[: max(0, limit)]
