"""The Flask side's circuit breaker: opening, the cool-down, one trial at a time, and the guarded transport."""

from __future__ import annotations

import threading

import httpx
import pytest

from strangler_bridge.client.breaker import BreakerSnapshot, BreakerState, CircuitBreaker, GuardedTransport, guarding
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.errors import BreakerOpen
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, changes: list[BreakerSnapshot] | None = None) -> CircuitBreaker:
    record = changes.append if changes is not None else None
    return CircuitBreaker(Phase.TTS, failures=3, cooldown_s=10, clock=clock, on_change=record)


def test_opens_after_the_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock, changes = Clock(), list[BreakerSnapshot]()
    cb = breaker(clock, changes)
    cb.failed("refused")
    cb.failed("refused")
    cb.succeeded()
    cb.failed("refused")
    cb.failed("refused")
    assert cb.snapshot().state is BreakerState.CLOSED and cb.allow()
    cb.failed("refused")
    assert cb.snapshot().state is BreakerState.OPEN
    assert not cb.allow()
    assert [(c.state, c.failures, c.reason) for c in changes] == [(BreakerState.OPEN, 3, "refused")]


def test_after_the_cooldown_one_trial_goes_through_and_its_success_closes() -> None:
    clock, changes = Clock(), list[BreakerSnapshot]()
    cb = breaker(clock, changes)
    cb.trip("stalled")
    clock.now += 9.9
    assert not cb.allow()
    clock.now += 0.2
    assert cb.allow()  # the trial
    assert cb.snapshot().state is BreakerState.HALF_OPEN
    assert not cb.allow()  # a second caller while the trial is in flight falls back
    cb.succeeded()
    assert cb.snapshot() == BreakerSnapshot(Phase.TTS, BreakerState.CLOSED, cb.snapshot().since, 0)
    assert [c.state for c in changes] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_a_failed_trial_opens_it_for_another_cooldown() -> None:
    clock = Clock()
    cb = breaker(clock)
    cb.trip("stalled")
    clock.now += 11
    assert cb.allow()
    cb.failed("refused")
    assert cb.snapshot().state is BreakerState.OPEN
    assert not cb.allow()
    assert cb.retry_in() == pytest.approx(20)  # each failed trial doubles the cool-down


def test_with_a_probe_no_request_is_the_trial_until_the_probe_passes() -> None:
    clock, answers = Clock(), [False, True]
    probed = threading.Event()

    def probe() -> bool:
        probed.set()
        return answers.pop(0)

    cb = CircuitBreaker(Phase.TTS, failures=1, cooldown_s=10, clock=clock, probe=probe)
    cb.failed("hung")
    clock.now += 11
    assert not cb.allow()  # the cool-down is over, but the probe runs in the background and this request falls back
    wait_for(lambda: probed.is_set() and cb.retry_in() > 0, timeout=5, what="the failed probe")
    assert cb.retry_in() == pytest.approx(20)  # the probe failed: a longer cool-down
    probed.clear()
    clock.now += 21
    assert not cb.allow()
    wait_for(lambda: cb.snapshot().state is BreakerState.HALF_OPEN, timeout=5, what="the passed probe")
    assert cb.allow()  # now a request is the trial
    cb.succeeded()
    assert cb.snapshot().state is BreakerState.CLOSED


def test_the_guarded_transport_counts_requests_of_a_guarded_step_only() -> None:
    clock = Clock()
    cb = breaker(clock)
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(503 if request.url.path == "/busy" else 200)

    client = httpx.Client(base_url="http://service.test", transport=GuardedTransport(httpx.MockTransport(handler)))
    for _ in range(5):
        with pytest.raises(httpx.ConnectError):
            client.get("/down")  # outside a step: not counted
    assert cb.snapshot().failures == 0
    with guarding(cb):
        assert client.get("/busy").status_code == 503
        with pytest.raises(httpx.ConnectError):
            client.get("/down")
        with pytest.raises(BreakerOpen):
            client.get("/down")  # the failure that opens it ends the call (no back-off before another try)
        with pytest.raises(BreakerOpen):
            client.get("/ok")  # open: nothing is sent
    assert sent.count("/ok") == 0
    assert client.get("/ok").status_code == 200  # outside a step the breaker does not apply
