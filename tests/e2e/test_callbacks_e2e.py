"""Completion webhooks (issue 21) against real receivers over HTTP: signed per Standard Webhooks, delivered at
least once with a stable ``webhook-id``, retried past failures, timeouts and a killed worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from examples.legacy_app.serving import ServedApp, stack_config
from flask_plugin import StranglerBridge
from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.contracts.callbacks import CallbackEvent
from tests.conftest import TEST_TOKEN
from tests.support.receiver import HOLD, Answer, Receiver
from tests.support.stack import StackFactory, create, follow, forget_keys, legacy_stack, tts_body
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack_defaults() -> dict[str, Any]:
    # Quick retries and a short receiver timeout, so a whole schedule plays out within a test.
    return {"callback_retry_s": [0.3, 0.3, 0.3], "callback_timeout_s": 1.0}


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop()


def receiver(receivers: list[Receiver], *answers: Answer) -> Receiver:
    started = Receiver(script=list(answers) or [Answer()]).start()
    receivers.append(started)
    return started


def verified(stack: DevStack, receiver: Receiver, n: int = 0) -> dict[str, Any]:
    """The n-th request's event, verified by the standardwebhooks library as a receiver would."""
    request = receiver.received[n]
    event: dict[str, Any] = Webhook(stack.settings.callback_secrets()[0]).verify(request.body, request.headers)
    return event


def callback_state(stack: DevStack, path: str, *, status: str, timeout: float = 30) -> dict[str, Any]:
    """The record's ``callback`` once its delivery reaches ``status``."""
    with stack.client() as client:

        def reached() -> dict[str, Any] | None:
            state: dict[str, Any] | None = client.get(path).raise_for_status().json()["callback"]
            return state if state and state["status"] == status else None

        return wait_for(reached, timeout=timeout, what=f"{path} callback {status}")


def test_a_finished_job_batch_and_cancelled_job_each_send_one_signed_event(
    make_stack: StackFactory, receivers: list[Receiver]
) -> None:
    stack = make_stack()
    for_job, for_images, for_cancel = receiver(receivers), receiver(receivers), receiver(receivers)
    job = create(
        stack,
        "/jobs",
        {
            "chunks": [{"text": "The lighthouse keeper woke."}, {"text": "A storm was coming."}],
            "images": {"width": 128, "height": 128},
            "video": {"width": 160, "height": 120, "fps": 5},
            "metadata": {"order": 42},
            "callback_url": for_job.url,
        },
    )
    create(
        stack,
        "/imagegen/batch",
        {"images": [{"prompt": "a lighthouse"}], "width": 128, "height": 128, "callback_url": for_images.url},
    )
    with stack.client() as client:
        done = follow(client, f"/jobs/{job['id']}", timeout=120)
        assert done["status"] == "completed", done

    event = verified(stack, wait_for(lambda: for_job.count() and for_job, what="job webhook"))
    assert event["type"] == "job.completed"
    data = event["data"]
    assert (data["id"], data["object"], data["status"]) == (job["id"], "job", "completed")
    assert data["status_url"] == f"/jobs/{job['id']}" and data["video_url"] == f"/jobs/{job['id']}/video"
    assert data["metadata"] == {"order": 42}
    assert for_job.received[0].headers["webhook-id"] == f"{job['id']}.v{data['version']}"
    state = callback_state(stack, f"/jobs/{job['id']}", status="delivered")
    assert state["attempts"] == 1 and state["last_status_code"] == 204, state

    wait_for(for_images.count, what="image batch webhook")
    assert verified(stack, for_images)["type"] == "image_batch.completed"

    slow = create(stack, "/tts/batch", {**tts_body(2), "callback_url": for_cancel.url})
    with stack.client() as client:
        client.post(f"/tts/batch/{slow['id']}/cancel").raise_for_status()
    wait_for(for_cancel.count, what="cancelled batch webhook")
    cancelled = verified(stack, for_cancel)
    assert cancelled["type"] in ("tts_batch.cancelled", "tts_batch.completed")  # it may finish before the cancel
    assert cancelled["data"]["id"] == slow["id"]

    with stack.client() as client:
        metrics = client.get("/metrics").text
        listed = client.get("/jobs", params={"limit": 5}).json()["items"]
    assert 'strangler_callback_attempts_total{outcome="delivered"} 3.0' in metrics
    assert next(item for item in listed if item["id"] == job["id"])["callback"]["status"] == "delivered"
    # One event each: nothing was sent twice.
    assert (for_job.count(), for_images.count(), for_cancel.count()) == (1, 1, 1)


