"""What the service's code calls to count things: provider calls and limiter waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi_app.logs import current
from fastapi_app.metrics.families import LIMITER_WAIT, PROVIDER_CALLS, PROVIDER_LATENCY
from fastapi_app.metrics.store import Increments, record
from fastapi_app.runtime import Runtime
from strangler_bridge import tracing
from strangler_bridge.errors import ProviderError


def outcome_of(exc: BaseException) -> str:
    """The ``outcome`` label of a failed provider call: the error's kind (``rate_limited``, ``rejected``, ...)."""
    if isinstance(exc, ProviderError):
        return exc.code.removeprefix("provider_") if exc.code != ProviderError.code else "error"
    return "error"


@contextmanager
def provider_call(rt: Runtime, provider: str, operation: str) -> Iterator[None]:
    """Count one call to a provider (retries included) with its outcome and duration, and trace it as a span
    ``<provider> <operation>`` (the HTTP requests are its children).

    ``with provider_call(rt, "runpod", "run"): job = rt.runpod.run(...)``; the exception, if any, propagates.
    """
    started = time.monotonic()
    outcome = "error"
    attributes = {"strangler.provider": provider, "strangler.operation": operation}
    attributes.update({f"strangler.{name}": value for name, value in current().items()})
    try:
        with tracing.span(f"{provider} {operation}", attributes=attributes):
            yield
        outcome = "ok"
    except BaseException as exc:
        outcome = outcome_of(exc)
        raise
    finally:
        increments = Increments()
        increments.inc(PROVIDER_CALLS, (provider, operation, outcome))
        increments.observe(PROVIDER_LATENCY, (provider, operation), time.monotonic() - started)
        record(rt.redis, rt.keys, increments)


def limiter_wait(rt: Runtime, limiter: str, seconds: float) -> None:
    """Count the time one request waited for a slot of ``limiter``."""
    increments = Increments()
    increments.observe(LIMITER_WAIT, (limiter,), seconds)
    record(rt.redis, rt.keys, increments)
