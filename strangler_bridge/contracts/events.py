"""Wire models of ``POST /events``: the legacy app's bridge reports its routed-call outcomes to the service.

Both halves use these models: the Flask side (``flask_plugin.reporting``) builds its reports with them and the
service (``fastapi_app.api.events``) reads them. An event is one outcome of a routed call (:class:`EventKind`)
or a ``breaker`` event, the change of a phase's circuit breaker in one legacy process (its ``data`` a
:class:`BreakerReport`).
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from strangler_bridge.contracts.common import MAX_JSON_DEPTH, json_depth
from strangler_bridge.contracts.flags import Phase

EVENTS_PATH = "/events"
MAX_DETAIL = 1000
MAX_DATA = 4000
MAX_EVENTS = 1000


class EventKind(str, Enum):
    """What happened to one routed call."""

    SERVICE = "service"  # fastapi mode: the service answered
    FALLBACK = "fallback"  # fastapi mode: the service failed and the legacy code answered
    SHADOW_MATCH = "shadow_match"  # shadow mode: the service's result matched the legacy one
    SHADOW_MISMATCH = "shadow_mismatch"  # shadow mode: the results differ
    SHADOW_ERROR = "shadow_error"  # shadow mode: the service path failed or timed out
    SHADOW_SKIPPED = "shadow_skipped"  # shadow mode: too much shadow work in flight, this call was not shadowed


#: The kind of an event reporting a breaker's state change (not an outcome of a call, so not an EventKind).
BREAKER = "breaker"
#: Every kind on the wire: the values of :class:`EventKind` and ``breaker``.
EventKindName = Literal[
    "service", "fallback", "shadow_match", "shadow_mismatch", "shadow_error", "shadow_skipped", "breaker"
]
#: Kinds worth keeping in a list of recent events (the others are only counted).
NOTABLE = frozenset({EventKind.FALLBACK, EventKind.SHADOW_MISMATCH, EventKind.SHADOW_ERROR, EventKind.SHADOW_SKIPPED})

BreakerStateName = Literal["closed", "open", "half_open"]
BREAKER_STATES: tuple[BreakerStateName, ...] = ("closed", "open", "half_open")


class ReportedEvent(BaseModel):
    """One outcome of a routed call in the legacy app (``flask_plugin.events.BridgeEvent.to_dict()``)."""

    model_config = ConfigDict(extra="ignore")

    kind: EventKindName
    phase: Phase
    video_id: str | None = Field(None, max_length=200)
    detail: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    at: str | None = Field(None, max_length=64, description="When it happened (ISO-8601, the reporter's clock).")

    @field_validator("detail")
    @classmethod
    def _short_detail(cls, value: str) -> str:
        # An over-long error message is cut, not refused: the rest of the report still counts.
        return value if len(value) <= MAX_DETAIL else value[: MAX_DETAIL - 1] + "…"

    @field_validator("data")
    @classmethod
    def _small_data(cls, value: dict[str, Any]) -> dict[str, Any]:
        if json_depth(value) > MAX_JSON_DEPTH:  # too deep to serialise safely: the report still counts without it
            return {"truncated": f"nested deeper than {MAX_JSON_DEPTH} levels"}
        text = json.dumps(value, default=str)
        return value if len(text) <= MAX_DATA else {"truncated": text[:MAX_DATA]}


class EventReport(BaseModel):
    """``POST /events`` body: a batch of outcomes from one legacy process."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source": "legacy-web-1",
                    "events": [
                        {"kind": "fallback", "phase": "tts", "video_id": "vid-42", "detail": "service unreachable"},
                        {"kind": "shadow_match", "phase": "imagegen", "video_id": "vid-43"},
                    ],
                }
            ]
        },
    )

    events: list[ReportedEvent] = Field(..., max_length=MAX_EVENTS)
    source: str | None = Field(None, max_length=200, description="Which legacy process reports (host, pid).")
    dropped: int = Field(0, ge=0, le=1_000_000_000, description="Events the reporter dropped since its last report.")


class BreakerReport(BaseModel):
    """The ``data`` of a ``breaker`` event: one phase's breaker after a change."""

    model_config = ConfigDict(extra="ignore")

    state: BreakerStateName
    since: datetime
    failures: int = Field(0, ge=0)
    reason: str | None = Field(None, max_length=MAX_DETAIL)


class EventCounts(BaseModel):
    """``POST /events`` answer."""

    accepted: int


class RecentEvents(BaseModel):
    """``GET /events`` body: counters by phase and kind, and the latest notable events, newest first."""

    counters: dict[str, dict[str, int]]
    recent: list[dict[str, Any]]
