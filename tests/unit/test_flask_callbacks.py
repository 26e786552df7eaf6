"""The completion-webhook receiver: ``POST /strangler/callbacks`` verifies, drops duplicates, calls the handlers."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask, current_app

from flask_plugin import CallbackEvent, StranglerBridge
from flask_plugin.callbacks import MAX_CALLBACK_BYTES, Claim, SeenIds, read_body
from flask_plugin.testing import FakeService, signed_callback
from strangler_bridge.callbacks import new_secret, signed_headers
from strangler_bridge.contracts.jobs import JobCreate
from strangler_bridge.errors import ConfigError, PayloadTooLarge

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_env")]

SECRET, OLD_SECRET = new_secret(), new_secret()


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def bridge() -> StranglerBridge:
    return StranglerBridge()


@pytest.fixture
def app(fake: FakeService, bridge: StranglerBridge) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url,
        STRANGLER_SERVICE_TOKEN=fake.token,
        STRANGLER_CALLBACK_SECRET=f"{SECRET},{OLD_SECRET}",  # a rotation: the new secret and the old one
    )
    bridge.init_app(app, client=fake.client())
    yield app
    StranglerBridge.state(app).close()


@pytest.fixture
def received(bridge: StranglerBridge) -> list[tuple[str, CallbackEvent]]:
    calls: list[tuple[str, CallbackEvent]] = []

    @bridge.on_callback
    def record(webhook_id: str, event: CallbackEvent) -> None:
        assert current_app  # handlers run with the app context of the receiving request
        calls.append((webhook_id, event))

    return calls


@pytest.fixture
def event(fake: FakeService) -> CallbackEvent:
    """The event of a job that completed on the fake service."""
    job = fake.client().create_job(JobCreate.model_validate({"chunks": [{"text": "Hello."}], "video_id": "vid-7"}))
    return fake.callback_event(job.id)


def post(app: Flask, body: bytes, headers: dict[str, str]) -> Any:
    return app.test_client().post(StranglerBridge.callback_path(app), data=body, headers=headers)


def test_the_route_is_under_the_blueprint_prefix(app: Flask) -> None:
    assert StranglerBridge.callback_path(app) == "/strangler/callbacks"


def test_a_signed_webhook_is_answered_204_and_handled_once(
    app: Flask, received: list[tuple[str, CallbackEvent]], event: CallbackEvent
) -> None:
    body, headers = signed_callback([SECRET], event, webhook_id="msg_1")
    response = post(app, body, headers)
    assert (response.status_code, response.data) == (204, b"")
    assert received == [("msg_1", event)]
    assert received[0][1].type == "job.completed" and received[0][1].data.video_id == "vid-7"


def test_a_redelivered_webhook_id_is_answered_204_without_calling_the_handlers_again(
    app: Flask, received: list[tuple[str, CallbackEvent]], event: CallbackEvent
) -> None:
    body, headers = signed_callback([SECRET], event, webhook_id="msg_1")
    assert post(app, body, headers).status_code == 204
    again, later = signed_callback([SECRET], event, webhook_id="msg_1")  # a retry: same id, signed again
    assert post(app, again, later).status_code == 204
    assert [webhook_id for webhook_id, _ in received] == ["msg_1"]
    other, other_headers = signed_callback([SECRET], event, webhook_id="msg_2")  # a new id is a new webhook
    assert post(app, other, other_headers).status_code == 204
    assert [webhook_id for webhook_id, _ in received] == ["msg_1", "msg_2"]


def test_a_webhook_signed_with_another_secret_is_401_in_the_one_error_shape(
    app: Flask, received: list[tuple[str, CallbackEvent]], event: CallbackEvent
) -> None:
    body, headers = signed_callback([new_secret()], event)
    response = post(app, body, headers)
    assert response.status_code == 401
    assert response.get_json() == {
        "error": {"code": "unauthorized", "message": "the webhook signature does not verify"}
    }
    assert received == []


def test_a_tampered_body_is_401(app: Flask, received: list[tuple[str, CallbackEvent]], event: CallbackEvent) -> None:
    body, headers = signed_callback([SECRET], event)
    assert post(app, body.replace(b"vid-7", b"vid-8"), headers).status_code == 401
    assert received == []


def test_an_old_timestamp_is_401_even_with_a_good_signature(
    app: Flask, received: list[tuple[str, CallbackEvent]], event: CallbackEvent
) -> None:
    body, headers = signed_callback([SECRET], event, at=datetime.now(timezone.utc) - timedelta(minutes=10))
    response = post(app, body, headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert received == []


def test_the_second_secret_of_a_rotation_is_accepted(
    app: Flask, received: list[tuple[str, CallbackEvent]], event: CallbackEvent
) -> None:
    body, headers = signed_callback([OLD_SECRET], event, webhook_id="msg_old")
    assert post(app, body, headers).status_code == 204
    assert [webhook_id for webhook_id, _ in received] == ["msg_old"]


def test_an_oversized_body_is_413_and_not_verified(app: Flask, received: list[tuple[str, CallbackEvent]]) -> None:
    body = b'{"pad": "' + b"x" * MAX_CALLBACK_BYTES + b'"}'
    response = post(app, body, {"content-type": "application/json"})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert received == []


def test_a_body_without_a_length_is_read_only_up_to_one_byte_past_the_limit() -> None:
    stream = io.BytesIO(b"x" * (MAX_CALLBACK_BYTES * 4))
    with pytest.raises(PayloadTooLarge):
        read_body(stream, None)
    assert stream.tell() == MAX_CALLBACK_BYTES + 1
    assert read_body(io.BytesIO(b"small"), None) == b"small"


def test_a_signed_body_that_is_not_an_event_is_422(app: Flask, received: list[tuple[str, CallbackEvent]]) -> None:
    body = b'{"hello": "world"}'
    headers = signed_headers([SECRET], "msg_x", body, datetime.now(timezone.utc))
    response = post(app, body, headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_input"
    assert received == []


def test_a_failing_handler_is_500_and_the_retry_of_the_same_id_is_handled(
    app: Flask, bridge: StranglerBridge, event: CallbackEvent
) -> None:
    calls: list[str] = []

    @bridge.on_callback
    def flaky(webhook_id: str, event: CallbackEvent) -> None:
        calls.append(webhook_id)
        if len(calls) == 1:
            raise RuntimeError("the database is down")

    body, headers = signed_callback([SECRET], event, webhook_id="msg_1")
    response = post(app, body, headers)
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error["code"] == "callback_handler_failed"
    assert "RuntimeError" in error["message"] and "database" not in error["message"]  # no details leave the app
    assert post(app, *signed_callback([SECRET], event, webhook_id="msg_1")).status_code == 204
    assert post(app, *signed_callback([SECRET], event, webhook_id="msg_1")).status_code == 204
    assert calls == ["msg_1", "msg_1"]  # failed, handled on the retry, then a duplicate


def test_the_same_id_arriving_while_it_is_handled_is_409_and_handled_once(
    app: Flask, bridge: StranglerBridge, event: CallbackEvent
) -> None:
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    @bridge.on_callback
    def slow(webhook_id: str, event: CallbackEvent) -> None:
        calls.append(webhook_id)
        entered.set()
        assert release.wait(10)

    statuses: list[int] = []
    first = threading.Thread(
        target=lambda: statuses.append(post(app, *signed_callback([SECRET], event, webhook_id="msg_1")).status_code)
    )
    first.start()
    try:
        assert entered.wait(10)
        response = post(app, *signed_callback([SECRET], event, webhook_id="msg_1"))
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "conflict"
    finally:
        release.set()
        first.join(10)
    assert statuses == [204]
    assert calls == ["msg_1"]


def test_without_a_secret_every_webhook_is_401(fake: FakeService, event: CallbackEvent) -> None:
    app = Flask(__name__)
    app.config.update(STRANGLER_SERVICE_URL=fake.base_url, STRANGLER_SERVICE_TOKEN=fake.token)
    StranglerBridge(app, client=fake.client())
    try:
        assert post(app, *signed_callback([SECRET], event)).status_code == 401
    finally:
        StranglerBridge.state(app).close()


def test_the_prefix_moves_the_route_and_no_blueprint_means_no_route(fake: FakeService) -> None:
    moved, bare = Flask("moved"), Flask("bare")
    for app in (moved, bare):
        app.config.update(STRANGLER_SERVICE_URL=fake.base_url, STRANGLER_SERVICE_TOKEN=fake.token)
    StranglerBridge(moved, client=fake.client(), url_prefix="/ops/bridge/")
    StranglerBridge(bare, client=fake.client(), url_prefix=None)
    try:
        assert StranglerBridge.callback_path(moved) == "/ops/bridge/callbacks"
        assert moved.test_client().post("/ops/bridge/callbacks", data=b"{}").status_code == 401  # the route is there
        with pytest.raises(RuntimeError, match="no callbacks route"):
            StranglerBridge.callback_path(bare)
    finally:
        StranglerBridge.state(moved).close()
        StranglerBridge.state(bare).close()


# --- callback mode's settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"STRANGLER_CALLBACK_SECRET": SECRET}, "STRANGLER_CALLBACK_RECEIVER_URL"),
        ({"STRANGLER_CALLBACK_RECEIVER_URL": "https://app.example/strangler/callbacks"}, "STRANGLER_CALLBACK_SECRET"),
    ],
)
def test_callback_mode_without_its_url_or_secret_stops_init_app(
    fake: FakeService, extra: dict[str, str], named: str
) -> None:
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url, STRANGLER_SERVICE_TOKEN=fake.token, STRANGLER_JOBS_WAIT="callback", **extra
    )
    with pytest.raises(ConfigError, match=f"STRANGLER_JOBS_WAIT=callback needs {named}"):
        StranglerBridge(app, client=fake.client())


def test_callback_mode_needs_the_blueprint(fake: FakeService) -> None:
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url,
        STRANGLER_SERVICE_TOKEN=fake.token,
        STRANGLER_JOBS_WAIT="callback",
        STRANGLER_CALLBACK_SECRET=SECRET,
        STRANGLER_CALLBACK_RECEIVER_URL="https://app.example/strangler/callbacks",
    )
    with pytest.raises(ConfigError, match="needs the blueprint's callbacks route"):
        StranglerBridge(app, client=fake.client(), url_prefix=None)


def test_a_receiver_url_that_misses_the_route_is_warned_about(
    fake: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url,
        STRANGLER_SERVICE_TOKEN=fake.token,
        STRANGLER_JOBS_WAIT="callback",
        STRANGLER_CALLBACK_SECRET=SECRET,
        STRANGLER_CALLBACK_RECEIVER_URL="https://app.example/hooks",
    )
    StranglerBridge(app, client=fake.client())
    try:
        assert "does not end with this app's callbacks route /strangler/callbacks" in caplog.text
    finally:
        StranglerBridge.state(app).close()


# --- the memory of handled ids ------------------------------------------------------------------------


def test_handled_ids_are_forgotten_after_their_time_or_past_the_capacity() -> None:
    now = [0.0]
    seen = SeenIds(capacity=2, ttl_s=100, clock=lambda: now[0])
    for webhook_id in ("a", "b", "c"):
        assert seen.claim(webhook_id) is Claim.NEW
        seen.done(webhook_id)
    assert len(seen) == 2
    assert seen.claim("a") is Claim.NEW  # the oldest went past the capacity
    seen.release("a")
    assert seen.claim("c") is Claim.SEEN
    now[0] = 100.0
    assert seen.claim("c") is Claim.NEW  # a day later, in production: handled again (handlers are idempotent)
    assert len(seen) == 0


def test_a_released_id_can_be_claimed_again_and_a_busy_one_cannot() -> None:
    seen = SeenIds()
    assert seen.claim("a") is Claim.NEW
    assert seen.claim("a") is Claim.BUSY
    seen.release("a")
    assert seen.claim("a") is Claim.NEW
