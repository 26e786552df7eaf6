"""Per-app state of the extension, kept in ``app.extensions["strangler_bridge"]`` (never on the extension)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from flask import Flask, current_app, has_app_context

from flask_plugin.abandoned import AbandonedWork
from flask_plugin.callbacks import CallbackReceiver
from flask_plugin.events import EventLog
from flask_plugin.flag_cache import FlagCache
from flask_plugin.shadow import ShadowRunner
from strangler_bridge.client.breaker import CircuitBreaker
from strangler_bridge.client.bridge import BridgeClient
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.settings import Settings

EXTENSION_KEY = "strangler_bridge"


@dataclass
class BridgeState:
    """What the extension keeps per app."""

    settings: Settings
    client: BridgeClient
    flags: FlagCache
    events: EventLog
    shadow: ShadowRunner
    breakers: dict[Phase, CircuitBreaker] = field(default_factory=dict)
    abandoned: AbandonedWork | None = None
    callbacks: CallbackReceiver = field(default_factory=CallbackReceiver)

    def breaker(self, phase: Phase) -> CircuitBreaker:
        """The phase's circuit breaker (made on first use when the state was built without one)."""
        return self.breakers.setdefault(phase, CircuitBreaker(phase))

    def close(self) -> None:
        """Stop the shadow threads, cancel the service work of steps still waiting, stop the event reporter, and
        close the HTTP client (tests, or a clean shutdown)."""
        self.shadow.close()
        if self.abandoned is not None:
            self.abandoned.close()
        self.events.close()
        self.flags.close()
        self.client.close()


def current_state() -> BridgeState | None:
    """The current app's state, or ``None`` outside an app context or in an app without the extension."""
    if not has_app_context():
        return None
    return cast("BridgeState | None", current_app.extensions.get(EXTENSION_KEY))


def get_state(app: Flask | None = None) -> BridgeState:
    """The state of ``app`` (default: the current app); ``RuntimeError`` saying what to do if there is none."""
    if app is None and not has_app_context():
        raise RuntimeError("no Flask app context: pass the app, or call inside a request or app.app_context()")
    target = app or current_app
    if EXTENSION_KEY not in target.extensions:
        raise RuntimeError(f"StranglerBridge is not set up on app {target.name!r}: call bridge.init_app(app)")
    return cast(BridgeState, target.extensions[EXTENSION_KEY])
