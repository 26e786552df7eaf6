"""The video client against the video simulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.errors import (
    ProviderAuthError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.http import RetryPolicy
from strangler_bridge.providers.video.client import (
    AsyncVideoClient,
    RenderOptions,
    RenderRequest,
    RenderSegment,
    RenderState,
    RenderStatus,
    VideoClient,
)
from strangler_bridge.simulators.video import PLACEHOLDER_HEADER, VideoSimConfig, create_app, read_placeholder
from strangler_bridge.simulators.video.render import find_ffmpeg
from tests.e2e.test_video_simulator import Assets, Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02, jitter_s=0.0)


@pytest.fixture(scope="module")
def assets() -> Iterator[Assets]:
    served = Assets()
    with served.server:
        yield served


@pytest.fixture
def sim() -> Iterator[Any]:
    """``sim(**knobs)`` -> the base URL of a fresh simulator (placeholder output unless told otherwise)."""
    servers: list[ThreadedServer] = []

    def start(**knobs: Any) -> str:
        knobs.setdefault("force_placeholder", True)
        server = ThreadedServer(create_app(VideoSimConfig(**knobs))).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


def request(assets: Assets, render_id: str, count: int = 3, **extra: Any) -> RenderRequest:
    segments = [RenderSegment.model_validate(s) for s in assets.segments(count)]
    return RenderRequest(render_id=render_id, segments=segments, options=RenderOptions(width=320, height=240), **extra)


def counters(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/_sim/counters").json()


def test_submit_wait_and_download(sim: Any, assets: Assets) -> None:
    base = sim()
    with VideoClient(base, retry=FAST) as client:
        first = client.submit(request(assets, "c-1"))
        assert first.id == "c-1" and first.status in (RenderState.QUEUED, RenderState.RENDERING)
        done = client.wait("c-1", timeout_s=20, interval_s=0.02)
        assert done.status is RenderState.COMPLETED and done.placeholder
        assert done.duration_s == pytest.approx(3.25)
        by_id, by_url = io.BytesIO(), io.BytesIO()
        size = client.download("c-1", by_id)
        assert size == len(by_id.getvalue()) > 0
        assert client.download(done.video_url or "", by_url) == size
    assert by_id.getvalue().startswith(PLACEHOLDER_HEADER)
    assert read_placeholder(by_url.getvalue())["render_id"] == "c-1"  # type: ignore[index]
    assert counters(base)["downloads"] == 2


def test_async_client_does_the_same(sim: Any, assets: Assets) -> None:
    base = sim()

    async def main() -> tuple[RenderStatus, RenderStatus, int]:
        async with AsyncVideoClient(base, retry=FAST) as client:
            await client.submit(request(assets, "a-1"))
            again = await client.submit(request(assets, "a-1"))
            done = await client.wait("a-1", timeout_s=20, interval_s=0.02)
            return again, done, await client.download("a-1", io.BytesIO())

    again, done, size = asyncio.run(main())
    assert again.id == "a-1" and done.status is RenderState.COMPLETED and size > 0
    assert counters(base)["renders_executed"] == {"a-1": 1}


def test_resubmitting_the_same_render_id_is_safe(sim: Any, assets: Assets) -> None:
    base = sim(latency_s=0.2)
    with VideoClient(base, retry=FAST) as client:
        client.submit(request(assets, "idem-1"))
        assert client.submit(request(assets, "idem-1")).id == "idem-1"
        client.wait("idem-1", timeout_s=20, interval_s=0.02)
        assert client.submit(request(assets, "idem-1")).status is RenderState.COMPLETED
    seen = counters(base)
    assert seen["renders_executed"] == {"idem-1": 1} and seen["submits_replayed"] == 2


def test_submit_that_timed_out_is_recovered_by_resubmitting(sim: Any, assets: Assets) -> None:
    base = sim(response_delay_s=0.5)
    with VideoClient(base, retry=FAST, timeout_s=0.1) as client:
        with pytest.raises(ProviderUnavailable) as caught:
            client.submit(request(assets, "lost-answer"))
        assert caught.value.provider == "video"
        httpx.patch(f"{base}/_sim/config", json={"response_delay_s": 0})
        wait_for(lambda: counters(base)["renders_submitted"] == 1, timeout=5, what="the unanswered submit to land")
        assert client.submit(request(assets, "lost-answer")).id == "lost-answer"
        assert client.wait("lost-answer", timeout_s=20, interval_s=0.02).status is RenderState.COMPLETED
    seen = counters(base)
    assert seen["submits_total"] == 2 and seen["renders_executed"] == {"lost-answer": 1}


def test_cancel(sim: Any, assets: Assets) -> None:
    base = sim(latency_s=30)
    with VideoClient(base, retry=FAST) as client:
        client.submit(request(assets, "cx-1"))
        assert client.cancel("cx-1").status is RenderState.CANCELLED
        assert client.status("cx-1").status is RenderState.CANCELLED
        with pytest.raises(ProviderRejected) as caught:
            client.download("cx-1", io.BytesIO())
        assert caught.value.status_code == 409 and "cancelled" in caught.value.message


def test_callback_reaches_a_receiver(sim: Any, assets: Assets) -> None:
    hooks = Receiver()
    with hooks.server:
        base = sim()
        with VideoClient(base, retry=FAST) as client:
            client.submit(request(assets, "cb-1", callback_url=hooks.url))
            wait_for(lambda: hooks.bodies, timeout=10, what="the callback")
            assert RenderStatus.parse(hooks.bodies[0]) == client.status("cb-1")
    assert RenderStatus.parse(hooks.bodies[0]).status is RenderState.COMPLETED


@pytest.mark.skipif(find_ffmpeg() is None, reason="needs the ffmpeg of imageio-ffmpeg")
def test_download_streams_a_real_mp4_with_a_size_limit(sim: Any, assets: Assets) -> None:
    base = sim(force_placeholder=False)
    with VideoClient(base, retry=FAST) as client:
        client.submit(request(assets, "mp4-1"))
        done = client.wait("mp4-1", timeout_s=30, interval_s=0.05)
        assert done.status is RenderState.COMPLETED and not done.placeholder
        out = io.BytesIO()
        assert client.download("mp4-1", out) > 1000
        assert out.getvalue()[4:8] == b"ftyp"
        with pytest.raises(ProviderRejected, match="larger than 100 bytes"):
            client.download("mp4-1", io.BytesIO(), max_bytes=100)


# --- errors ------------------------------------------------------------------------------------------


def test_auth_errors(sim: Any, assets: Assets) -> None:
    base = sim(token="right")
    with VideoClient(base, retry=FAST) as anonymous, pytest.raises(ProviderAuthError) as missing:
        anonymous.submit(request(assets, "au-1"))
    assert missing.value.status_code == 401
    with VideoClient(base, token="wrong", retry=FAST) as wrong, pytest.raises(ProviderAuthError) as refused:
        wrong.status("au-1")
    assert refused.value.status_code == 403
    with VideoClient(base, token="right", retry=FAST) as good:
        assert good.submit(request(assets, "au-1")).id == "au-1"


def test_not_found_and_rejected(sim: Any, assets: Assets) -> None:
    base = sim(max_segments=2)
    with VideoClient(base, retry=FAST) as client:
        with pytest.raises(ProviderNotFound) as unknown:
            client.status("nobody")
        assert unknown.value.status_code == 404 and "nobody" in unknown.value.message
        with pytest.raises(ProviderRejected) as rejected:
            client.submit(request(assets, "rj-1", count=3))
        assert rejected.value.status_code == 422 and "at most 2 segments" in rejected.value.message
    assert counters(base)["submits_total"] == 0


def test_injected_503s_are_retried(sim: Any, assets: Assets) -> None:
    base = sim()
    httpx.patch(f"{base}/_sim/config", json={"inject_next": 2, "inject_status": 503})
    with VideoClient(base, retry=FAST) as client:
        assert client.submit(request(assets, "re-1")).id == "re-1"
    seen = counters(base)
    assert seen["requests_injected"] == 2 and seen["renders_submitted"] == 1


@pytest.mark.parametrize(("status", "error"), [(503, ProviderUnavailable), (429, ProviderRateLimited)])
def test_persistent_failures_raise_after_the_retries(sim: Any, status: int, error: type[Exception]) -> None:
    base = sim()
    httpx.patch(f"{base}/_sim/config", json={"inject_next": 10, "inject_status": status})
    with VideoClient(base, retry=FAST) as client, pytest.raises(error) as caught:
        client.status("any")
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert counters(base)["requests_injected"] == FAST.attempts


def test_down_service_is_unavailable(sim: Any) -> None:
    base = sim(down=True)
    with VideoClient(base, retry=FAST) as client, pytest.raises(ProviderUnavailable, match="simulated down"):
        client.cancel("any")


def test_unreachable_service_is_unavailable() -> None:
    with VideoClient(f"http://127.0.0.1:{free_port()}", retry=FAST) as client, pytest.raises(ProviderUnavailable):
        client.status("any")
