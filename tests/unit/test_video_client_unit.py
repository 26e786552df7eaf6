"""The video client's contract, error mapping and adaptation hooks, against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import pytest

from strangler_bridge import fetch
from strangler_bridge.errors import (
    ConfigError,
    DeadlineExceeded,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderPaymentRequired,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.http import RetryPolicy
from strangler_bridge.providers.video.client import (
    AsyncVideoClient,
    RenderRequest,
    RenderSegment,
    RenderState,
    RenderStatus,
    VideoClient,
    VideoContract,
    VideoRoutes,
)
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.unit

BASE = "http://video.test/api"
FAST = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.002, jitter_s=0.0)
SEGMENT = {"index": 0, "start_s": 0.0, "end_s": 1.5, "audio_url": "http://a/0.wav", "image_url": "http://a/0.png"}


@pytest.fixture(autouse=True)
def _test_names_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetch path looks names up before connecting: here every ``*.test`` name is loopback (no DNS)."""
    monkeypatch.setattr(fetch, "resolve", lambda host, port: ["127.0.0.1"])


def render_request(render_id: str = "r-1") -> RenderRequest:
    return RenderRequest(render_id=render_id, segments=[RenderSegment.model_validate(SEGMENT)])


def status_body(render_id: str = "r-1", state: str = "queued", **extra: Any) -> dict[str, Any]:
    return {"id": render_id, "status": state, "progress": 0.0, **extra}


