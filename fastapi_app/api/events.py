"""What the Flask side saw: ``POST /events`` receives its routed-call outcomes, ``GET /events`` shows them.

The wire models are the shared contract ``strangler_bridge.contracts.events``.

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
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError

from fastapi_app.api.auth import require_token
from fastapi_app.api.deps import RuntimeDep
from fastapi_app.metrics.families import BRIDGE_EVENTS, BRIDGE_EVENTS_DROPPED
from fastapi_app.metrics.store import MetricBuffer
from fastapi_app.store.breakers import Breaker
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.contracts.events import (
    BREAKER,
    BREAKER_STATES,
    NOTABLE,
    BreakerReport,
    EventCounts,
    EventReport,
    RecentEvents,
    ReportedEvent,
)

RECENT_SIZE = 200

router = APIRouter(prefix="/events", tags=["events"], dependencies=[Depends(require_token)])


class Breakers(BaseModel):
    """``GET /events/breakers`` body."""

    breakers: list[Breaker]


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
async def report_events(body: EventReport, request: Request, rt: RuntimeDep) -> EventCounts:
    """Count each outcome by phase and kind, and keep the notable ones for the operator page."""
    buffer: MetricBuffer = request.app.state.metrics_buffer
    received = time.time()
    source = body.source or (request.client.host if request.client else "unknown")
    breakers = [b for e in body.events if e.kind == BREAKER and (b := breaker_states(e, source)) is not None]
    if breakers:
        async with rt.aredis.pipeline(transaction=True) as pipe:
            for breaker in breakers:  # in report order: the latest change of a (source, phase) wins
                pipe.hset(rt.keys.breakers, json.dumps([breaker.source, breaker.phase]), breaker.model_dump_json())
            pipe.expire(rt.keys.breakers, rt.settings.record_ttl_s)
            await pipe.execute()
    notable = [
        json.dumps({**event.model_dump(mode="json"), "source": body.source, "received_at": received})
        for event in body.events
        if event.kind in NOTABLE
    ]
    if notable:
        async with rt.aredis.pipeline(transaction=True) as pipe:
            pipe.lpush(rt.keys.recent_events, *notable)  # oldest first in, so the list reads newest first
            pipe.ltrim(rt.keys.recent_events, 0, RECENT_SIZE - 1)
            await pipe.execute()
    for event in body.events:
        if event.kind != BREAKER:
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
async def get_events(
    request: Request, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=RECENT_SIZE)] = 50
) -> RecentEvents:
    """Counters per phase and kind (all kinds, zeros included) and the latest fallbacks and shadow problems."""
    buffer: MetricBuffer = request.app.state.metrics_buffer
    await buffer.flush(rt.aredis)
    raw = await rt.aredis.lrange(rt.keys.recent_events, 0, limit - 1)
    pairs = list(BRIDGE_EVENTS.always)
    stored = await rt.aredis.hmget(rt.keys.counters, [BRIDGE_EVENTS.sample(p) for p in pairs])
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
async def get_breakers(rt: RuntimeDep) -> Breakers:
    """The latest reported state of every (legacy process, phase) breaker, open ones first."""
    raw = await rt.aredis.hvals(rt.keys.breakers)
    found = [Breaker.model_validate_json(value) for value in raw]
    return Breakers(breakers=sorted(found, key=lambda b: (-BREAKER_STATES.index(b.state), b.source, b.phase)))
