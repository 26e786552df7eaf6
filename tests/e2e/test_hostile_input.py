"""Hostile input against the real API over HTTP: fuzzing from the OpenAPI document, oversized bodies, bad webhook
tokens, path tricks on artifact routes, and provider URLs that point where they must not.

The API runs in this process (uvicorn in a thread) on the test's Redis prefix; no worker runs unless a test
starts one, so fuzzed batches are stored but never sent to a provider.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.responses import Response
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from fastapi_app import create_app
from fastapi_app.api.artifact_links import PURPOSE as ARTIFACT
from fastapi_app.renders.video_work import PURPOSE as VIDEO
from fastapi_app.runtime import Runtime
from fastapi_app.tts import webhook_inbox
from fastapi_app.tts.runpod_work import PURPOSE as TTS
from strangler_bridge.audio import tone_wav
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.errors import ProviderError, ProviderRejected
from strangler_bridge.fetch import check_url, fetch_bytes
from strangler_bridge.settings import Settings
from strangler_bridge.signing import sign
from tests.conftest import TEST_TOKEN
from tests.support.stack import follow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MAX_BODY = 64 * 1024
MAX_WEBHOOK = 256 * 1024
SECRET = "test-webhook-secret"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


@dataclass
class Api:
    """The running API, a batch to aim webhooks at, and signed tokens for it."""

    url: str
    settings: Settings
    batch_id: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=20)

    def token(self, purpose: str = TTS, parts: list[str] | None = None, ttl_s: int = 600, **kw: Any) -> str:
        return sign(SECRET, purpose, parts if parts is not None else [self.batch_id, "0", "1"], ttl_s, **kw)

    def apply_webhooks(self) -> int:
        """Apply the queued webhooks, as a worker's inbox thread would (no worker runs here)."""
        rt = Runtime.build(self.settings)
        try:
            webhook_inbox.ensure_group(rt)
            return webhook_inbox.apply_new(rt, "test")
        finally:
            rt.close()

    def batch(self) -> dict[str, Any]:
        with self.client() as client:
            body: dict[str, Any] = client.get(f"/tts/batch/{self.batch_id}").raise_for_status().json()
            return body


@pytest.fixture
def api(settings: Settings, redis_client: object) -> Iterator[Api]:
    port = free_port()
    configured = settings.model_copy(
        update={
            "public_url": f"http://127.0.0.1:{port}",
            "max_body_bytes": MAX_BODY,
            "max_webhook_bytes": MAX_WEBHOOK,
            "tts_group_size": 2,
        }
    )
    with ThreadedServer(create_app(configured), port=port) as server:
        with httpx.Client(base_url=server.url, headers=AUTH) as client:
            created = client.post("/tts/batch", json={"chunks": [{"text": "One."}, {"text": "Two."}, {"text": "3."}]})
            created.raise_for_status()
        yield Api(server.url, configured, created.json()["id"])


def _wav_job(indexes: list[int], status: str = "COMPLETED") -> dict[str, Any]:
    audio = base64.b64encode(tone_wav(0.2, sample_rate=8000)).decode()
    chunks = [{"index": i, "audio_base64": audio, "duration_s": 0.2} for i in indexes]
    return {"id": "rp-job-1", "status": status, "output": {"chunks": chunks}}


# --- fuzzing every route from the OpenAPI document ------------------------------------------------------------

FUZZ_EXAMPLES = 8  # per operation and mode: about 20 operations x 2 modes, a few seconds in all
CHECKS = [not_a_server_error, response_schema_conformance]


def _aim_webhook(case: Any, api: Api) -> None:
    """Give some webhook calls a valid token, so the fuzzer also reaches the body parsing behind it."""
    webhook = case.path in ("/tts/callback", "/video/render/callback")
    if webhook and case.query and str(case.query.get("token", "")).startswith(("t", "0")):
        purpose, parts = (TTS, None) if case.path == "/tts/callback" else (VIDEO, [api.batch_id])
        case.query["token"] = api.token(purpose, parts)


