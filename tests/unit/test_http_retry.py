"""The shared retry policy and the sync/async operation drivers."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from strangler_bridge.http import Operation, RetryPolicy, adrive, drive

pytestmark = pytest.mark.unit

FAST = RetryPolicy(attempts=4, initial_s=0.001, max_s=0.002, jitter_s=0.0)


def _scripted(*statuses: int) -> tuple[httpx.MockTransport, list[int]]:
    seen: list[int] = []
    queue = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(len(seen))
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(status, json={"n": len(seen)})

    return httpx.MockTransport(handler), seen


def _get_n() -> Operation[tuple[int, int]]:
    response = yield httpx.Request("GET", "http://provider.test/x")
    return response.status_code, response.json()["n"]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retries_transient_statuses_then_succeeds(status: int) -> None:
    transport, seen = _scripted(status, status, 200)
    with httpx.Client(transport=transport) as client:
        assert drive(_get_n(), client, FAST) == (200, 3)
    assert len(seen) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_other_client_errors_are_not_retried(status: int) -> None:
    transport, seen = _scripted(status, 200)
    with httpx.Client(transport=transport) as client:
        assert drive(_get_n(), client, FAST) == (status, 1)
    assert len(seen) == 1


def test_gives_back_last_response_when_tries_run_out() -> None:
    transport, seen = _scripted(503)
    with httpx.Client(transport=transport) as client:
        assert drive(_get_n(), client, FAST) == (503, 4)
    assert len(seen) == 4


def test_transport_errors_are_retried_then_mapped() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client, pytest.raises(LookupError):
        drive(_get_n(), client, FAST, on_transport_error=lambda exc: LookupError(str(exc)))
    assert len(calls) == 4


def test_async_driver_runs_the_same_operation() -> None:
    seen: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        return httpx.Response(200 if len(seen) > 1 else 429, json={"n": len(seen)})

    async def main() -> tuple[int, int]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await adrive(_get_n(), client, FAST)

    assert asyncio.run(main()) == (200, 2)


def test_retry_after_header_is_honoured_as_a_floor() -> None:
    from tenacity import RetryCallState

    from strangler_bridge.http import RetryableStatus, _wait_with_retry_after

    wait = _wait_with_retry_after(lambda state: 0.01)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_exception((RetryableStatus, RetryableStatus(httpx.Response(429, headers={"retry-after": "2"})), None))
    assert wait(state) == 2.0


def test_submit_policy_does_not_resend_after_a_read_timeout() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("no answer", request=request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client, pytest.raises(httpx.ReadTimeout):
        drive(_get_n(), client, FAST.for_submit())
    assert len(calls) == 1


def test_submit_policy_resends_when_the_connection_was_refused() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"n": len(calls)})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert drive(_get_n(), client, FAST.for_submit()) == (200, 3)
