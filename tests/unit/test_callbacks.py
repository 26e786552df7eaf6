"""Completion webhooks without I/O: signing and verifying, the retry schedule, the events records announce, and
the refusal of callback URLs the service must not call."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from fastapi_app.api.limits import check_callback
from fastapi_app.callbacks.delivery import JITTER, Outcome, attempt, next_state
from fastapi_app.store.batch import new_batch
from fastapi_app.store.job import JobRecord, fail_step
from fastapi_app.store.outbox import Delivery
from strangler_bridge.callbacks import new_secret, signed_headers, verify
from strangler_bridge.contracts.callbacks import CallbackState, DeliveryStatus
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.contracts.jobs import StepName
from strangler_bridge.errors import ConfigError, InvalidInput, Unauthorized
from strangler_bridge.settings import CALLBACK_RETRY_S, Settings

pytestmark = pytest.mark.unit


def now() -> datetime:
    """Read at each signing: receivers refuse a timestamp over five minutes old, and a suite can run longer."""
    return datetime.now(timezone.utc)


EVENT = (
    b'{"type":"job.completed","timestamp":"2026-12-07T10:00:00Z","data":{"id":"job_1","object":"job",'
    b'"status":"completed","version":7,"status_url":"/jobs/job_1"}}'
)


def test_a_rotation_signs_with_both_secrets_and_either_verifies() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers([new, old], "job_1.v7", EVENT, now())
    assert headers["webhook-signature"].count("v1,") == 2
    for receiver_secret in (old, new):
        webhook_id, event = verify([receiver_secret], EVENT, headers)
        assert (webhook_id, event.data.id, event.type) == ("job_1.v7", "job_1", "job.completed")
    # The library itself agrees (a receiver written without this package).
    assert Webhook(old).verify(EVENT, headers)["data"]["version"] == 7


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: ({**h, "webhook-id": "job_1.v8"}, b),
        lambda h, b: (h, b.replace(b"completed", b"failed")),
        lambda h, b: ({**h, "webhook-timestamp": str(int((now() - timedelta(minutes=10)).timestamp()))}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
    ],
    ids=["other id", "other body", "too old", "unsigned"],
)
def test_a_tampered_or_stale_webhook_does_not_verify(tamper: object) -> None:
    secret = new_secret()
    headers, body = tamper(signed_headers([secret], "job_1.v7", EVENT, now()), EVENT)  # type: ignore[operator]
    with pytest.raises(Unauthorized):
        verify([secret], body, headers)


def test_a_wrong_secret_or_none_is_unauthorized_and_a_signed_non_event_is_invalid() -> None:
    secret = new_secret()
    headers = signed_headers([secret], "x", EVENT, now())
    with pytest.raises(Unauthorized):
        verify([new_secret()], EVENT, headers)
    with pytest.raises(Unauthorized):
        verify([], EVENT, headers)
    with pytest.raises(InvalidInput):
        verify([secret], b'{"hello": 1}', signed_headers([secret], "x", b'{"hello": 1}', now()))


def test_callback_settings_refuse_malformed_values_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="STRANGLER_CALLBACK_SECRET") as caught:
        Settings.load(callback_secret="whsec_not base64!")
    assert "not base64" not in str(caught.value)  # the secret is never echoed
    with pytest.raises(ConfigError, match="STRANGLER_CALLBACK_RETRY_S"):
        Settings.load(callback_retry_s="5,-1")
    settings = Settings.load(callback_secret=f"{new_secret()}, {new_secret()}", callback_retry_s="1, 2.5")
    assert len(settings.callback_secrets()) == 2 and settings.callback_retry_s == [1.0, 2.5]
    assert Settings.load().callback_retry_s == list(CALLBACK_RETRY_S)


def state() -> CallbackState:
    return CallbackState(webhook_id="job_1.v7")


def test_a_taken_attempt_finishes_the_delivery() -> None:
    after, due = next_state(state(), Outcome(True, False, 204), now=100.0, schedule=[5.0], rand=random.Random(1))
    assert due is None and after.status is DeliveryStatus.DELIVERED
    assert (after.attempts, after.last_status_code, after.delivered_at is not None) == (1, 204, True)


def test_failed_attempts_follow_the_schedule_with_jitter_then_fail() -> None:
    schedule = [5.0, 300.0, 1800.0]
    current, now, rand = state(), 1000.0, random.Random(7)
    for delay in schedule:
        current, due = next_state(current, Outcome(False, True, 500, "HTTP 500"), now=now, schedule=schedule, rand=rand)
        assert due is not None and delay * (1 - JITTER) <= due - now <= delay * (1 + JITTER)
        assert current.status is DeliveryStatus.PENDING and current.next_attempt_at is not None
        now = due
    current, due = next_state(current, Outcome(False, True, 500, "HTTP 500"), now=now, schedule=schedule, rand=rand)
    assert due is None and current.status is DeliveryStatus.FAILED and current.attempts == len(schedule) + 1
    assert current.last_error == "HTTP 500" and current.next_attempt_at is None


def test_a_refused_url_fails_at_once() -> None:
    refused = Outcome(False, False, error="callback_url refused")
    after, due = next_state(state(), refused, now=1.0, schedule=[5.0, 5.0], rand=random.Random())
    assert due is None and after.status is DeliveryStatus.FAILED and after.attempts == 1


def test_records_announce_their_end_only_when_ended_and_asked() -> None:
    job = JobRecord(
        id="job_1", request={"chunks": [], "callback_url": "https://hooks.example/done", "metadata": {"a": 1}}
    )
    assert job.completion() is None  # still running
    fail_step(job, StepName.TTS, "RunPod failed", now=5.0)
    job.version, job.updated_at = 4, 6.0
    url, event = job.completion() or ("", None)
    assert url == "https://hooks.example/done" and event is not None
    assert (event.type, event.data.version, event.data.error, event.data.video_url) == (
        "job.failed",
        4,
        "tts: RunPod failed",
        None,
    )
    assert event.data.metadata == {"a": 1}
    assert JobRecord(id="job_2", request={}, status=BatchStatus.COMPLETED).completion() is None  # none asked for

    render = new_batch("vid_1", "vid", [0], 1, {"callback_url": "https://hooks.example/r"}, video_id="v-9")
    render.status = BatchStatus.COMPLETED
    _, rendered = render.completion() or ("", None)
    assert rendered is not None and rendered.type == "video_render.completed"
    assert (rendered.data.status_url, rendered.data.video_url) == ("/video/render/vid_1", "/video/render/vid_1/video")


def settings(**values: object) -> Settings:
    return Settings.load(callback_secret=[SecretStr(new_secret())], **values)


def test_a_callback_url_is_refused_without_a_secret_or_on_a_private_host_not_allowed() -> None:
    with pytest.raises(InvalidInput, match="STRANGLER_CALLBACK_SECRET") as no_secret:
        check_callback("https://127.0.0.1/hook", Settings.load())
    assert no_secret.value.field == "callback_url"
    for host in ("127.0.0.1", "localhost", "[::1]"):
        with pytest.raises(InvalidInput, match="STRANGLER_CALLBACK_ALLOW_HOSTS"):
            check_callback(f"http://{host}:9/hook", settings())
    check_callback("http://localhost:9/hook", settings(callback_allow_hosts="localhost"))
    check_callback("http://127.0.0.1:9/hook", settings(callback_allow_hosts="*"))
    check_callback(None, Settings.load())


def test_an_attempt_to_a_refused_address_fails_without_connecting_and_one_without_a_secret_waits() -> None:
    delivery = Delivery(
        webhook_id="job_1.v7",
        store="job",
        record_id="job_1",
        url="http://127.0.0.1:9/hook",
        body="{}",
        created_at=0.0,
        state=state(),
    )
    # A transport that fails the test if the attempt ever sends a request.
    client = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail(f"sent {request.url}")))
    refused = attempt(client, delivery, secrets=[new_secret()], allow_hosts=[])
    assert (refused.delivered, refused.retry) == (False, False) and "refused" in (refused.error or "")
    unsigned = attempt(client, delivery, secrets=[], allow_hosts=["*"])
    assert (unsigned.delivered, unsigned.retry) == (False, True) and "STRANGLER_CALLBACK_SECRET" in (
        unsigned.error or ""
    )


def test_an_attempt_is_signed_pinned_and_counts_only_a_2xx() -> None:
    secret = new_secret()
    seen: list[httpx.Request] = []
    answers = iter([204, 302, 500])

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers), headers={"location": "http://127.0.0.1/elsewhere"})

    delivery = Delivery(
        webhook_id="job_1.v7",
        store="job",
        record_id="job_1",
        url="http://localhost:9/hook?x=1",
        body=EVENT.decode(),
        created_at=0.0,
        state=state(),
    )
    client = httpx.Client(transport=httpx.MockTransport(answer))
    outcomes = [attempt(client, delivery, secrets=[secret], allow_hosts=["localhost"]) for _ in range(3)]
    assert [(o.delivered, o.retry, o.status_code) for o in outcomes] == [
        (True, False, 204),
        (False, True, 302),
        (False, True, 500),
    ]
    first = seen[0]
    assert first.method == "POST" and first.url.host in ("127.0.0.1", "::1") and first.headers["host"] == "localhost:9"
    assert verify([secret], first.content, dict(first.headers))[0] == "job_1.v7"
    assert len(seen) == 3  # the redirect was not followed
