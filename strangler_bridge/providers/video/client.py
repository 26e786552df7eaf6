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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, Self
from urllib.parse import quote, urljoin, urlsplit

import httpx

from strangler_bridge.errors import DeadlineExceeded, ProviderError
from strangler_bridge.fetch import Download
from strangler_bridge.http import Operation, RetryPolicy
from strangler_bridge.providers.base import AsyncRunner, Call, Flow, H, ProviderBase, Sleep, SyncRunner, provider_method
from strangler_bridge.providers.video.models import (
    PROVIDER,
    RENDER_ID_PATTERN,
    RenderOptions,
    RenderRequest,
    RenderSegment,
    RenderState,
    RenderStatus,
)
from strangler_bridge.settings import Settings

__all__ = [
    "PROVIDER",
    "RENDER_ID_PATTERN",
    "AsyncVideoClient",
    "RenderOptions",
    "RenderRequest",
    "RenderSegment",
    "RenderState",
    "RenderStatus",
    "VideoClient",
    "VideoContract",
    "VideoRoutes",
]

RouteName = Literal["submit", "status", "video", "cancel", "health"]


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


class VideoContract(ProviderBase[H]):
    """The contract as overridable hooks plus sans-I/O operations, shared by the sync and async clients."""

    provider = PROVIDER
    label = "video service"
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
        http: H | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        if routes is not None:
            self.routes = routes
        super().__init__(retry=retry, http=http, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
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

    def raise_for_error(self, response: httpx.Response, what: str) -> None:
        """Raise the package's error for a non-2xx response (the retry policy has already run)."""
        if response.status_code >= 400:
            raise self.status_error(response, what)

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

    @provider_method
    def submit(self, request: RenderRequest) -> Call[RenderStatus]:
        """Submit a render (a paid call: retried only when it surely never reached the service)."""
        return self.call(f"submit render {request.render_id}", self.submit_operation(request), submit=True)

    @provider_method
    def status(self, render_id: str) -> Call[RenderStatus]:
        """A render's current status."""
        return self._status_call(render_id)

    @provider_method
    def cancel(self, render_id: str) -> Call[RenderStatus]:
        """Cancel a render."""
        return self.call(f"cancel render {render_id}", self.cancel_operation(render_id))

    @provider_method
    def health(self) -> Call[None]:
        """Raise unless the service answers its health route."""
        return self.call("health", self.health_operation())

    @provider_method
    def wait(self, render_id: str, *, timeout_s: float = 600.0, interval_s: float = 1.0) -> Flow[RenderStatus]:
        """Poll until the render is terminal; :class:`DeadlineExceeded` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            status: RenderStatus = yield self._status_call(render_id)
            if status.status.terminal:
                return status
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"render {render_id} not finished after {timeout_s} s")
            yield Sleep(interval_s)

    def _status_call(self, render_id: str) -> Call[RenderStatus]:
        return self.call(f"status of render {render_id}", self.status_operation(render_id))

    def download_of(self, render_id_or_url: str, max_bytes: int, allow_hosts: Sequence[str]) -> Download:
        """The video (by render id or ``video_url``) as a download under the one fetch path's rules
        (:mod:`strangler_bridge.fetch`: no redirects, size cap, checked and pinned address).

        A render id means the service's own video route; an absolute ``video_url`` is fetched as given. The token
        goes only to the service's own origin, never to another host (a CDN or bucket URL), and the service's own
        host is trusted as configured; any other host must pass the fetch path's address rules.
        """
        request = self.build_download(render_id_or_url)
        headers = {"Authorization": request.headers["authorization"]} if "authorization" in request.headers else {}
        allowed = [*allow_hosts, urlsplit(self.base_url).hostname or ""]
        return Download(str(request.url), allowed, max_bytes, headers=headers, retry=self.retry_policy)


class VideoClient(SyncRunner, VideoContract[httpx.Client]):
    """Synchronous client (RQ workers, scripts); a context manager."""

    def download(
        self, render_id_or_url: str, dest: BinaryIO, *, max_bytes: int = 2_000_000_000, allow_hosts: Sequence[str] = ()
    ) -> int:
        """Stream the video into ``dest`` (see :meth:`VideoContract.download_of`); returns its size."""
        return self.download_of(render_id_or_url, max_bytes, allow_hosts).into(self.http, dest)


class AsyncVideoClient(AsyncRunner, VideoContract[httpx.AsyncClient]):
    """Asynchronous client (inside the API or an async worker); an async context manager."""

    async def download(
        self, render_id_or_url: str, dest: BinaryIO, *, max_bytes: int = 2_000_000_000, allow_hosts: Sequence[str] = ()
    ) -> int:
        """See :meth:`VideoClient.download`."""
        return await self.download_of(render_id_or_url, max_bytes, allow_hosts).ainto(self.http, dest)
