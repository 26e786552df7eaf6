"""A small sync client of the strangler-bridge service's own HTTP API: auth, error mapping and flags.

The Flask half's ``BridgeClient`` adds the batch calls on top of it; the ``strangler-bridge flags`` command
uses it as is. Every call is a sans-I/O operation run through :func:`strangler_bridge.http.drive`, so the
one retry policy (transport errors, 408/429/5xx) applies everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from strangler_bridge import __version__
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.contracts.flags import FlagSet, Phase, PhaseFlag
from strangler_bridge.errors import ServiceError, ServiceUnavailable
from strangler_bridge.http import NO_RETRY, Operation, RetryPolicy, drive
from strangler_bridge.settings import Settings, env_name

T = TypeVar("T")
C = TypeVar("C", bound="ServiceClient")

#: Statuses that mean "try again later" rather than "this request is wrong".
TRANSIENT_STATUSES = frozenset({408, 429})

Timeout = float | httpx.Timeout | None


def service_error(response: httpx.Response) -> ServiceError:
    """The error an error response stands for.

    5xx, 408 and 429 (left over once retries ran out) become :class:`ServiceUnavailable`; any other 4xx is a
    :class:`ServiceError` carrying the service's ``code``, ``message`` and ``field``.
    """
    try:
        info = ErrorResponse.model_validate_json(response.content).error
        code, message, field = info.code, info.message, info.field
    except ValidationError:
        code, message, field = (
            f"http_{response.status_code}",
            response.text.strip()[:200] or response.reason_phrase,
            None,
        )
    if response.status_code in (401, 403):
        message = f"{message} (check {env_name('service_token')})"
    unavailable = response.status_code >= 500 or response.status_code in TRANSIENT_STATUSES
    kind = ServiceUnavailable if unavailable else ServiceError
    return kind(message, status_code=response.status_code, service_code=code, field=field)


def read_model(response: httpx.Response, parse: Callable[[bytes], T]) -> T:
    """Parse a successful response with ``parse`` (a model's ``model_validate_json``); raise on an error status."""
    if response.is_error:
        raise service_error(response)
    try:
        return parse(response.content)
    except ValidationError as exc:
        raise ServiceError(
            f"unexpected response from {response.request.method} {response.request.url.path}: {exc.error_count()} "
            f"invalid field(s), first: {exc.errors()[0]['msg']}",
            status_code=response.status_code,
            service_code="invalid_response",
        ) from exc


def parsed(request: httpx.Request, parse: Callable[[bytes], T]) -> Operation[T]:
    """The operation of sending one request and parsing its response with :func:`read_model`."""
    response = yield request
    return read_model(response, parse)


class ServiceClient:
    """Talks to the strangler-bridge service: ``Authorization: Bearer <token>`` on every call, one error shape.

    Thread-safe (one :class:`httpx.Client` underneath); close it, or use it as a context manager.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = 10.0,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.policy = policy or RetryPolicy()
        self._token = token
        self._origin = _origin(self.base_url)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": f"strangler-bridge/{__version__}"},
        )

    @classmethod
    def from_settings(cls: type[C], settings: Settings, **kwargs: Any) -> C:
        """A client for ``STRANGLER_SERVICE_URL`` / ``STRANGLER_SERVICE_TOKEN``; :class:`ConfigError` if unset."""
        settings.require("service_url")
        token = settings.service_token.get_secret_value() if settings.service_token else None
        kwargs.setdefault("timeout_s", settings.http_timeout_s)
        return cls(str(settings.service_url), token, **kwargs)

    # --- plumbing shared by every call ----------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: Timeout = None,
    ) -> httpx.Request:
        """Build a request to ``url`` (relative to the service URL, or absolute).

        The token goes only to the service's own origin, never to an absolute URL elsewhere.
        """
        all_headers = dict(headers or {})
        if content is not None:
            all_headers.setdefault("Content-Type", "application/json")
        if self._token and self.is_own(url):
            all_headers["Authorization"] = f"Bearer {self._token}"
        return self._http.build_request(
            method,
            url,
            params=params,
            content=content,
            headers=all_headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )

    def is_own(self, url: str) -> bool:
        """Whether ``url`` (relative, or absolute) is on the service's own origin."""
        return _origin(url) in (None, self._origin)

    def run(self, operation: Operation[T], policy: RetryPolicy | None = None) -> T:
        """Run an operation with retries; transport failures that outlive them become :class:`ServiceUnavailable`."""
        return drive(operation, self._http, policy or self.policy, on_transport_error=self.unreachable)

    def unreachable(self, exc: httpx.TransportError) -> ServiceUnavailable:
        """The error for a transport failure (connection refused, timeout, ...)."""
        code = "timeout" if isinstance(exc, httpx.TimeoutException) else "unreachable"
        reason = f"{type(exc).__name__} {exc}".rstrip()
        return ServiceUnavailable(
            f"cannot reach the service at {self.base_url} ({reason}): is it running? "
            f"Check {env_name('service_url')} or --url",
            status_code=0,
            service_code=code,
        )

    def call(
        self,
        method: str,
        url: str,
        parse: Callable[[bytes], T],
        *,
        policy: RetryPolicy | None = None,
        **request: Any,
    ) -> T:
        """One request, its response parsed by ``parse``."""
        return self.run(parsed(self.request(method, url, **request), parse), policy)

    # --- flags and health -----------------------------------------------------------------------------

    def get_flags(self, *, timeout_s: float | None = None, policy: RetryPolicy | None = None) -> FlagSet:
        """``GET /flags``: every phase's flag and the flag-set version."""
        return self.call("GET", "/flags", FlagSet.model_validate_json, timeout=timeout_s, policy=policy)

    def set_flag(self, phase: Phase | str, flag: PhaseFlag) -> FlagSet:
        """``PUT /flags/{phase}``: replace one phase's flag; returns the new flag set."""
        body = flag.model_dump_json().encode()
        return self.call("PUT", f"/flags/{Phase(phase).value}", FlagSet.model_validate_json, content=body)

    def readiness(self, *, timeout_s: float = 1.0) -> int:
        """``GET /readyz`` once, without retries: the HTTP status (200 = ready, 503 = Redis down)."""
        operation = self._status_of(self.request("GET", "/readyz", timeout=timeout_s))
        return self.run(operation, NO_RETRY)

    @staticmethod
    def _status_of(request: httpx.Request) -> Operation[int]:
        response = yield request
        return response.status_code

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self: C) -> C:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _origin(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    return (parts.scheme.lower(), parts.netloc.lower()) if parts.netloc else None
