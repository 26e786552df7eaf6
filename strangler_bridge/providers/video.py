"""Client of the video render service (the user's Express service), configured by ``STRANGLER_VIDEO_URL``.

The Express service's API is not published, so this client speaks a documented *default contract*
(served by ``strangler-bridge simulate video``; see ``docs/simulators/video.md``)::

    POST {base}/renders             RenderRequest  -> 202 RenderStatus
    GET  {base}/renders/{id}                       -> 200 RenderStatus
    GET  {base}/renders/{id}/video                 -> 200 the MP4 bytes (streamed); 409 while not completed
    POST {base}/renders/{id}/cancel                -> 200 RenderStatus
    callback: POST callback_url with the RenderStatus JSON once the render is terminal

    RenderRequest: {"render_id": str, "segments": [{"index", "start_s", "end_s", "audio_url", "image_url", "text"}],
                    "options": {"width", "height", "fps", "format": "mp4"}, "callback_url": str | null, "metadata": {}}
    RenderStatus:  {"id", "status": queued|rendering|completed|failed|cancelled, "progress": 0..1,
                    "video_url", "duration_s", "error", "placeholder"}

``render_id`` is chosen by the caller and is the idempotency key: submitting the same ``render_id`` again
returns the existing render and never renders twice, so resubmitting after a timeout is always safe.
Requests carry ``Authorization: Bearer <token>`` when a token is given.

Adapting to other routes or payloads takes a few lines, once for the sync and async clients alike:
give ``routes=VideoRoutes(...)`` (configuration), or subclass :class:`VideoContract` and override its hooks
(``submit_body``, ``parse_status``, ``build_*``), then mix it into :class:`VideoClient` and
:class:`AsyncVideoClient`::

    class ExpressContract(VideoContract):
        routes = VideoRoutes(submit="/api/render", status="/api/render/{id}")

        def submit_body(self, request: RenderRequest) -> dict[str, Any]:
            return {"jobId": request.render_id, "scenes": [s.model_dump() for s in request.segments]}

    class ExpressVideo(ExpressContract, VideoClient): ...
    class AsyncExpressVideo(ExpressContract, AsyncVideoClient): ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, BinaryIO, ClassVar, Literal, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from strangler_bridge.errors import (
    DeadlineExceeded,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderPaymentRequired,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.fetch import afetch_into, fetch_into
from strangler_bridge.http import Operation, RetryPolicy, adrive, drive
from strangler_bridge.settings import Settings

PROVIDER = "video"
RENDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
C = TypeVar("C", bound="VideoContract")
T = TypeVar("T")
S = TypeVar("S", bound="VideoClient")
A = TypeVar("A", bound="AsyncVideoClient")
RouteName = Literal["submit", "status", "video", "cancel", "health"]


class RenderSegment(BaseModel):
    """One segment of the video: an image shown while its audio plays."""

    index: int = Field(..., ge=0)
    start_s: float = Field(..., ge=0)
    end_s: float = Field(..., ge=0)
    audio_url: str = Field(..., min_length=1)
    image_url: str = Field(..., min_length=1)
    text: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RenderSegment:
        if self.end_s < self.start_s:
            raise ValueError("end_s must not be before start_s")
        return self


class RenderOptions(BaseModel):
    """Output picture size, frame rate and container."""

    width: int = Field(1280, ge=16, le=7680)
    height: int = Field(720, ge=16, le=4320)
    fps: int = Field(25, ge=1, le=120)
    format: Literal["mp4"] = "mp4"


class RenderRequest(BaseModel):
    """``POST /renders`` body; ``render_id`` is the caller's idempotency key."""

    render_id: str = Field(..., pattern=RENDER_ID_PATTERN)
    segments: list[RenderSegment] = Field(..., min_length=1)
    options: RenderOptions = Field(default_factory=RenderOptions)
    callback_url: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_indexes(self) -> RenderRequest:
        if len({s.index for s in self.segments}) != len(self.segments):
            raise ValueError("segment indexes must be unique")
        return self


