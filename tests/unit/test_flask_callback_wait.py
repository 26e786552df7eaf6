"""Callback mode (``STRANGLER_JOBS_WAIT=callback``): a jobs step sleeps until the job's webhook reaches the app."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from flask_plugin import BridgeClient, Deadline, StranglerBridge
from flask_plugin.testing import FakeService, signed_callback
from strangler_bridge.callbacks import new_secret
from strangler_bridge.client.wakeups import CallbackWait, Wakeups
from strangler_bridge.contracts.flags import FlagMode, PhaseFlag
from strangler_bridge.contracts.jobs import JobCreate
from strangler_bridge.errors import DeadlineExceeded, StepStalled
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_env")]

SECRET = new_secret()
RECEIVER = "https://app.example/strangler/callbacks"
JOB = JobCreate.model_validate({"chunks": [{"text": "Hello there."}], "video_id": "vid-1"})


@pytest.fixture
def fake() -> FakeService:
    fake = FakeService(polls_to_complete=10**6)  # jobs run until the test completes them
    fake.set_flag("jobs", PhaseFlag(mode=FlagMode.FASTAPI, fallback=False))
    return fake


@pytest.fixture
def bridge() -> StranglerBridge:
    return StranglerBridge()


def make_app(fake: FakeService, bridge: StranglerBridge, client: BridgeClient | None = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        STRANGLER_SERVICE_URL=fake.base_url,
        STRANGLER_SERVICE_TOKEN=fake.token,
        STRANGLER_SERVICE_TIMEOUT_S=30,  # a wait that is never woken ends the test's thread, not the test run
        STRANGLER_FLAGS_CACHE_S=0,
        **config,
    )
    bridge.init_app(app, client=client or fake.client())
    return app


@pytest.fixture
def app(fake: FakeService, bridge: StranglerBridge) -> Iterator[Flask]:
    app = make_app(
        fake,
        bridge,
        STRANGLER_JOBS_WAIT="callback",
        STRANGLER_CALLBACK_SECRET=SECRET,
        STRANGLER_CALLBACK_RECEIVER_URL=RECEIVER,
    )
    yield app
    StranglerBridge.state(app).close()


@pytest.fixture
def produce(bridge: StranglerBridge) -> Any:
    @bridge.step("jobs")
    def produce(chunks: list[str], voice: str, style: str | None, out_dir: Path, video_id: str) -> dict[str, Any]:
        raise AssertionError("the legacy code ran")

    return produce


def status_reads(fake: FakeService, job_id: str) -> int:
    """Reads of the job's status (not of its files)."""
    return fake.calls.count(("GET", f"/jobs/{job_id}"))


def test_the_step_returns_as_soon_as_the_receiver_gets_the_jobs_webhook(
    app: Flask, fake: FakeService, produce: Any, tmp_path: Path
) -> None:
    state = StranglerBridge.state(app)
    state.callbacks.check_every_s = 3600  # no safety-net read within the test: only the webhook can end the wait
    results: list[dict[str, Any]] = []

    def request_thread() -> None:
        with app.test_request_context():
            results.append(produce(["Hello there."], "v1", None, tmp_path, "vid-1"))

    thread = threading.Thread(target=request_thread, daemon=True)
    thread.start()
    (job_id,) = wait_for(lambda: fake.ids("/jobs"), timeout=10, what="the job")
    wait_for(lambda: state.callbacks.wakeups.watching(job_id), timeout=10, what="the step to wait for the webhook")
    assert status_reads(fake, job_id) == 0  # sleeping, not polling

    fake.complete(job_id)
    body, headers = signed_callback([SECRET], fake.callback_event(job_id))
    assert app.test_client().post(StranglerBridge.callback_path(app), data=body, headers=headers).status_code == 204
    thread.join(10)

    assert not thread.is_alive(), "the step did not wake up on the webhook"
    assert results[0]["video"] == str(tmp_path / "video.mp4") and (tmp_path / "video.mp4").exists()
    assert status_reads(fake, job_id) == 1  # the one read after the wake
    assert fake.created("/jobs")[0].callback_url == RECEIVER
    assert state.callbacks.wakeups.watching(job_id) == 0


def test_the_safety_net_read_finds_a_job_whose_webhook_never_comes(
    app: Flask, fake: FakeService, produce: Any, tmp_path: Path
) -> None:
    StranglerBridge.state(app).callbacks.check_every_s = 0.01
    fake.polls_to_complete = 3  # done on its third status read; no webhook is ever posted
    with app.test_request_context():
        result = produce(["Hello there."], "v1", None, tmp_path, "vid-1")
    (job_id,) = fake.ids("/jobs")
    assert status_reads(fake, job_id) == 3
    assert result["segments"][0]["text"] == "Hello there."
    assert fake.created("/jobs")[0].callback_url == RECEIVER


