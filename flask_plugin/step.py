"""The step router: one wrapped legacy function, answered per call by the legacy code or the service.

For each call the phase's flag and the call's video id give the mode (:func:`effective_mode`):

- ``legacy``: the legacy function runs, nothing else happens.
- ``fastapi``: the service does the work under ``STRANGLER_SERVICE_TIMEOUT_S`` (given up earlier when the work
  shows no progress for ``STRANGLER_SERVICE_STALL_S``); if it fails and the flag's ``fallback`` is on, the
  failure is logged and counted and the legacy function answers instead. Every request goes through the
  phase's circuit breaker (:mod:`strangler_bridge.client.breaker`), so once the service is known to fail a
  fallback costs nothing. Whatever the step created on the service and gave up on is cancelled there in the background.
- ``shadow``: the legacy function answers, untouched; the service does the same work in the background
  (into a temporary directory, under ``STRANGLER_SHADOW_TIMEOUT_S``) and the two results are compared.

Nothing in this module may make the legacy app worse: routing problems end in the legacy code.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask_plugin.adapters import StepAdapter, StepCall
from strangler_bridge import tracing
from strangler_bridge.client.breaker import guarding
from strangler_bridge.client.bridge import Deadline
from strangler_bridge.contracts.events import EventKind
from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag
from strangler_bridge.errors import DeadlineExceeded, ServiceError
from strangler_bridge.flags import effective_mode

if TYPE_CHECKING:
    from flask_plugin.state import BridgeState

log = logging.getLogger(__name__)
_warned: set[str] = set()  # steps already reported as called outside an app, so the log says it once


@dataclass(frozen=True)
class Route:
    """The decision for one call."""

    mode: FlagMode
    flag: PhaseFlag
    video_id: str | None


@dataclass(frozen=True)
class StepRouter:
    """Routes the calls of one legacy function of one phase."""

    phase: Phase
    adapter: StepAdapter[Any, Any]
    func: Callable[..., Any]
    state: Callable[[], BridgeState | None]

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Answer one call of the wrapped function."""
        state = self.state()
        if state is None:
            if self.func.__qualname__ not in _warned:
                _warned.add(self.func.__qualname__)
                log.warning(
                    "strangler-bridge: %s() called outside a Flask app that ran StranglerBridge.init_app(); running "
                    "the legacy code (call it inside a request or `with app.app_context():`)",
                    self.func.__qualname__,
                )
            return self.func(*args, **kwargs)
        try:
            call = StepCall.bind(self.func, args, kwargs)
            route = self.route(state, call)
        except Exception:
            log.exception("strangler-bridge: cannot route %s(); running the legacy code", self.func.__qualname__)
            return self.func(*args, **kwargs)
        if route.mode is FlagMode.FASTAPI:
            return self._on_service(state, call, route)
        if route.mode is FlagMode.SHADOW:
            return self._with_shadow(state, call, route)
        return call.legacy()

    def route(self, state: BridgeState, call: StepCall) -> Route:
        """The mode for this call, from the cached flag and the call's video id."""
        video_id = self.adapter.video_id(call)
        flag = state.flags.get(self.phase)
        return Route(effective_mode(flag, video_id), flag, video_id)

    def _on_service(self, state: BridgeState, call: StepCall, route: Route) -> Any:
        deadline = Deadline(state.settings.service_timeout_s, stall_s=state.settings.service_stall_s)
        started = time.monotonic()
        try:
            request = self.adapter.build_request(call)
            result = self._run(state, request, self.adapter.output_dir(call), deadline, route)
        except Exception as exc:
            if not route.flag.fallback:
                raise
            self._fell_back(state, route, exc, deadline, time.monotonic() - started)
            return call.legacy()
        state.events.record(EventKind.SERVICE, self.phase, route.video_id)
        return result

    def _run(self, state: BridgeState, request: Any, output_dir: Path, deadline: Deadline, route: Route) -> Any:
        """The adapter's service path behind the phase's breaker; on any failure, the work started is cancelled.

        Traced as the span ``bridge <phase>``, whose children are the calls to the service."""
        breaker = state.breaker(self.phase)
        abandoned = state.abandoned
        attributes = {
            "strangler.phase": self.phase.value,
            "strangler.video_id": route.video_id,
            "strangler.mode": route.mode.value,
        }
        try:
            with (
                tracing.span(f"bridge {self.phase.value}", attributes=attributes),
                guarding(breaker),
                abandoned.running(deadline) if abandoned else contextlib.nullcontext(),
            ):
                return self.adapter.run(state.client, request, output_dir, deadline)
        except Exception as exc:
            if isinstance(exc, DeadlineExceeded):  # the wait already cost the stall or the deadline: no more
                breaker.trip(str(exc))
            if abandoned is not None:
                abandoned.abandon(deadline)
            raise

    def _fell_back(self, state: BridgeState, route: Route, exc: Exception, deadline: Deadline, waited_s: float) -> None:
        where = f"{self.phase.value} for video {route.video_id}"
        if isinstance(exc, (ServiceError, DeadlineExceeded)):
            log.warning("strangler-bridge: service failed (%s) for %s; running the legacy code", exc, where)
        else:
            log.exception("strangler-bridge: service path broke for %s; running the legacy code", where)
        # The work the step started and gave up on (being cancelled on the service), so operators can find it.
        # waited_s: what the fallback cost this call before the legacy code started.
        data = {
            "code": _code(exc),
            "abandoned": [work_id for _, work_id in deadline.started],
            "waited_s": round(waited_s, 4),
        }
        state.events.record(EventKind.FALLBACK, self.phase, route.video_id, str(exc), data)

    def _with_shadow(self, state: BridgeState, call: StepCall, route: Route) -> Any:
        try:
            request = self.adapter.build_request(call)
        except Exception as exc:
            state.events.record(EventKind.SHADOW_ERROR, self.phase, route.video_id, f"cannot build the request: {exc}")
            return call.legacy()
        result = call.legacy()
        try:
            legacy = copy.deepcopy(result)  # the caller may change its result while the comparison runs
        except Exception:
            legacy = result
        trace = tracing.inject()  # the shadow run belongs to this call's trace, though on another thread
        if not state.shadow.submit(lambda: self._shadow(state, request, legacy, route, trace)):
            state.events.record(
                EventKind.SHADOW_SKIPPED, self.phase, route.video_id, "shadow queue full; this call was not shadowed"
            )
        return result

    def _shadow(self, state: BridgeState, request: Any, legacy: Any, route: Route, trace: dict[str, str]) -> None:
        """Runs on a shadow thread: the service path into a temporary directory, then the comparison."""
        deadline = Deadline(state.settings.shadow_timeout_s, stall_s=state.settings.service_stall_s)
        video_id = route.video_id
        try:
            with tracing.attached(trace), tempfile.TemporaryDirectory(prefix="strangler-shadow-") as tmp:
                service = self._run(state, request, Path(tmp), deadline, route)
                problems = self.adapter.compare(legacy, service)
        except Exception as exc:
            state.events.record(EventKind.SHADOW_ERROR, self.phase, video_id, str(exc), {"code": _code(exc)})
            log.info("strangler-bridge: shadow %s for video %s failed: %s", self.phase.value, video_id, exc)
            return
        if problems:
            detail, data = "; ".join(problems), {"mismatches": problems}
            state.events.record(EventKind.SHADOW_MISMATCH, self.phase, video_id, detail, data)
            log.info("strangler-bridge: shadow %s mismatch for video %s: %s", self.phase.value, video_id, problems)
        else:
            state.events.record(EventKind.SHADOW_MATCH, self.phase, video_id)


def _code(exc: Exception) -> str:
    """A short machine-readable name of a failure, for events."""
    return str(getattr(exc, "service_code", None) or getattr(exc, "code", None) or type(exc).__name__)
