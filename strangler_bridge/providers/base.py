"""The one shape of every provider client: an operations base, a sync runner, an async runner, one error mapping.

A provider (RunPod, Runware, the video service) writes its calls once, as sans-I/O operations
(:data:`strangler_bridge.http.Operation`) wrapped in a :class:`Call` by :meth:`ProviderBase.call`, and its
multi-call procedures as a :data:`Flow` (calls and :class:`Sleep` steps); each public method is declared once,
with :class:`provider_method`. Its sync client is ``class XClient(SyncRunner, XOperations[httpx.Client])``, its
async client the same with :class:`AsyncRunner`; each runner owns the httpx client, runs calls through
:func:`~strangler_bridge.http.drive` / :func:`~strangler_bridge.http.adrive` (the one retry policy) and closes.

Failures are mapped to the error tree (:mod:`strangler_bridge.errors`) at this boundary only, as httpx maps
httpcore's exceptions to its own. An HTTP status that outlived the retries (:func:`error_for_status`)::

    401, 403          ProviderAuthError
    402               ProviderPaymentRequired   (a ProviderRejected)
    404               ProviderNotFound
    408, 5xx          ProviderUnavailable       (retryable)
    429               ProviderRateLimited       (retryable)
    any other 4xx     ProviderRejected

and a transport failure that outlived them (:meth:`ProviderBase.transport_error`): ProviderUnavailable, saying
when a paid submit may have reached the provider (its outcome is then unknown).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

import httpx

from strangler_bridge import errors
from strangler_bridge.errors import ProviderError, ProviderUnavailable
from strangler_bridge.http import UNSENT_ERRORS, Operation, RetryPolicy, adrive, drive

T = TypeVar("T")
P = ParamSpec("P")
H = TypeVar("H", bound=httpx.Client | httpx.AsyncClient)

_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    401: errors.ProviderAuthError,
    402: errors.ProviderPaymentRequired,
    403: errors.ProviderAuthError,
    404: errors.ProviderNotFound,
    408: errors.ProviderUnavailable,
    429: errors.ProviderRateLimited,
}


def error_class_for_status(status: int) -> type[ProviderError]:
    """The error an HTTP error status stands for (the table in the module docstring)."""
    return _STATUS_ERRORS.get(status) or (ProviderUnavailable if status >= 500 else errors.ProviderRejected)


def error_for_status(
    response: httpx.Response,
    *,
    provider: str,
    message: str,
    provider_code: str | None = None,
    field: str | None = None,
) -> ProviderError:
    """The error a provider's error ``response`` stands for, carrying ``message`` and the provider's own code."""
    status = response.status_code
    kind = error_class_for_status(status)
    return kind(message, provider=provider, status_code=status, provider_code=provider_code, field=field)


def provider_message(response: httpx.Response, limit: int = 500) -> str:
    """A provider's own words for an error: ``error``/``message``/``detail`` of a JSON body (nested once, as in
    ``{"error": {"message": ...}}``), else the text, else the reason phrase; cut at ``limit`` characters."""
    try:
        found: Any = response.json()
    except ValueError:
        found = response.text.strip()
    for _ in range(2):
        if isinstance(found, dict):
            found = next((found[key] for key in ("error", "message", "detail") if found.get(key)), found)
    message = (found if isinstance(found, str) else str(found)) or response.reason_phrase
    message = message or f"HTTP {response.status_code}"
    return message if len(message) <= limit else message[:limit] + "..."


@dataclass(frozen=True)
class Call(Generic[T]):
    """One operation ready to run: what it is (for messages), its retry policy, and whether it is a paid submit."""

    what: str
    operation: Operation[T]
    policy: RetryPolicy
    submit: bool = False


@dataclass(frozen=True)
class Sleep:
    """A pause inside a :data:`Flow` (each runner sleeps its own way)."""

    seconds: float


#: A procedure of several calls, written once: yields calls (each sent its result, or thrown its ProviderError)
#: and sleeps; the sync and async runners run it alike.
Flow = Generator[Call[Any] | Sleep, Any, T]


class ProviderBase(Generic[H]):
    """What every provider client holds: its name, retry policy and HTTP client, and the transport error mapping.

    ``http`` is the caller's httpx client (left open) or, when ``None``, one the runner makes (and closes).
    """

    provider: ClassVar[str]
    #: The provider as messages name it.
    label: ClassVar[str]

    def __init__(self, *, retry: RetryPolicy | None, http: H | None, timeout: httpx.Timeout | float) -> None:
        self.retry_policy = retry or RetryPolicy()
        self._owns_http = http is None
        self.http: H = http if http is not None else self._new_http(timeout)

    def _new_http(self, timeout: httpx.Timeout | float) -> H:
        raise NotImplementedError("mix in SyncRunner or AsyncRunner")

    def error_message(self, response: httpx.Response) -> str:
        """The provider's own words for an error response (a hook: :func:`provider_message` unless overridden)."""
        return provider_message(response)

    def status_error(self, response: httpx.Response, what: str, hint: str = "") -> ProviderError:
        """:func:`error_for_status` for this provider: ``"<what>: <its message><hint>"``."""
        message = f"{what}: {self.error_message(response)}{hint}"
        return error_for_status(response, provider=self.provider, message=message)

    def call(self, what: str, operation: Operation[T], *, submit: bool = False) -> Call[T]:
        """``operation`` with this client's policy; a paid ``submit`` is never resent once it may have arrived."""
        return Call(what, operation, self.retry_policy.for_submit() if submit else self.retry_policy, submit)

    def transport_error(self, call: Call[Any], exc: httpx.TransportError) -> ProviderUnavailable:
        """The error for a transport failure that outlived every try (the original stays its ``__cause__``)."""
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        message = f"{call.what}: {self.label} unreachable ({detail})"
        if call.submit and not isinstance(exc, UNSENT_ERRORS):
            message += f" (the request may have reached {self.label}: its outcome is unknown)"
        return ProviderUnavailable(message, provider=self.provider)


