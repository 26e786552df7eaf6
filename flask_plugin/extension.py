"""The Flask extension: ``StranglerBridge(app)`` or ``bridge.init_app(app)`` in an app factory.

The extension object holds no app and no per-app state: everything lives in
``app.extensions["strangler_bridge"]`` (a :class:`BridgeState`), found through ``flask.current_app`` at call
time. So ``@bridge.step("tts")`` can decorate legacy functions at import time, before any app exists.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask

from flask_plugin.abandoned import AbandonedWork
from flask_plugin.adapters import StepAdapter, TtsAdapter
from flask_plugin.blueprint import CALLBACKS_RULE, create_blueprint
from flask_plugin.callbacks import CallbackHandler, CallbackReceiver
from flask_plugin.flag_cache import FlagCache
from flask_plugin.imagegen import ImageAdapter
from flask_plugin.instrumentation import instrument_app
from flask_plugin.jobs import JobAdapter
from flask_plugin.reporting import EventReporter, ReportingEventLog, breaker_event
from flask_plugin.shadow import ShadowRunner
from flask_plugin.state import EXTENSION_KEY, BridgeState, current_state, get_state
from flask_plugin.step import StepRouter
from flask_plugin.video import VideoAdapter
from strangler_bridge.client.breaker import BreakerSnapshot, BreakerState, CircuitBreaker
from strangler_bridge.client.bridge import BridgeClient
from strangler_bridge.contracts.flags import FlagMode, Phase
from strangler_bridge.errors import ConfigError
from strangler_bridge.flags import effective_mode
from strangler_bridge.http import NO_RETRY
from strangler_bridge.settings import Settings, env_name

log = logging.getLogger(__name__)

#: A flag fetch may hold up one request at most this long (then the last known flags are used).
FLAG_FETCH_TIMEOUT_S = 1.0

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=CallbackHandler)

#: The adapter of each phase when ``@bridge.step(phase)`` is given none (each with its default parameter names).
_DEFAULT_ADAPTERS: dict[Phase, Callable[[], StepAdapter[Any, Any]]] = {
    Phase.TTS: TtsAdapter,
    Phase.IMAGEGEN: ImageAdapter,
    Phase.VIDEO: VideoAdapter,
    Phase.JOBS: JobAdapter,
}


def load_settings(config: Mapping[str, Any]) -> Settings:
    """The Flask side's settings from ``STRANGLER_*`` config keys, then the environment.

    Raises :class:`ConfigError` saying what to set when the service URL or token is missing, or when callback
    mode lacks its receiver URL or secret.
    """
    settings = Settings.from_mapping(config)
    missing = [env_name(name) for name in ("service_url", "service_token") if not getattr(settings, name)]
    if missing:
        raise ConfigError(
            f"StranglerBridge needs {' and '.join(missing)}: set {env_name('service_url')} to the base URL of the "
            f"strangler-bridge service (e.g. http://127.0.0.1:8000) and {env_name('service_token')} to one of the "
            f"service's {env_name('api_tokens')}, in app.config or in the environment"
        )
    if settings.jobs_wait == "callback":
        missing = [env_name(n) for n in ("callback_receiver_url", "callback_secret") if not getattr(settings, n)]
        if missing:
            raise ConfigError(
                f"{env_name('jobs_wait')}=callback needs {' and '.join(missing)}: set "
                f"{env_name('callback_receiver_url')} to the public URL of this app's callbacks route (e.g. "
                f"https://app.example.com/strangler/callbacks) and {env_name('callback_secret')} to the service's "
                f"{env_name('callback_secret')}, or set {env_name('jobs_wait')}=poll"
            )
    return settings


class StranglerBridge:
    """Routes the legacy app's GPU steps to the strangler-bridge service, per phase flag.

    ``client`` replaces the HTTP client built from config (tests pass one with a mock transport).
    ``url_prefix`` is where the ``/strangler`` blueprint goes (``None``: do not register it; callback mode
    needs it, for its completion-webhook route).
    """

    def __init__(
        self, app: Flask | None = None, *, client: BridgeClient | None = None, url_prefix: str | None = "/strangler"
    ) -> None:
        self._callback_handlers: list[CallbackHandler] = []
        if app is not None:
            self.init_app(app, client=client, url_prefix=url_prefix)

    def init_app(
        self, app: Flask, *, client: BridgeClient | None = None, url_prefix: str | None = "/strangler"
    ) -> None:
        """Read ``STRANGLER_*`` config (falling back to the environment), set up per-app state, add the blueprint."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("StranglerBridge.init_app() was already called for this app")
        settings = load_settings(app.config)
        callbacks = self._receiver(settings, url_prefix)
        client = client or BridgeClient.from_settings(settings, timeout_s=settings.service_request_timeout_s)
        flags = FlagCache(
            lambda: client.get_flags(timeout_s=FLAG_FETCH_TIMEOUT_S, policy=NO_RETRY),
            ttl_s=settings.flags_cache_s,
            static=settings.flags,
            wait_s=FLAG_FETCH_TIMEOUT_S,
        )
        # Fallbacks, shadow results and breaker changes are kept here and also reported to the service (buffered
        # while it is unreachable), so its /metrics and operator page show them; this never blocks a legacy request.
        reporter = EventReporter(client, capacity=settings.events_buffer)
        events = ReportingEventLog(reporter)

        def report(snapshot: BreakerSnapshot) -> None:
            log.log(
                logging.INFO if snapshot.state is BreakerState.CLOSED else logging.WARNING,
                "strangler-bridge: %s breaker %s (%d consecutive failures%s)",
                snapshot.phase.value,
                snapshot.state.value,
                snapshot.failures,
                f"; last: {snapshot.reason}" if snapshot.reason else "",
            )
            reporter.enqueue(breaker_event(snapshot.phase, snapshot.to_dict()))

        def service_ready() -> bool:
            return client.readiness(timeout_s=FLAG_FETCH_TIMEOUT_S) == 200

        breakers = {
            phase: CircuitBreaker(
                phase,
                failures=settings.breaker_failures,
                cooldown_s=settings.breaker_cooldown_s,
                on_change=report,
                probe=service_ready,
            )
            for phase in Phase
        }
        app.extensions[EXTENSION_KEY] = BridgeState(
            settings, client, flags, events, ShadowRunner(), breakers, AbandonedWork(client), callbacks
        )
        if url_prefix is not None:
            app.register_blueprint(create_blueprint(), url_prefix=url_prefix)
        instrument_app(app)  # with the [otel] extra and OTEL_* set only

    def _receiver(self, settings: Settings, url_prefix: str | None) -> CallbackReceiver:
        """The app's completion-webhook receiver, checked against callback mode's needs."""
        path = None if url_prefix is None else url_prefix.rstrip("/") + CALLBACKS_RULE
        receiver_url = settings.callback_receiver_url if settings.jobs_wait == "callback" else None
        if receiver_url is not None:
            if path is None:
                raise ConfigError(
                    f"{env_name('jobs_wait')}=callback needs the blueprint's callbacks route: pass a url_prefix to "
                    f"StranglerBridge (the default is /strangler), or set {env_name('jobs_wait')}=poll"
                )
            if not urlsplit(receiver_url).path.endswith(path):
                # A proxy may rewrite the path, so this is only a hint.
                log.warning(
                    "strangler-bridge: %s is %s, which does not end with this app's callbacks route %s",
                    env_name("callback_receiver_url"),
                    receiver_url,
                    path,
                )
        return CallbackReceiver(
            settings.callback_secrets(), self._callback_handlers, path=path, receiver_url=receiver_url
        )

    def on_callback(self, handler: H) -> H:
        """Register ``handler(webhook_id, event)`` for the completion webhooks the app receives.

        Each verified webhook whose ``webhook-id`` this process has not handled yet calls every handler in turn,
        inside the receiving request (keep them quick: hand long work to a queue). A handler that raises makes
        the route answer 500, and the service delivers the same id and event again later, to every handler;
        another Flask process, or this one after a day or 10 000 newer webhooks, may get a webhook again too.
        So a handler must be idempotent, e.g. keyed by ``webhook_id`` or by ``event.data.id`` and
        ``event.data.version``.
        """
        self._callback_handlers.append(handler)
        return handler

    @staticmethod
    def callback_path(app: Flask | None = None) -> str:
        """The path of ``app``'s completion-webhook route (``/strangler/callbacks`` by default), e.g. to build
        ``STRANGLER_CALLBACK_RECEIVER_URL`` or to post to it in a test."""
        path = get_state(app).callbacks.path
        if path is None:
            raise RuntimeError("StranglerBridge was set up without its blueprint (url_prefix=None): no callbacks route")
        return path

    def step(
        self, phase: Phase | str, adapter: StepAdapter[Any, Any] | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a legacy function so each call is answered per the phase's flag (see ``flask_plugin.step``).

        ``adapter`` translates the function's arguments and result; each phase has a default with the
        documented parameter names (:class:`TtsAdapter`, :class:`ImageAdapter`, :class:`VideoAdapter`,
        :class:`JobAdapter`). The legacy function stays reachable as ``wrapped.__wrapped__``.
        """
        phase = _phase(phase)
        if adapter is None:
            adapter = _DEFAULT_ADAPTERS[phase]()
        elif adapter.phase is not phase:
            raise ConfigError(f"{type(adapter).__name__} is for phase {adapter.phase.value!r}, not {phase.value!r}")
        chosen = adapter

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            chosen.check(func)
            router = StepRouter(phase, chosen, func, current_state)

            @functools.wraps(func)
            def routed(*args: P.args, **kwargs: P.kwargs) -> R:
                return cast(R, router(args, kwargs))

            return routed

        return decorate

    @staticmethod
    def state(app: Flask | None = None) -> BridgeState:
        """The per-app state of ``app`` (default: the current app)."""
        return get_state(app)

    def mode(self, phase: Phase | str, video_id: str | None) -> FlagMode:
        """The mode that applies to ``video_id`` for ``phase`` right now (for code that routes by hand)."""
        return effective_mode(self.state().flags.get(_phase(phase)), video_id)


def _phase(value: Phase | str) -> Phase:
    try:
        return Phase(value)
    except ValueError:
        names = ", ".join(p.value for p in Phase)
        raise ConfigError(f"unknown phase {value!r}: use one of {names}") from None