def _fuzz(api: Api, operation: Any, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        _aim_webhook(case, api)
        case.call_and_validate(base_url=api.url, headers=AUTH, checks=CHECKS, timeout=20)

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, operation.label  # nothing in this operation can be made invalid


def test_fuzzed_requests_never_get_a_5xx_or_an_off_schema_answer(api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(api, operation, mode)


# --- body size limits -----------------------------------------------------------------------------------------


def _raw_request(url: str, head: str, body_chunks: Iterator[bytes] | None = None) -> tuple[str, int]:
    """Send a request by hand; returns (the response's first bytes, body bytes sent before the answer came)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        sent = 0
        for chunk in body_chunks or iter(()):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed while we were still sending
                break
            sent += len(chunk)
        sock.settimeout(10)
        return sock.recv(65536).decode(errors="replace"), sent


def test_a_declared_oversized_body_is_rejected_with_413_before_it_is_sent(api: Api) -> None:
    head = (
        "POST /tts/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TEST_TOKEN}\r\nContent-Length: {50 * MAX_BODY}\r\n\r\n"
    )
    answer, _ = _raw_request(api.url, head)  # not one byte of the body is sent: the answer cannot wait for it
    assert answer.startswith("HTTP/1.1 413"), answer
    assert json.loads(answer.split("\r\n\r\n", 1)[1])["error"]["code"] == "payload_too_large"


def test_a_streamed_oversized_body_is_cut_off_with_413(api: Api) -> None:
    head = (
        "POST /tts/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TEST_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 16384
    total = 400 * len(piece)  # 6.5 MB offered; the server must answer long before it has all of it

    def chunks() -> Iterator[bytes]:
        for _ in range(total // len(piece)):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    answer, sent = _raw_request(api.url, head, chunks())
    assert answer.startswith("HTTP/1.1 413"), answer
    assert sent < total


def test_webhooks_have_their_own_body_limit(api: Api) -> None:
    with api.client() as client:
        over = client.post("/tts/callback", params={"token": api.token()}, content=b" " * (MAX_WEBHOOK + 1))
        under = client.post("/tts/callback", params={"token": api.token()}, json=_wav_job([0, 1]))
        normal_route = client.post("/tts/batch", content=b" " * (MAX_BODY + 1))
    assert over.status_code == 413 and over.json()["error"]["code"] == "payload_too_large"
    assert under.status_code == 200, under.text  # bigger than MAX_BODY is fine on a webhook
    assert normal_route.status_code == 413


# --- free-form JSON limits ---------------------------------------------------------------------------------------

CREATE_BODIES: dict[str, dict[str, Any]] = {
    "/tts/batch": {"chunks": [{"text": "One."}]},
    "/imagegen/batch": {"images": [{"prompt": "a lighthouse"}], "width": 128, "height": 128},
    "/jobs": {"chunks": [{"text": "One."}]},
    "/video/render": {
        "segments": [
            {
                "index": 0,
                "start_s": 0,
                "end_s": 1,
                "audio_url": "http://a.test/0.wav",
                "image_url": "http://a.test/0.png",
            }
        ]
    },
}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", list(CREATE_BODIES))
@pytest.mark.parametrize("depth", [33, 400, 5000])
def test_deeply_nested_metadata_is_a_422_naming_the_field_and_stores_nothing(api: Api, path: str, depth: int) -> None:
    body = json.dumps(CREATE_BODIES[path])[:-1] + f', "metadata": {{"x": {_nested(depth)}}}}}'
    key = f"deep-{path.strip('/').replace('/', '-')}-{depth}"
    with api.client() as client:
        answer = client.post(path, content=body, headers={"Content-Type": "application/json", "Idempotency-Key": key})
        # Deeper than Python's JSON parser goes, the body is unreadable (400); otherwise the field is named.
        assert answer.status_code == (400 if depth > 1000 else 422), answer.text
        assert answer.json()["error"].get("field") == (None if depth > 1000 else "metadata"), answer.text
        # Nothing was half-written: the same key with a valid body creates the record now.
        again = client.post(
            path,
            json={**CREATE_BODIES[path], "metadata": {"x": json.loads(_nested(31))}},
            headers={"Idempotency-Key": key},
        )
        assert again.status_code == 202, again.text


def test_oversized_metadata_is_a_422(api: Api) -> None:
    with api.client() as client:
        answer = client.post("/tts/batch", json={"chunks": [{"text": "One."}], "metadata": {"x": "y" * 20_000}})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "metadata", answer.text


@pytest.mark.parametrize("depth", [400, 900])
def test_deeply_nested_event_data_is_cut_and_the_report_still_counts(api: Api, depth: int) -> None:
    event = f'{{"kind": "fallback", "phase": "tts", "data": {{"x": {_nested(depth)}}}}}'
    with api.client() as client:
        body = f'{{"source": "legacy-1", "events": [{event}]}}'
        answer = client.post("/events", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
        assert client.get("/events").status_code == 200


@pytest.mark.parametrize("depth", [300, 5000])
def test_deeply_nested_webhook_bodies_are_a_4xx(api: Api, depth: int) -> None:
    runpod = f'{{"id": "rp-job-1", "status": "COMPLETED", "output": {_nested(depth)}}}'
    with api.client() as client:
        answers = [
            client.post(f"/tts/callback?token={api.token()}", content=runpod),
            client.post(f"/video/render/callback?token={api.token(VIDEO, [api.batch_id])}", content=_nested(depth)),
        ]
    assert all(answer.status_code < 500 for answer in answers), [answer.text for answer in answers]


# --- values a provider documents a range for ----------------------------------------------------------------------

IMAGE = {"images": [{"prompt": "a lighthouse"}], "width": 128, "height": 128}
SEGMENT = {"index": 0, "start_s": 0, "end_s": 1, "audio_url": "http://a.test/0.wav", "image_url": "http://a.test/0.png"}
OUT_OF_RANGE: list[tuple[str, dict[str, Any], str]] = [
    ("/imagegen/batch", {**IMAGE, "images": [{"prompt": "a lighthouse", "seed": 2**63}]}, "images.0.seed"),
    ("/imagegen/batch", {**IMAGE, "images": [{"prompt": "a lighthouse", "seed": 0}]}, "images.0.seed"),
    ("/imagegen/batch", {**IMAGE, "images": [{"prompt": "p" * 2900}], "style": "s" * 200}, "style"),
    ("/imagegen/batch", {**IMAGE, "width": 130}, "width"),
    ("/imagegen/batch", {**IMAGE, "height": 4096}, "height"),
    ("/imagegen/batch", {**IMAGE, "model": "runwäre:100@1"}, "model"),
    ("/imagegen/batch", {**IMAGE, "format": "GIF"}, "format"),
    ("/jobs", {"chunks": [{"text": "One.", "image_prompt": "p" * 2900}], "image_style": "s" * 200}, "image_style"),
    ("/jobs", {"chunks": [{"text": "One."}], "images": {"model": "no-version:1"}}, "images.model"),
    ("/jobs", {"chunks": [{"text": "One."}], "images": {"width": 4096}}, "images.width"),
    ("/jobs", {"chunks": [{"text": "One."}], "video": {"fps": 500}}, "video.fps"),
    ("/video/render", {"segments": [{**SEGMENT, "start_s": 2, "end_s": 1}]}, "segments.0.end_s"),
]


@pytest.mark.parametrize(("path", "body", "field"), OUT_OF_RANGE, ids=[f"{p}-{f}" for p, _, f in OUT_OF_RANGE])
def test_a_value_outside_the_providers_documented_range_is_a_422_naming_the_field(
    api: Api, path: str, body: dict[str, Any], field: str
) -> None:
    with api.client() as client:
        answer = client.post(path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field, answer.text


def test_the_edges_of_the_documented_ranges_are_accepted(api: Api) -> None:
    with api.client() as client:
        images = [{"prompt": "p" * 2998, "seed": 2**63 - 1}, {"prompt": "ab", "seed": 1}]
        answer = client.post("/imagegen/batch", json={"images": images, "width": 2048, "height": 128, "style": ""})
        assert answer.status_code == 202, answer.text
        job = {"chunks": [{"text": "t" * 4000, "image_prompt": "p" * 2998}]}
        assert client.post("/jobs", json=job).status_code == 202


# --- webhook tokens -----------------------------------------------------------------------------------------------


def _forged(token: str) -> str:
    payload, mac = token.rsplit(".", 1)
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    tampered = base64.urlsafe_b64encode(decoded.replace(".0.", ".1.", 1).encode()).decode().rstrip("=")
    return f"{tampered}.{mac}"


def test_webhooks_with_missing_forged_expired_or_misdirected_tokens_change_nothing(api: Api) -> None:
    before = api.batch()
    good = api.token()
    other_secret = sign("another-secret", TTS, [api.batch_id, "0", "1"], 600)
    bad_tokens = {
        "missing": None,
        "empty": "",
        "garbage": "not-a-token",
        "forged ids": _forged(good),
        "forged signature": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "other secret": other_secret,
        "expired": api.token(ttl_s=60, now=time.time() - 3600),
        "video token on the TTS route": api.token(VIDEO, [api.batch_id]),
        "artifact link token on the TTS route": api.token(ARTIFACT, ["dHRzLzAud2F2"]),
    }
    with api.client() as client:
        for name, token in bad_tokens.items():
            params = {} if token is None else {"token": token}
            response = client.post("/tts/callback", params=params, json=_wav_job([0, 1]))
            assert response.status_code == 401, (name, response.text)
            assert response.json()["error"]["code"] == "unauthorized", name
        video = client.post("/video/render/callback", params={"token": good}, json={"status": "completed"})
        assert video.status_code == 401  # a TTS token is not valid on the video route
        artifact = client.get(f"/artifacts/{good}")
        assert artifact.status_code == 401  # nor as an artifact link
    after = api.batch()
    assert after["version"] == before["version"] and after["chunks"] == before["chunks"]


def test_a_replayed_webhook_changes_nothing_and_cannot_reach_another_group(api: Api) -> None:
    token = api.token()  # batch, group 0, attempt 1
    with api.client() as client:
        first = client.post("/tts/callback", params={"token": token}, json=_wav_job([0, 1]))
        assert first.status_code == 200, first.text
        assert api.apply_webhooks() == 1
        done = api.batch()
        assert [c["status"] for c in done["chunks"]] == ["completed", "completed", "pending"]
        # The same delivery again, a late failure for the same attempt, and the token with chunk 2's output:
        # none of them may change anything (the URL names group 0; group 1 holds chunk 2).
        for body in (_wav_job([0, 1]), _wav_job([0, 1], status="FAILED"), _wav_job([2])):
            again = client.post("/tts/callback", params={"token": token}, json=body)
            assert again.status_code == 200, again.text
    assert api.apply_webhooks() == 3
    after = api.batch()
    assert after["version"] == done["version"] and after["chunks"] == done["chunks"]


# --- path tricks and odd ids on artifact routes ------------------------------------------------------------------

ODD_IDS = [
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "tts_..%2F..%2Fsecret",
    "tts_%00abcdefgh",
    "tts_" + "a" * 500,
    "TTS_ABCDEFGH12",
    "img_abcdefgh12",
    "job_abcdefgh12",
    "%252e%252e%252f",
    "tts_abcdefgh12%5c..%5c..",
]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_ids_and_traversal_on_artifact_routes_are_rejected(api: Api, odd: str) -> None:
    paths = [
        f"/tts/batch/{odd}/chunks/0/audio",
        f"/imagegen/batch/{odd}/images/0",
        f"/video/render/{odd}/video",
        f"/jobs/{odd}/video",
        f"/jobs/{odd}/segments.json",
        f"/tts/batch/{api.batch_id}/chunks/{odd}/audio",
        f"/artifacts/{odd}",
    ]
    with api.client() as client:
        for path in paths:
            response = client.get(path)
            assert response.status_code in (401, 404, 422), (path, response.status_code, response.text)
            assert response.headers["content-type"].startswith("application/json"), path
            assert "root:" not in response.text


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "tts/../../x.wav", "tts/%2e%2e/x", ""])
def test_a_validly_signed_link_to_a_path_outside_the_store_is_refused(api: Api, key: str) -> None:
    encoded = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    with api.client() as client:
        response = client.get(f"/artifacts/{api.token(ARTIFACT, [encoded])}")
    assert response.status_code in (401, 404, 422), response.text
    assert "root:" not in response.text


def test_odd_item_indexes_are_rejected(api: Api) -> None:
    with api.client() as client:
        for index in ("-1", "99999999999999999999999", "0x10", "1e3", "%00"):
            response = client.get(f"/tts/batch/{api.batch_id}/chunks/{index}/audio")
            assert response.status_code in (404, 422), (index, response.text)


# --- provider output URLs -------------------------------------------------------------------------------------------


@dataclass
class Target:
    """A loopback server standing in for an internal service: it counts every request that reaches it."""

    url: str
    hits: list[str]


@pytest.fixture
def target() -> Iterator[Target]:
    hits: list[str] = []
    app = FastAPI()

    @app.get("/{name}")
    def serve(name: str) -> Response:
        hits.append(name)
        if name == "redirect":
            return Response(status_code=302, headers={"Location": "http://localhost/secret"})
        size = 2048 if name == "big" else 16
        return Response(b"x" * size, media_type="application/octet-stream")

    with ThreadedServer(app) as server:
        yield Target(server.url, hits)


def test_provider_urls_to_private_addresses_are_never_fetched(target: Target) -> None:
    port = target.url.rsplit(":", 1)[1]
    refused = [
        f"http://localhost:{port}/secret",
        f"http://[::1]:{port}/secret",
        f"http://2130706433:{port}/secret",  # 127.0.0.1 written as one number
        f"http://0.0.0.0:{port}/secret",
        f"http://[::ffff:127.0.0.1]:{port}/secret",  # IPv4-mapped loopback
        f"http://127.1:{port}/secret",
        f"http://LOCALHOST.:{port}/secret",
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "/relative/path",
    ]
    with httpx.Client(timeout=5) as client:
        for url in refused:
            with pytest.raises(ProviderError):
                fetch_bytes(client, url, allow_hosts=[], max_bytes=1000)
        # An allowed host may not bounce us to a private one either: redirects are not followed.
        with pytest.raises(ProviderError):
            fetch_bytes(client, f"{target.url}/redirect", allow_hosts=["127.0.0.1"], max_bytes=1000)
    assert target.hits == ["redirect"]


def test_provider_outputs_over_the_size_cap_are_refused(target: Target) -> None:
    with httpx.Client(timeout=5) as client:
        assert fetch_bytes(client, f"{target.url}/small", allow_hosts=["127.0.0.1"], max_bytes=1000) == b"x" * 16
        with pytest.raises(ProviderRejected, match="larger than 1000"):
            fetch_bytes(client, f"{target.url}/big", allow_hosts=["127.0.0.1"], max_bytes=1000)


def test_the_address_checked_is_the_address_connected_to(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves differently on a second lookup (DNS rebinding) cannot move the download elsewhere."""
    port = int(target.url.rsplit(":", 1)[1])
    lookups: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            lookups.append(host)
            # First the loopback server the test allows; any later lookup would name another loopback address.
            return real("127.0.0.1" if len(lookups) == 1 else "127.0.0.2", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with httpx.Client(timeout=5) as client:
        data = fetch_bytes(client, f"http://rebind.test:{port}/small", allow_hosts=["rebind.test"], max_bytes=1000)
    assert data == b"x" * 16 and target.hits == ["small"]
    assert lookups == ["rebind.test"]  # one lookup: the connection went to the address it gave


def test_check_url_names_the_address_to_connect_to() -> None:
    target = check_url("https://localhost:8443/a.wav?x=1", ["localhost"])
    assert ipaddress.ip_address(target.address).is_loopback
    with httpx.Client() as client:
        request = target.request(client)
    assert (request.url.host, request.url.port, request.url.path) == (target.address, 8443, "/a.wav")
    assert request.headers["host"] == "localhost:8443" and request.extensions["sni_hostname"] == "localhost"
    with pytest.raises(ProviderRejected, match="non-public"):
        check_url("https://localhost:8443/a.wav", [])


def test_a_webhook_pointing_at_a_private_host_fails_the_item_without_fetching(
    settings: Settings, redis_client: object, target: Target, tmp_path: Path
) -> None:
    from strangler_bridge.cli.devstack import DevStack

    base = settings.model_copy(update={"provider_attempts": 1, "reconcile_after_s": 60.0})
    # RunPod holds the job, so the only result the service ever sees is the hostile one sent below.
    stack = DevStack(base, workers=1, runpod={"execution_time_s": 120.0}, log_dir=tmp_path / "stack")
    with stack, stack.client() as client:
        batch = client.post("/tts/batch", json={"chunks": [{"text": "Hello."}]}).raise_for_status().json()
        url = f"/tts/batch/{batch['id']}"
        wait_for(lambda: client.get(url).json()["chunks"][0]["attempts"] >= 1, timeout=30, what="a submission")
        port = target.url.rsplit(":", 1)[1]
        chunk = {"index": 0, "duration_s": 1.0, "audio_url": f"http://localhost:{port}/secret"}
        job = {"id": "rp-1", "status": "COMPLETED", "output": {"chunks": [chunk]}}
        token = sign(stack.settings.secret("webhook_secret"), TTS, [batch["id"], "0", "1"], 600)
        assert client.post("/tts/callback", params={"token": token}, json=job).status_code == 200
        status = follow(client, url, timeout=30)
    assert status["status"] == "failed", status
    assert "refusing to fetch" in (status["chunks"][0]["error"] or ""), status
    assert target.hits == []