class SyncRunner(ProviderBase[httpx.Client]):
    """Runs calls and flows on an :class:`httpx.Client`; a context manager."""

    def _new_http(self, timeout: httpx.Timeout | float) -> httpx.Client:
        return httpx.Client(timeout=timeout)

    def _run(self, step: Call[T] | Flow[T]) -> T:
        return self._call(step) if isinstance(step, Call) else self._flow(step)

    def _call(self, call: Call[T]) -> T:
        return drive(call.operation, self.http, call.policy, lambda exc: self.transport_error(call, exc))

    def _flow(self, flow: Flow[T]) -> T:
        step = _Stepper(flow)
        while (next_step := step.next()) is not None:
            if isinstance(next_step, Sleep):
                time.sleep(next_step.seconds)
                continue
            try:
                step.answer(self._call(next_step))
            except ProviderError as exc:
                step.fail(exc)
        return step.result

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncRunner(ProviderBase[httpx.AsyncClient]):
    """Runs calls and flows on an :class:`httpx.AsyncClient`; an async context manager."""

    def _new_http(self, timeout: httpx.Timeout | float) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout)

    async def _run(self, step: Call[T] | Flow[T]) -> T:
        return await (self._call(step) if isinstance(step, Call) else self._flow(step))

    async def _call(self, call: Call[T]) -> T:
        return await adrive(call.operation, self.http, call.policy, lambda exc: self.transport_error(call, exc))

    async def _flow(self, flow: Flow[T]) -> T:
        step = _Stepper(flow)
        while (next_step := step.next()) is not None:
            if isinstance(next_step, Sleep):
                await asyncio.sleep(next_step.seconds)
                continue
            try:
                step.answer(await self._call(next_step))
            except ProviderError as exc:
                step.fail(exc)
        return step.result

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class provider_method(Generic[P, T]):
    """Declares a provider's public method once, on its operations, for both clients.

    The decorated function builds what the method does (a :class:`Call` or a :data:`Flow`); read on a
    :class:`SyncRunner` client it is a method returning the result, on an :class:`AsyncRunner` client a
    coroutine method: the same arguments and docstring, so the sync and async APIs cannot drift. (The operations
    themselves build their steps with private helpers: there the method has no runner to run on.)
    """

    def __init__(self, make: Callable[Concatenate[Any, P], Call[T] | Flow[T]]) -> None:
        self._make = make
        self.__doc__ = make.__doc__

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, client: SyncRunner, owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(self, client: AsyncRunner, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: SyncRunner | AsyncRunner | None, owner: type[Any]) -> Any:
        if client is None:
            return self
        make = self._make
        if isinstance(client, SyncRunner):
            runner = client

            def method(*args: P.args, **kwargs: P.kwargs) -> T:
                return runner._run(make(runner, *args, **kwargs))

            return functools.update_wrapper(method, make)
        arunner = client

        async def amethod(*args: P.args, **kwargs: P.kwargs) -> T:
            return await arunner._run(make(arunner, *args, **kwargs))

        return functools.update_wrapper(amethod, make)


class _Stepper(Generic[T]):
    """Advances a flow: hands it each call's result or error, and keeps what it returns."""

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self._reply: Any = None
        self._error: ProviderError | None = None
        self.result: T

    def answer(self, reply: Any) -> None:
        self._reply = reply

    def fail(self, error: ProviderError) -> None:
        self._error = error

    def next(self) -> Call[Any] | Sleep | None:
        """The flow's next step, or ``None`` once it returned (its value is then :attr:`result`)."""
        reply, error = self._reply, self._error
        self._reply, self._error = None, None
        try:
            return self._flow.send(reply) if error is None else self._flow.throw(error)
        except StopIteration as done:
            self.result = done.value
            return None