def test_failures_timeouts_and_slow_receivers_are_retried_under_one_webhook_id(
    make_stack: StackFactory, receivers: list[Receiver]
) -> None:
    stack = make_stack()
    failing = receiver(receivers, Answer(500), Answer(503), Answer(204))
    timing_out = receiver(receivers, Answer(204, delay_s=2.5), Answer(204))  # past the 1 s timeout, then in time
    slow = receiver(receivers, Answer(204, delay_s=0.5))
    never = receiver(receivers, Answer(500))
    batches = {
        name: create(stack, "/tts/batch", {**tts_body(1), "callback_url": target.url})["id"]
        for name, target in (("failing", failing), ("timing_out", timing_out), ("slow", slow), ("never", never))
    }
    states = {
        name: callback_state(stack, f"/tts/batch/{batch_id}", status="delivered")
        for name, batch_id in list(batches.items())[:3]
    }
    exhausted = callback_state(stack, f"/tts/batch/{batches['never']}", status="failed")

    assert states["failing"]["attempts"] == 3 and failing.count() == 3
    assert len(set(failing.ids())) == 1  # one webhook-id for every attempt: receivers drop the repeats
    assert len({r.body for r in failing.received}) == 1  # and the same body
    assert [verified(stack, failing, n)["data"]["id"] for n in range(3)] == [batches["failing"]] * 3

    # The first answer came too late: the service tried again, and the receiver saw the same id twice.
    assert states["timing_out"]["attempts"] == 2 and len(set(timing_out.ids())) == 1 and timing_out.count() == 2

    assert states["slow"]["attempts"] == 1 and slow.count() == 1  # slow but within the timeout: sent once

    # Three retry delays: four attempts, then the delivery fails for good, with the reason.
    assert exhausted["attempts"] == 4 and never.count() == 4
    assert exhausted["last_status_code"] == 500 and exhausted["last_error"] == "HTTP 500"
    with stack.client() as client:
        metrics = client.get("/metrics").text
    assert 'strangler_callback_attempts_total{outcome="failed"} 1.0' in metrics


def test_a_worker_killed_mid_delivery_loses_nothing(make_stack: StackFactory, receivers: list[Receiver]) -> None:
    stack = make_stack(callback_timeout_s=2.0)  # a claim lasts 3 x 2 + 5 s
    held = receiver(receivers, Answer(204, delay_s=HOLD), Answer(204))
    batch = create(stack, "/tts/batch", {**tts_body(1), "callback_url": held.url})
    wait_for(held.count, what="the first attempt")
    stack.workers[0].kill()
    held.release()  # the dead worker never hears this answer
    stack.add_worker()
    state = callback_state(stack, f"/tts/batch/{batch['id']}", status="delivered", timeout=60)
    assert held.count() == 2 and len(set(held.ids())) == 1, held.ids()
    assert verified(stack, held, 1)["data"]["id"] == batch["id"]
    assert state["attempts"] == 1  # the killed attempt was never recorded; the resend was


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://127.0.0.1/hook", "http or https"),
        ("http://[::1]:9/hook", "STRANGLER_CALLBACK_ALLOW_HOSTS"),  # loopback, not on the stack's allow list
        ("/relative/hook", "http or https"),
    ],
)
def test_a_callback_url_the_service_must_not_call_is_refused_at_once(
    make_stack: StackFactory, url: str, problem: str
) -> None:
    stack = make_stack()
    with stack.client() as client:
        for path, body in (("/jobs", {"chunks": [{"text": "Hello."}]}), ("/tts/batch", tts_body(1))):
            response = client.post(path, json={**body, "callback_url": url})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert problem in error["message"] and "callback_url" in (error.get("field") or error["message"])
        assert client.get("/jobs").json()["items"] == []  # nothing was stored


def test_the_example_app_in_callback_mode_is_woken_by_the_job_webhook(
    redis_url: str, tmp_path: Path, receivers: list[Receiver]
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    stack = legacy_stack(redis_url, tmp_path / "stack", prefix, TEST_TOKEN, runware={"image_max_side": 64})
    port = free_port()
    config = stack_config(
        stack,
        tmp_path / "output",
        STRANGLER_JOBS_WAIT="callback",
        STRANGLER_CALLBACK_RECEIVER_URL=f"http://127.0.0.1:{port}/strangler/callbacks",
        STRANGLER_CALLBACK_SECRET=",".join(stack.settings.callback_secrets()),
        STRANGLER_SERVICE_TIMEOUT_S=90,
    )
    try:
        with ServedApp(config, port=port) as legacy, stack.client() as client:
            # Only the webhook can end the wait: the safety-net read comes after the test's deadline.
            callbacks = StranglerBridge.state(legacy.app).callbacks
            callbacks.check_every_s = 600
            heard: list[str] = []

            def hear(webhook_id: str, event: CallbackEvent) -> None:
                heard.append(webhook_id)

            callbacks.handlers.append(hear)  # the example app's extension is shared: removed below
            client.put("/flags/jobs", json={"mode": "fastapi"}).raise_for_status()
            try:
                made = legacy.create("cb-1", "Dawn came. Boats left.", voice="narrator", timeout_s=90)
            finally:
                callbacks.handlers.remove(hear)
            assert made["segments"] == 2 and (legacy.output / "published" / "cb-1.mp4").stat().st_size > 0
            job = client.get("/jobs", params={"video_id": "cb-1"}).json()["items"][0]
            assert job["status"] == "completed" and job["callback"]["status"] == "delivered", job
            assert heard == [job["callback"]["webhook_id"]]  # the app's handler saw it once
            # The service made it (no fallback to the legacy code after a deadline).
            assert (legacy.count("jobs", "service"), legacy.count("jobs", "fallback")) == (1, 0)
    finally:
        stack.stop()
        forget_keys(redis_url, prefix)
