"""Progress-aware deadlines: a step whose work shows no progress for ``stall_s`` is given up early."""

from __future__ import annotations

import httpx
import pytest

from flask_plugin import BridgeClient, Deadline
from flask_plugin.testing import FakeService
from strangler_bridge.contracts.tts import TtsBatchCreate
from strangler_bridge.errors import StepStalled

pytestmark = pytest.mark.unit

BATCH = TtsBatchCreate.model_validate({"chunks": [{"text": "Hello there."}, {"text": "Bye."}], "video_id": "vid-1"})


def test_waiting_gives_up_once_the_work_shows_no_progress_for_the_stall_time() -> None:
    fake = FakeService(polls_to_complete=10**6)
    now = [0.0]
    waits: list[int] = []

    def advancing(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            waits.append(int(request.url.params["wait"]))
            now[0] += 4.0  # each long-poll "takes" four seconds
        return fake.handle(request)

    client = BridgeClient(fake.base_url, fake.token, transport=httpx.MockTransport(advancing))
    deadline = Deadline(600, clock=lambda: now[0], stall_s=10)
    with pytest.raises(StepStalled, match="made no progress for 10 s"):
        client.run_tts_batch(BATCH, deadline)
    assert now[0] == 12.0  # three polls, not the 600 s deadline
    assert waits[0] == 10  # a long-poll never waits past the stall time
    ((route, work_id),) = deadline.started  # what whoever gives up on the step cancels
    assert (route.step, work_id.startswith("tts_")) == ("tts", True)


def test_progress_restarts_the_stall_clock() -> None:
    now = [0.0]
    deadline = Deadline(600, clock=lambda: now[0], stall_s=10)
    deadline.progressed(("running", (0, 0)))
    now[0] = 9.0
    deadline.progressed(("running", (1, 0)))  # a chunk finished
    now[0] = 18.0
    deadline.check_stall("batch")  # 9 s since the last progress: still fine
    assert deadline.poll_s() == pytest.approx(1.0)
    now[0] = 19.0
    with pytest.raises(StepStalled):
        deadline.check_stall("batch")