class RenderState(str, Enum):
    """Where a render is."""

    QUEUED = "queued"
    RENDERING = "rendering"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether nothing will change any more."""
        return self in (RenderState.COMPLETED, RenderState.FAILED, RenderState.CANCELLED)


class RenderStatus(BaseModel):
    """What the service says about one render (also the callback body)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: RenderState
    progress: float = Field(0.0, ge=0, le=1)
    video_url: str | None = None
    duration_s: float | None = None
    error: str | None = None
    placeholder: bool = False

    @classmethod
    def parse(cls, data: Any) -> RenderStatus:
        """Validate a status (or callback) body; a malformed one raises :class:`ProviderError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ProviderError(f"unexpected render status body: {exc.errors()[0]['msg']}", provider=PROVIDER) from None


@dataclass(frozen=True)
class VideoRoutes:
    """Path templates under the base URL; ``{id}`` is replaced by the URL-quoted render id."""

    submit: str = "/renders"
    status: str = "/renders/{id}"
    video: str = "/renders/{id}/video"
    cancel: str = "/renders/{id}/cancel"
    health: str = "/healthz"

    def path(self, name: RouteName, render_id: str = "") -> str:
        """The path of one route for one render."""
        template: str = getattr(self, name)
        return template.replace("{id}", quote(render_id, safe=""))


_ERRORS: dict[int, type[ProviderError]] = {
    401: ProviderAuthError,
    403: ProviderAuthError,
    402: ProviderPaymentRequired,
    404: ProviderNotFound,
    408: ProviderUnavailable,
    429: ProviderRateLimited,
}


class VideoContract:
    """The contract as overridable hooks plus sans-I/O operations, shared by the sync and async clients."""

    provider: ClassVar[str] = PROVIDER
    #: Routes of the contract; override in a subclass or per instance with ``routes=``.
    routes: VideoRoutes = VideoRoutes()

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        routes: VideoRoutes | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        if routes is not None:
            self.routes = routes

    @classmethod
    def from_settings(cls: type[C], settings: Settings, **kwargs: Any) -> C:
        """A client for ``STRANGLER_VIDEO_URL`` (``ConfigError`` naming it if unset) with the settings' timeout."""
        settings.require("video_url")
        kwargs.setdefault("timeout_s", settings.http_timeout_s)
        return cls(settings.video_url or "", **kwargs)

    # --- hooks: override these to adapt the client to another service --------------------------------
    def url(self, path: str) -> str:
        """Absolute URL of a path under the base URL."""
        return self.base_url + path

    def auth_headers(self) -> dict[str, str]:
        """Headers sent to the video service (the bearer token, if any)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def submit_body(self, request: RenderRequest) -> dict[str, Any]:
        """The JSON body of a submission."""
        return request.model_dump(mode="json")

    def build(self, method: str, route: RouteName, render_id: str = "", **kwargs: Any) -> httpx.Request:
        """A request to one route of the contract, with the auth headers."""
        return httpx.Request(
            method, self.url(self.routes.path(route, render_id)), headers=self.auth_headers(), **kwargs
        )

    def build_submit(self, request: RenderRequest) -> httpx.Request:
        """The request that submits a render."""
        return self.build("POST", "submit", json=self.submit_body(request))

    def build_status(self, render_id: str) -> httpx.Request:
        """The request that reads a render's status."""
        return self.build("GET", "status", render_id)

    def build_cancel(self, render_id: str) -> httpx.Request:
        """The request that cancels a render."""
        return self.build("POST", "cancel", render_id)

    def build_download(self, render_id_or_url: str) -> httpx.Request:
        """The request for the video: a render id's video route, or an absolute ``video_url`` as given.

        The token is sent only to the service's own origin, never to another host (a CDN or bucket URL).
        """
        if "://" not in render_id_or_url:
            return self.build("GET", "video", render_id_or_url)
        url = urljoin(self.base_url + "/", render_id_or_url)
        same_origin = urlsplit(url)[:2] == urlsplit(self.base_url)[:2]
        return httpx.Request("GET", url, headers=self.auth_headers() if same_origin else {})

    def parse_status(self, response: httpx.Response) -> RenderStatus:
        """The status in a successful response."""
        try:
            data = response.json()
        except ValueError:
            raise ProviderError(
                "render status is not JSON", provider=self.provider, status_code=response.status_code
            ) from None
        return RenderStatus.parse(data)

    def error_message(self, response: httpx.Response) -> str:
        """The service's own message from an error body (``{"error": {"message"}}``, ``{"message"}``, text)."""
        try:
            data = response.json()
        except ValueError:
            return response.text[:300] or response.reason_phrase
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            error = error.get("message") or error.get("detail") or error
        return str(error)[:300]

    def raise_for_error(self, response: httpx.Response, what: str) -> None:
        """Raise the package's error for a non-2xx response (the retry policy has already run)."""
        code = response.status_code
        if code >= 400:
            kind = _ERRORS.get(code) or (ProviderUnavailable if code >= 500 else ProviderRejected)
            raise kind(f"{what}: {self.error_message(response)}", provider=self.provider, status_code=code)

    def transport_error(self, exc: httpx.TransportError) -> ProviderError:
        """A transport failure that outlived every retry (the outcome of a submit is then unknown)."""
        return ProviderUnavailable(f"video service unreachable: {exc!r}", provider=self.provider)

    # --- operations: each written once, run by drive (sync) or adrive (async) ----------------------
    def submit_operation(self, request: RenderRequest) -> Operation[RenderStatus]:
        """Submit a render; returns its status (the existing render's, if the id was seen before)."""
        response = yield self.build_submit(request)
        self.raise_for_error(response, f"submit render {request.render_id}")
        return self.parse_status(response)

    def status_operation(self, render_id: str) -> Operation[RenderStatus]:
        """Read a render's status."""
        response = yield self.build_status(render_id)
        self.raise_for_error(response, f"status of render {render_id}")
        return self.parse_status(response)

    def cancel_operation(self, render_id: str) -> Operation[RenderStatus]:
        """Cancel a render (a terminal render is returned unchanged)."""
        response = yield self.build_cancel(render_id)
        self.raise_for_error(response, f"cancel render {render_id}")
        return self.parse_status(response)

    def health_operation(self) -> Operation[None]:
        """Ask the service whether it is up (``GET /healthz``); raises what a wrong URL or token gives."""
        response = yield self.build("GET", "health")
        self.raise_for_error(response, "health")

    def download_target(
        self, render_id_or_url: str, allow_hosts: Sequence[str]
    ) -> tuple[str, dict[str, str], list[str]]:
        """Where the video is fetched from: ``(url, headers, allowed hosts)``.

        A render id means the service's own video route; an absolute ``video_url`` is fetched as given. The token
        goes only to the service's own origin, never to another host (a CDN or bucket URL), and the service's own
        host is trusted as configured; any other host must pass the fetch path's address rules.
        """
        request = self.build_download(render_id_or_url)
        headers = {"Authorization": request.headers["authorization"]} if "authorization" in request.headers else {}
        return str(request.url), headers, [*allow_hosts, urlsplit(self.base_url).hostname or ""]