class Recorder:
    """A MockTransport handler answering from a script and keeping every request."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(*answers: Any, **kwargs: Any) -> tuple[VideoClient, Recorder]:
    recorder = Recorder(*answers)
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    return VideoClient(BASE, retry=FAST, http=http, **kwargs), recorder


def test_submit_posts_the_default_contract_with_the_token() -> None:
    video, seen = client(httpx.Response(202, json=status_body()), token="tok")
    status = video.submit(render_request())
    assert status == RenderStatus(id="r-1", status=RenderState.QUEUED)
    sent = seen.requests[0]
    assert (sent.method, str(sent.url)) == ("POST", f"{BASE}/renders")
    assert sent.headers["authorization"] == "Bearer tok"
    body = json.loads(sent.content)
    assert body["render_id"] == "r-1" and body["segments"][0]["audio_url"] == "http://a/0.wav"
    assert body["options"] == {"width": 1280, "height": 720, "fps": 25, "format": "mp4"}
    assert body["callback_url"] is None and body["metadata"] == {}


def test_status_cancel_and_video_paths_quote_the_id() -> None:
    video, seen = client(httpx.Response(200, json=status_body("a b/c", "cancelled")))
    video.status("a b/c")
    video.cancel("a b/c")
    assert [(r.method, r.url.raw_path) for r in seen.requests] == [
        ("GET", b"/api/renders/a%20b%2Fc"),
        ("POST", b"/api/renders/a%20b%2Fc/cancel"),
    ]
    assert "authorization" not in seen.requests[0].headers


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (402, ProviderPaymentRequired),
        (404, ProviderNotFound),
        (409, ProviderRejected),
        (422, ProviderRejected),
        (429, ProviderRateLimited),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
    ],
)
def test_error_statuses_map_to_the_error_tree(code: int, error: type[ProviderError]) -> None:
    video, seen = client(httpx.Response(code, json={"error": {"code": "x", "message": "told you so"}}))
    with pytest.raises(error) as caught:
        video.status("r-1")
    assert caught.value.provider == "video" and caught.value.status_code == code
    assert "told you so" in caught.value.message
    assert len(seen.requests) == (FAST.attempts if code in (429, 500, 503) else 1)


@pytest.mark.parametrize(
    ("body", "message"),
    [({"message": "flat"}, "flat"), ({"error": "plain"}, "plain"), ({"detail": "fastapi"}, "fastapi")],
)
def test_error_messages_are_read_from_common_shapes(body: dict[str, Any], message: str) -> None:
    video, _ = client(httpx.Response(400, json=body))
    with pytest.raises(ProviderRejected, match=message):
        video.status("r-1")


def test_transient_failures_are_retried() -> None:
    video, seen = client(httpx.Response(503), httpx.Response(200, json=status_body(state="rendering")))
    assert video.status("r-1").status is RenderState.RENDERING
    assert len(seen.requests) == 2


def test_a_submit_that_may_have_been_sent_is_not_resent_but_a_read_is() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    calls: list[str] = []
    http = httpx.Client(transport=httpx.MockTransport(lambda r: calls.append(r.method) or timeout(r)))
    video = VideoClient(BASE, retry=FAST, http=http)
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        video.submit(render_request())
    assert calls == ["POST"]
    with pytest.raises(ProviderUnavailable):
        video.status("r-1")
    assert calls == ["POST"] + ["GET"] * FAST.attempts


def test_malformed_status_bodies_are_provider_errors() -> None:
    video, _ = client(httpx.Response(200, text="<html>"), httpx.Response(200, json={"id": "x", "status": "weird"}))
    with pytest.raises(ProviderError, match="not JSON"):
        video.status("x")
    with pytest.raises(ProviderError, match="unexpected render status"):
        video.status("x")


def test_status_tolerates_extra_fields() -> None:
    parsed = RenderStatus.parse({**status_body(state="completed"), "worker": "gpu-3", "progress": 1})
    assert parsed.status.terminal and parsed.progress == 1.0


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="unique"):
        RenderRequest(render_id="r", segments=[RenderSegment.model_validate(SEGMENT)] * 2)
    with pytest.raises(ValueError, match="end_s"):
        RenderSegment.model_validate({**SEGMENT, "start_s": 1.0, "end_s": 0.5})
    with pytest.raises(ValueError):
        RenderRequest(render_id="../etc", segments=[RenderSegment.model_validate(SEGMENT)])
    assert [s.terminal for s in RenderState] == [False, False, True, True, True]


def test_wait_polls_until_terminal_or_deadline() -> None:
    video, seen = client(
        httpx.Response(200, json=status_body(state="queued")),
        httpx.Response(200, json=status_body(state="completed", video_url="http://v")),
    )
    assert video.wait("r-1", interval_s=0).video_url == "http://v"
    assert len(seen.requests) == 2
    stuck, _ = client(httpx.Response(200, json=status_body(state="rendering")))
    with pytest.raises(DeadlineExceeded):
        stuck.wait("r-1", timeout_s=0, interval_s=0)


def test_download_streams_and_keeps_the_token_at_home() -> None:
    video, seen = client(httpx.Response(200, content=b"x" * 10_000), token="tok")
    out = io.BytesIO()
    assert video.download("r-1", out) == 10_000 and out.getvalue() == b"x" * 10_000
    video.download(f"{BASE}/renders/r-1/video", io.BytesIO())
    with pytest.raises(ProviderRejected, match=r"non-public address of cdn\.test"):
        video.download("https://cdn.test/r-1.mp4", io.BytesIO())  # another host passes the address rule, or not
    video.download("https://cdn.test/r-1.mp4", io.BytesIO(), allow_hosts=["cdn.test"])
    # Sent to the address that was checked, under the name of the URL (Host header, and TLS SNI for https).
    assert [(r.url.host, r.headers["host"], r.url.path) for r in seen.requests] == [
        ("127.0.0.1", "video.test", "/api/renders/r-1/video"),
        ("127.0.0.1", "video.test", "/api/renders/r-1/video"),
        ("127.0.0.1", "cdn.test", "/r-1.mp4"),
    ]
    assert seen.requests[2].extensions["sni_hostname"] == "cdn.test"
    assert [r.headers.get("authorization") for r in seen.requests] == ["Bearer tok", "Bearer tok", None]


def test_download_refuses_redirects_and_empty_bodies() -> None:
    moved, seen = client(httpx.Response(302, headers={"Location": "http://127.0.0.1/secret"}))
    with pytest.raises(ProviderRejected, match="redirect"):
        moved.download("r-1", io.BytesIO())
    assert len(seen.requests) == 1  # not followed
    empty, _ = client(httpx.Response(200, content=b""))
    with pytest.raises(ProviderRejected, match="empty"):
        empty.download("r-1", io.BytesIO())


def test_download_refuses_oversized_videos_and_maps_errors() -> None:
    video, _ = client(httpx.Response(200, content=b"x" * 500))
    with pytest.raises(ProviderRejected, match="larger than 100"):
        video.download("r-1", io.BytesIO(), max_bytes=100)
    not_ready, seen = client(httpx.Response(409, json={"error": {"message": "still rendering"}}))
    with pytest.raises(ProviderRejected, match=r"409: .*still rendering"):
        not_ready.download("r-1", io.BytesIO())
    flaky, seen = client(httpx.Response(503), httpx.Response(200, content=b"ok"))
    out = io.BytesIO()
    assert flaky.download("r-1", out) == 2 and len(seen.requests) == 2


def test_from_settings_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError, match="STRANGLER_VIDEO_URL"):
        VideoClient.from_settings(Settings.load(video_url=None))
    made = VideoClient.from_settings(Settings.load(video_url="http://v.test/", http_timeout_s=3.5), token="t")
    assert (made.base_url, made.timeout_s, made.token) == ("http://v.test", 3.5, "t")
    made.close()


def test_routes_are_configurable_per_instance() -> None:
    routes = VideoRoutes(submit="/v2/jobs", status="/v2/jobs/{id}", cancel="/v2/jobs/{id}", video="/v2/files/{id}")
    video, seen = client(httpx.Response(200, json=status_body()), routes=routes)
    video.submit(render_request())
    video.status("r-1")
    video.download("r-1", io.BytesIO())
    assert [r.url.path for r in seen.requests] == ["/api/v2/jobs", "/api/v2/jobs/r-1", "/api/v2/files/r-1"]
    assert VideoClient.routes == VideoRoutes()


class ExpressContract(VideoContract):
    """An adapter for a made-up Express API, written once for both clients."""

    routes = VideoRoutes(submit="/api/render", status="/api/render/{id}")

    def submit_body(self, request: RenderRequest) -> dict[str, Any]:
        return {"jobId": request.render_id, "scenes": [s.image_url for s in request.segments]}

    def parse_status(self, response: httpx.Response) -> RenderStatus:
        data = response.json()
        state = {"waiting": "queued", "busy": "rendering", "done": "completed"}[data["state"]]
        return RenderStatus(id=data["jobId"], status=RenderState(state), video_url=data.get("url"))


class ExpressVideo(ExpressContract, VideoClient):
    pass


class AsyncExpressVideo(ExpressContract, AsyncVideoClient):
    pass


def express_handler(seen: list[httpx.Request]) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"jobId": "r-1", "state": "done", "url": "http://cdn/r-1.mp4"})

    return handle


def test_one_subclass_adapts_both_sync_and_async_clients() -> None:
    seen: list[httpx.Request] = []
    sync = ExpressVideo(BASE, http=httpx.Client(transport=httpx.MockTransport(express_handler(seen))))
    assert sync.submit(render_request()).video_url == "http://cdn/r-1.mp4"

    async def run_async() -> RenderStatus:
        transport = httpx.MockTransport(express_handler(seen))
        async with AsyncExpressVideo(BASE, http=httpx.AsyncClient(transport=transport)) as video:
            return await video.status("r-1")

    assert asyncio.run(run_async()).status is RenderState.COMPLETED
    assert [r.url.path for r in seen] == ["/api/api/render", "/api/api/render/r-1"]
    assert json.loads(seen[0].content) == {"jobId": "r-1", "scenes": ["http://a/0.png"]}


def test_async_client_maps_errors_and_downloads() -> None:
    answers = iter([httpx.Response(404, json={"message": "gone"}), httpx.Response(200, content=b"abc")])

    async def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    async def main() -> int:
        async with AsyncVideoClient(
            BASE, retry=FAST, http=httpx.AsyncClient(transport=httpx.MockTransport(handler))
        ) as v:
            with pytest.raises(ProviderNotFound, match="gone"):
                await v.status("r-1")
            return await v.download("r-1", io.BytesIO())

    assert asyncio.run(main()) == 3
