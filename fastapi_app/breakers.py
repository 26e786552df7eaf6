"""The Flask side's circuit breakers as their processes last reported them (``breaker`` events).

One Redis hash holds the latest state per (legacy process, phase); ``GET /events/breakers`` and the
``strangler_bridge_breakers`` gauge read it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from fastapi_app.runtime import Runtime

BreakerStateName = Literal["closed", "open", "half_open"]
BREAKER_STATES: tuple[BreakerStateName, ...] = ("closed", "open", "half_open")


class Breaker(BaseModel):
    """The latest reported state of one legacy process's breaker for one phase."""

    source: str
    phase: str
    state: BreakerStateName
    since: datetime
    failures: int


def breakers_key(rt: Runtime) -> str:
    """The hash of breaker states: field ``[source, phase]`` (JSON), value a :class:`Breaker` (JSON)."""
    return rt.key("events", "breakers")
