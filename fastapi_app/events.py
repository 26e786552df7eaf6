"""What the Flask side saw: ``POST /events`` receives its routed-call outcomes, ``GET /events`` shows them.

Fallbacks and shadow comparisons happen in the legacy app, not here. Its bridge reports them in batches
(``flask_plugin.reporting``); the service counts every outcome by phase and kind (the
``strangler_bridge_events_total`` metric) and keeps the latest notable ones (fallbacks and shadow problems)
for the operator page. Events the bridge had to drop (its buffer was full during an outage) are counted in
``strangler_bridge_events_dropped_total``.

``breaker`` events are changes of a phase's circuit breaker in one legacy process: the latest state per
(process, phase) is kept and served by ``GET /events/breakers`` (and the ``strangler_bridge_breakers`` gauge).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fastapi_app.auth import require_token
from fastapi_app.breakers import BREAKER_STATES, Breaker, BreakerStateName, breakers_key
from fastapi_app.metrics.families import BRIDGE_EVENTS, BRIDGE_EVENTS_DROPPED
from fastapi_app.metrics.store import MetricBuffer, counters_key
from fastapi_app.runtime import Runtime
from strangler_bridge.contracts.common import MAX_JSON_DEPTH, ErrorResponse, json_depth
from strangler_bridge.contracts.flags import Phase

EventKindName = Literal[
    "service", "fallback", "shadow_match", "shadow_mismatch", "shadow_error", "shadow_skipped", "breaker"
]

#: Kinds kept in the recent list (the others are only counted), as in ``flask_plugin.events.NOTABLE``.
NOTABLE = frozenset({"fallback", "shadow_mismatch", "shadow_error", "shadow_skipped"})
RECENT_SIZE = 200
MAX_DETAIL = 1000
MAX_DATA = 4000
MAX_EVENTS = 1000

router = APIRouter(prefix="/events", tags=["events"], dependencies=[Depends(require_token)])


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


class Breakers(BaseModel):
    """``GET /events/breakers`` body."""

    breakers: list[Breaker]


class EventCounts(BaseModel):
    """``POST /events`` answer."""

    accepted: int


class RecentEvents(BaseModel):
    """``GET /events`` body: counters by phase and kind, and the latest notable events, newest first."""

    counters: dict[str, dict[str, int]]
    recent: list[dict[str, Any]]


def recent_key(rt: Runtime) -> str:
    """The capped list of notable events (newest first)."""
    return rt.key("events", "recent")


def breaker_states(event: ReportedEvent, source: str) -> Breaker | None:
    """The breaker state a ``breaker`` event reports (``None`` if its data is not one: it is then only ignored)."""
    try:
        report = BreakerReport.model_validate(event.data)
    except ValidationError:
        return None
    return Breaker(
        source=source, phase=event.phase.value, state=report.state, since=report.since, failures=report.failures
    )


@router.post("", response_model=EventCounts, summary="Report routed-call outcomes from the Flask side")
async def report_events(body: EventReport, request: Request) -> EventCounts:
    """Count each outcome by phase and kind, and keep the notable ones for the operator page."""
    rt: Runtime = request.app.state.runtime
    buffer: MetricBuffer = request.app.state.metrics_buffer
    received = time.time()
    source = body.source or (request.client.host if request.client else "unknown")
    breakers = [b for e in body.events if e.kind == "breaker" and (b := breaker_states(e, source)) is not None]
    if breakers:
        async with rt.aredis.pipeline(transaction=True) as pipe:
            for breaker in breakers:  # in report order: the latest change of a (source, phase) wins
                pipe.hset(breakers_key(rt), json.dumps([breaker.source, breaker.phase]), breaker.model_dump_json())
            pipe.expire(breakers_key(rt), rt.settings.record_ttl_s)
            await pipe.execute()
    notable = [
        json.dumps({**event.model_dump(mode="json"), "source": body.source, "received_at": received})
        for event in body.events
        if event.kind in NOTABLE
    ]
    if notable:
        async with rt.aredis.pipeline(transaction=True) as pipe:
            pipe.lpush(recent_key(rt), *notable)  # oldest first in, so the list reads newest first
            pipe.ltrim(recent_key(rt), 0, RECENT_SIZE - 1)
            await pipe.execute()
    for event in body.events:
        if event.kind != "breaker":
            buffer.inc(BRIDGE_EVENTS, (event.phase.value, event.kind))
    if body.dropped:
        buffer.inc(BRIDGE_EVENTS_DROPPED, (), body.dropped)
    return EventCounts(accepted=len(body.events))


@router.get(
    "",
    response_model=RecentEvents,
    summary="Outcomes reported by the Flask side",
    responses={401: {"model": ErrorResponse}},
)
async def get_events(request: Request, limit: Annotated[int, Query(ge=1, le=RECENT_SIZE)] = 50) -> RecentEvents:
    """Counters per phase and kind (all kinds, zeros included) and the latest fallbacks and shadow problems."""
    rt: Runtime = request.app.state.runtime
    buffer: MetricBuffer = request.app.state.metrics_buffer
    await buffer.flush(rt.aredis)
    raw = await rt.aredis.lrange(recent_key(rt), 0, limit - 1)
    pairs = list(BRIDGE_EVENTS.always)
    stored = await rt.aredis.hmget(counters_key(rt.settings.redis_prefix), [BRIDGE_EVENTS.sample(p) for p in pairs])
    counters: dict[str, dict[str, int]] = defaultdict(dict)
    for (phase, kind), value in zip(pairs, stored, strict=True):
        counters[phase][kind] = int(float(value or 0))
    return RecentEvents(counters=dict(counters), recent=[json.loads(item) for item in raw])


@router.get(
    "/breakers",
    response_model=Breakers,
    summary="Circuit breakers of the Flask side, per legacy process and phase",
    responses={401: {"model": ErrorResponse}},
)
async def get_breakers(request: Request) -> Breakers:
    """The latest reported state of every (legacy process, phase) breaker, open ones first."""
    rt: Runtime = request.app.state.runtime
    raw = await rt.aredis.hvals(breakers_key(rt))
    found = [Breaker.model_validate_json(value) for value in raw]
    return Breakers(breakers=sorted(found, key=lambda b: (-BREAKER_STATES.index(b.state), b.source, b.phase)))
