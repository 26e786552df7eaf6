"""The Flask side's circuit breakers as their processes last reported them (``breaker`` events).

One Redis hash holds the latest state per (legacy process, phase); ``GET /events/breakers`` and the
``strangler_bridge_breakers`` gauge read it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from strangler_bridge.contracts.events import BreakerStateName


class Breaker(BaseModel):
    """The latest reported state of one legacy process's breaker for one phase."""

    source: str
    phase: str
    state: BreakerStateName
    since: datetime
    failures: int