class VideoClient(VideoContract):
    """Synchronous client (RQ workers, scripts); a context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        routes: VideoRoutes | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, token=token, timeout_s=timeout_s, retry=retry, routes=routes)
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=timeout_s)

    def _run(self, operation: Operation[T], policy: RetryPolicy | None = None) -> T:
        return drive(operation, self.http, policy or self.retry, self.transport_error)

    def submit(self, request: RenderRequest) -> RenderStatus:
        """Submit a render (a paid call: retried only when it surely never reached the service)."""
        return self._run(self.submit_operation(request), self.retry.for_submit())

    def status(self, render_id: str) -> RenderStatus:
        """A render's current status."""
        return self._run(self.status_operation(render_id))

    def cancel(self, render_id: str) -> RenderStatus:
        """Cancel a render."""
        return self._run(self.cancel_operation(render_id))

    def health(self) -> None:
        """Raise unless the service answers its health route."""
        self._run(self.health_operation())

    def wait(self, render_id: str, *, timeout_s: float = 600.0, interval_s: float = 1.0) -> RenderStatus:
        """Poll until the render is terminal; :class:`DeadlineExceeded` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not (status := self.status(render_id)).status.terminal:
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"render {render_id} not finished after {timeout_s} s")
            time.sleep(interval_s)
        return status

    def download(
        self,
        render_id_or_url: str,
        dest: BinaryIO,
        *,
        max_bytes: int = 2_000_000_000,
        allow_hosts: Sequence[str] = (),
    ) -> int:
        """Stream the video (by render id or ``video_url``) into ``dest`` through the one fetch path
        (:mod:`strangler_bridge.fetch`: no redirects, size cap, checked and pinned address); returns its size."""
        url, headers, allowed = self.download_target(render_id_or_url, allow_hosts)
        return fetch_into(
            self.http, url, dest, allow_hosts=allowed, max_bytes=max_bytes, headers=headers, retry=self.retry
        )

    def close(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            self.http.close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncVideoClient(VideoContract):
    """Asynchronous client (inside the API or an async worker); an async context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        routes: VideoRoutes | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, token=token, timeout_s=timeout_s, retry=retry, routes=routes)
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout_s)

    async def _run(self, operation: Operation[T], policy: RetryPolicy | None = None) -> T:
        return await adrive(operation, self.http, policy or self.retry, self.transport_error)

    async def submit(self, request: RenderRequest) -> RenderStatus:
        """Submit a render (a paid call: retried only when it surely never reached the service)."""
        return await self._run(self.submit_operation(request), self.retry.for_submit())

    async def status(self, render_id: str) -> RenderStatus:
        """A render's current status."""
        return await self._run(self.status_operation(render_id))

    async def cancel(self, render_id: str) -> RenderStatus:
        """Cancel a render."""
        return await self._run(self.cancel_operation(render_id))

    async def health(self) -> None:
        """Raise unless the service answers its health route."""
        await self._run(self.health_operation())

    async def wait(self, render_id: str, *, timeout_s: float = 600.0, interval_s: float = 1.0) -> RenderStatus:
        """Poll until the render is terminal; :class:`DeadlineExceeded` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not (status := await self.status(render_id)).status.terminal:
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"render {render_id} not finished after {timeout_s} s")
            await asyncio.sleep(interval_s)
        return status

    async def download(
        self,
        render_id_or_url: str,
        dest: BinaryIO,
        *,
        max_bytes: int = 2_000_000_000,
        allow_hosts: Sequence[str] = (),
    ) -> int:
        """See :meth:`VideoClient.download`."""
        url, headers, allowed = self.download_target(render_id_or_url, allow_hosts)
        return await afetch_into(
            self.http, url, dest, allow_hosts=allowed, max_bytes=max_bytes, headers=headers, retry=self.retry
        )

    async def close(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            await self.http.aclose()

    aclose = close

    async def __aenter__(self: A) -> A:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
