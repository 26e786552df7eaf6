"""Outbound HTTP with one retry policy, for sync and async callers alike.

Provider clients are written once as *operations*: generators that yield :class:`httpx.Request`
objects and receive :class:`httpx.Response` objects back (a sans-I/O style). :func:`drive` runs an
operation on an :class:`httpx.Client`, :func:`adrive` on an :class:`httpx.AsyncClient`; both send each
request through the same tenacity policy (exponential backoff with jitter on 429, 5xx and transport
errors, never on other 4xx). So the sync worker path and the async path share every line of logic.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

T = TypeVar("T")

#: An operation: yields requests, is sent their responses, returns a typed result.
Operation = Generator[httpx.Request, httpx.Response, T]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Transport failures that prove the request never reached the server, so even a paid submit may be resent.
UNSENT_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how far apart, one request is tried."""

    attempts: int = 4
    initial_s: float = 0.2
    max_s: float = 5.0
    jitter_s: float = 0.2
    statuses: frozenset[int] = field(default=RETRY_STATUSES)
    #: False for paid submits: a read timeout after sending may mean the provider got the request, so
    #: only failures that prove it was never sent are retried (callers then recover the unknown outcome).
    idempotent: bool = True

    def for_submit(self) -> RetryPolicy:
        """The same policy for a non-idempotent (paid) submission."""
        return replace(self, idempotent=False)

    def tenacity_kwargs(self) -> dict[str, Any]:
        """Arguments for tenacity's ``Retrying``/``AsyncRetrying`` implementing this policy (for streamed calls)."""
        transport = httpx.TransportError if self.idempotent else UNSENT_ERRORS
        return {
            "stop": stop_after_attempt(self.attempts),
            "wait": _wait_with_retry_after(
                wait_exponential(multiplier=self.initial_s, max=self.max_s) + wait_random(0, self.jitter_s)
            ),
            "retry": retry_if_exception_type((*_as_tuple(transport), RetryableStatus)),
            "reraise": True,
        }


NO_RETRY = RetryPolicy(attempts=1)


def _as_tuple(kinds: type[Exception] | tuple[type[Exception], ...]) -> tuple[type[Exception], ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


class RetryableStatus(Exception):
    """A response whose status the policy retries (raised inside a tenacity loop, carrying the response)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _wait_with_retry_after(base: Any) -> Any:
    """Back off as ``base`` does, but never less than a provider's numeric ``Retry-After`` (capped at 30 s)."""

    def wait(state: RetryCallState) -> float:
        delay = float(base(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableStatus):
            header = exc.response.headers.get("retry-after", "")
            if header.replace(".", "", 1).isdigit():
                delay = max(delay, min(float(header), 30.0))
        return delay

    return wait


def send(client: httpx.Client, request: httpx.Request, policy: RetryPolicy, *, stream: bool = False) -> httpx.Response:
    """Send ``request`` with retries; returns the last response (even a retryable one) once tries run out.

    With ``stream``, a successful response's body is left unread (the caller streams it and closes the
    response); error bodies are always read, so the provider's message can be quoted. Transport errors that
    survive every try are raised as :class:`httpx.TransportError`.
    """
    try:
        for attempt in Retrying(**policy.tenacity_kwargs()):
            with attempt:
                response = client.send(request, stream=stream)
                if response.status_code >= 400:
                    response.read()
                    if response.status_code in policy.statuses:
                        raise RetryableStatus(response)
                return response
    except RetryableStatus as exc:
        return exc.response
    raise AssertionError("unreachable")  # pragma: no cover


async def asend(
    client: httpx.AsyncClient, request: httpx.Request, policy: RetryPolicy, *, stream: bool = False
) -> httpx.Response:
    """The async twin of :func:`send`."""
    try:
        async for attempt in AsyncRetrying(**policy.tenacity_kwargs()):
            with attempt:
                response = await client.send(request, stream=stream)
                if response.status_code >= 400:
                    await response.aread()
                    if response.status_code in policy.statuses:
                        raise RetryableStatus(response)
                return response
    except RetryableStatus as exc:
        return exc.response
    raise AssertionError("unreachable")  # pragma: no cover


#: Turns a transport failure that outlived every retry into the caller's own error type.
TransportErrorMapper = Callable[[httpx.TransportError], Exception]


def drive(
    operation: Operation[T],
    client: httpx.Client,
    policy: RetryPolicy,
    on_transport_error: TransportErrorMapper | None = None,
) -> T:
    """Run an operation to completion on a sync client."""
    try:
        request = next(operation)
        while True:
            request = operation.send(send(client, request, policy))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except httpx.TransportError as exc:
        if on_transport_error is None:
            raise
        raise on_transport_error(exc) from exc


async def adrive(
    operation: Operation[T],
    client: httpx.AsyncClient,
    policy: RetryPolicy,
    on_transport_error: TransportErrorMapper | None = None,
) -> T:
    """Run an operation to completion on an async client."""
    try:
        request = next(operation)
        while True:
            request = operation.send(await asend(client, request, policy))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except httpx.TransportError as exc:
        if on_transport_error is None:
            raise
        raise on_transport_error(exc) from exc
