"""The ``/strangler`` blueprint: the bridge's own health, a JSON view of fallbacks and shadow results, and the
receiver of the service's completion webhooks.

The two GET views show no secrets, but they do show video ids and service errors: on a public app, guard them
with the app's own auth (e.g. an ``app.before_request`` hook that checks ``request.blueprint``). The webhook
route authenticates each request by its signature: leave it reachable by the service.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, request
from flask.typing import ResponseReturnValue

from flask_plugin.callbacks import read_body
from flask_plugin.state import get_state
from strangler_bridge.contracts.events import EventKind
from strangler_bridge.errors import BridgeError
from strangler_bridge.flags import effective_mode

BLUEPRINT_NAME = "strangler_bridge"
#: The completion-webhook route, under the blueprint's prefix (``/strangler/callbacks`` by default).
CALLBACKS_RULE = "/callbacks"
#: The health view asks the service once, this long at most.
HEALTH_TIMEOUT_S = 1.0
SHADOW_PROBLEMS = (EventKind.SHADOW_MISMATCH, EventKind.SHADOW_ERROR, EventKind.SHADOW_SKIPPED)


def create_blueprint() -> Blueprint:
    """A new blueprint (one per app, so nothing is shared between apps)."""
    bp = Blueprint(BLUEPRINT_NAME, __name__, url_prefix="/strangler")
    bp.add_url_rule("/health", "health", _health, methods=["GET"])
    bp.add_url_rule("/events", "events", _events, methods=["GET"])
    bp.add_url_rule(CALLBACKS_RULE, "callbacks", _callbacks, methods=["POST"])
    return bp


def _health() -> dict[str, Any]:
    """``GET /strangler/health[?video_id=...]``: can the service be reached, which flags are in force, and the
    state of each phase's circuit breaker.

    Always 200: the legacy app works whatever the service's state. With ``video_id``, each phase also
    shows the mode that video gets.
    """
    state = get_state(current_app)
    started = time.monotonic()
    service: dict[str, Any] = {"url": state.client.base_url}
    try:
        status = state.client.readiness(timeout_s=HEALTH_TIMEOUT_S)
    except Exception as exc:  # the health view reports failures, it never raises them
        service.update(reachable=False, ready=False, error=str(exc))
    else:
        service.update(reachable=True, ready=status == 200, status_code=status)
    service["latency_ms"] = round((time.monotonic() - started) * 1000, 1)

    snapshot = state.flags.snapshot()
    video_id = request.args.get("video_id")
    phases = {}
    for phase, flag in snapshot.flags.items():
        entry = flag.model_dump(mode="json")
        if video_id is not None:
            entry["effective"] = effective_mode(flag, video_id).value
        phases[phase.value] = entry
    flags = {"source": snapshot.source, "version": snapshot.version, "error": snapshot.error, "phases": phases}
    if video_id is not None:
        flags["video_id"] = video_id
    breakers = {phase.value: state.breaker(phase).snapshot().to_dict() for phase in snapshot.flags}
    healthy = service.get("ready") and all(b["state"] == "closed" for b in breakers.values())
    return {"status": "ok" if healthy else "degraded", "service": service, "flags": flags, "breakers": breakers}


def _events() -> dict[str, Any]:
    """``GET /strangler/events[?limit=N]``: counters per phase, recent fallbacks and shadow problems."""
    state = get_state(current_app)
    limit = min(max(request.args.get("limit", 50, type=int) or 0, 0), 200)
    return {
        "counters": state.events.counters(),
        "fallbacks": [e.to_dict() for e in state.events.recent([EventKind.FALLBACK], limit)],
        "shadow": [e.to_dict() for e in state.events.recent(SHADOW_PROBLEMS, limit)],
    }


def _callbacks() -> ResponseReturnValue:
    """``POST /strangler/callbacks``: a completion webhook from the service (Standard Webhooks).

    204 once handled, and for a ``webhook-id`` handled before (the handlers are not called again); 401 for a
    signature no secret verifies or a timestamp over five minutes off, 413 for a body over
    ``MAX_CALLBACK_BYTES``, 422 for a signed body that is not a completion event, 409 while the same
    ``webhook-id`` is being handled by another request, 500 when a handler raised. The service delivers again
    after any answer but a 2xx.
    """
    state = get_state(current_app)
    try:
        body = read_body(request.stream, request.content_length)
        state.callbacks.receive(body, dict(request.headers.items()))
    except BridgeError as exc:
        return exc.to_dict(), exc.http_status
    return "", 204
