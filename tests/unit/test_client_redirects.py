"""The service client follows its own service's redirect to the object store once, and never sends it its token."""

from __future__ import annotations

import io

import httpx
import pytest

from flask_plugin import BridgeClient
from flask_plugin.testing import FAST_RETRIES
from strangler_bridge.errors import ServiceError

pytestmark = pytest.mark.unit

STORE = "http://bucket.store.test/art/vid/v/video.mp4?X-Amz-Signature=abc"


def client(routes: dict[str, httpx.Response], seen: list[httpx.Request]) -> BridgeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return routes[str(request.url)]

    return BridgeClient("http://service.test", "tok", policy=FAST_RETRIES, transport=httpx.MockTransport(handler))


def test_a_redirect_from_the_service_is_followed_without_the_token() -> None:
    seen: list[httpx.Request] = []
    routes = {
        "http://service.test/jobs/j/video": httpx.Response(307, headers={"Location": STORE}),
        STORE: httpx.Response(200, content=b"mp4-bytes"),
    }
    sink = io.BytesIO()
    assert client(routes, seen).download("/jobs/j/video", sink) == 9
    assert sink.getvalue() == b"mp4-bytes"
    assert seen[0].headers["Authorization"] == "Bearer tok"
    assert "Authorization" not in seen[1].headers


def test_a_second_redirect_is_refused() -> None:
    seen: list[httpx.Request] = []
    routes = {
        "http://service.test/jobs/j/video": httpx.Response(307, headers={"Location": STORE}),
        STORE: httpx.Response(302, headers={"Location": "http://elsewhere.test/x"}),
    }
    with pytest.raises(ServiceError, match="redirected twice"):
        client(routes, seen).download("/jobs/j/video", io.BytesIO())
    assert len(seen) == 2


def test_a_redirect_from_another_origin_is_not_followed() -> None:
    seen: list[httpx.Request] = []
    routes = {STORE: httpx.Response(307, headers={"Location": "http://elsewhere.test/x"})}
    with pytest.raises(ServiceError, match="not followed"):
        client(routes, seen).download(STORE, io.BytesIO())
    assert [str(r.url) for r in seen] == [STORE]