def test_long_polling_stays_the_default(
    fake: FakeService, bridge: StranglerBridge, produce: Any, tmp_path: Path
) -> None:
    waits: list[str] = []

    def recording(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/jobs/job_"):
            waits.append(request.url.params.get("wait", ""))
        return fake.handle(request)

    client = BridgeClient(fake.base_url, fake.token, transport=httpx.MockTransport(recording))
    app = make_app(fake, bridge, client, STRANGLER_CALLBACK_SECRET=SECRET, STRANGLER_CALLBACK_RECEIVER_URL=RECEIVER)
    fake.polls_to_complete = 2
    try:
        assert StranglerBridge.state(app).callbacks.job_wait() is None
        with app.test_request_context():
            produce(["Hello there."], "v1", None, tmp_path, "vid-1")
    finally:
        StranglerBridge.state(app).close()
    assert fake.created("/jobs")[0].callback_url is None
    assert waits[:2] == ["30", "30"]  # long-polls (then the file downloads)


# --- the client's wait, with a fake clock -----------------------------------------------------------------


def _client(fake: FakeService, on_read: Any = None, on_create: Any = None) -> BridgeClient:
    def handle(request: httpx.Request) -> httpx.Response:
        response = fake.handle(request)
        if request.method == "GET" and request.url.path.startswith("/jobs/job_") and on_read:
            on_read()
        if request.method == "POST" and request.url.path == "/jobs" and on_create:
            on_create(response.json()["id"])
        return response

    return BridgeClient(fake.base_url, fake.token, transport=httpx.MockTransport(handle))


def test_a_webhook_that_beats_the_creates_answer_still_ends_the_wait_at_once() -> None:
    fake, wakeups = FakeService(polls_to_complete=10**6), Wakeups()

    def finished_before_the_answer(job_id: str) -> None:
        fake.complete(job_id)
        assert wakeups.notify(job_id) == 0  # nobody watches yet: remembered

    client = _client(fake, on_create=finished_before_the_answer)
    status = client.run_job(JOB, Deadline(30), callback=CallbackWait(RECEIVER, wakeups, check_every_s=3600))
    assert status.status.value == "completed"
    assert fake.calls.count(("GET", f"/jobs/{status.id}")) == 1


def test_the_stall_rule_holds_while_waiting_for_a_webhook() -> None:
    fake, now = FakeService(polls_to_complete=10**6), [0.0]

    def four_seconds_pass() -> None:
        now[0] += 4.0

    client = _client(fake, on_read=four_seconds_pass)
    deadline = Deadline(600, clock=lambda: now[0], stall_s=10)
    with pytest.raises(StepStalled, match="made no progress for 10 s"):
        client.run_job(JOB, deadline, callback=CallbackWait(RECEIVER, Wakeups(), check_every_s=0.001))
    assert now[0] == 12.0  # three reads, not the 600 s deadline
    ((route, job_id),) = deadline.started  # what the step router cancels when it gives up
    assert (route.step, job_id) == ("jobs", fake.ids("/jobs")[0])


def test_the_deadline_holds_while_waiting_for_a_webhook() -> None:
    fake, now = FakeService(polls_to_complete=10**6), [0.0]

    def four_seconds_pass() -> None:
        now[0] += 4.0

    client = _client(fake, on_read=four_seconds_pass)
    with pytest.raises(DeadlineExceeded, match="did not finish within 10 s"):
        client.run_job(
            JOB, Deadline(10, clock=lambda: now[0]), callback=CallbackWait(RECEIVER, Wakeups(), check_every_s=0.001)
        )
    assert now[0] == 12.0


def test_a_wake_is_remembered_for_one_later_watcher_and_reaches_every_current_one() -> None:
    wakeups = Wakeups(early_capacity=1)
    wakeups.notify("job_a")
    wakeups.notify("job_b")  # pushes job_a out of the memory
    with wakeups.watch("job_a") as a, wakeups.watch("job_b") as b:
        assert (a.is_set(), b.is_set()) == (False, True)
    with wakeups.watch("job_b") as b_again:
        assert not b_again.is_set()  # used up by the first watcher
    with wakeups.watch("job_c") as one, wakeups.watch("job_c") as two:
        assert wakeups.notify("job_c") == 2
        assert one.is_set() and two.is_set()
    assert wakeups.watching("job_c") == 0
