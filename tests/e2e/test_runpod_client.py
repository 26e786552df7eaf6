"""The RunPod client against the simulator over real HTTP: every operation, every error class, the retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

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
from strangler_bridge.providers.runpod.client import (
    AsyncRunPodClient,
    RunPodClient,
    RunPodJob,
    RunPodPolicy,
    RunPodStatus,
    parse_tts_output,
    tts_input,
)
from strangler_bridge.simulators.runpod import RunPodSimConfig, create_app
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

KEY = "client-test-key"
FAST_RETRY = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02, jitter_s=0.01)
TTS = tts_input([(0, "Good morning.", "narrator"), (1, "Welcome back.", "narrator")], "wav")


def empty_handler(job: dict[str, Any]) -> dict[str, Any]:
    """A handler that returns nothing: RunPod reports COMPLETED without output."""
    return {}


class Endpoint:
    def __init__(self, url: str, hook: str, hooks: list[dict[str, Any]], http: httpx.Client) -> None:
        self.url, self.hook, self.hooks, self.http = url, hook, hooks, http

    def client(self, key: str = KEY, **kwargs: Any) -> RunPodClient:
        return RunPodClient(self.url + "/v2/sim", key, retry=kwargs.pop("retry", FAST_RETRY), **kwargs)

    def patch(self, **knobs: Any) -> None:
        assert self.http.patch("/_sim/config", json=knobs).status_code == 200

    def counters(self) -> dict[str, Any]:
        return self.http.get("/_sim/counters").json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def servers() -> Iterator[Endpoint]:
    hooks: list[dict[str, Any]] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        hooks.append(json.loads(await request.body()))
        return {"ok": True}

    config = RunPodSimConfig(api_key=KEY, execution_time_s=0.0, min_execution_timeout_ms=1, runsync_wait_min_ms=1)
    with (
        ThreadedServer(create_app(config)) as sim,
        ThreadedServer(receiver) as hooks_server,
        httpx.Client(base_url=sim.url, timeout=10) as http,
    ):
        yield Endpoint(sim.url, hooks_server.url + "/hook", hooks, http)


@pytest.fixture
def endpoint(servers: Endpoint) -> Iterator[Endpoint]:
    assert servers.http.post("/_sim/reset", params={"config": "true"}).status_code == 200
    servers.hooks.clear()
    yield servers


def finished(client: RunPodClient, job_id: str) -> RunPodJob:
    return wait_for(lambda: (job := client.status(job_id)).status.terminal and job, what=f"job {job_id} to end")


# --- every operation --------------------------------------------------------------------------------


def test_run_status_and_webhook(endpoint: Endpoint) -> None:
    with endpoint.client() as client:
        job = client.run(TTS, webhook=endpoint.hook + "?t=1", policy=RunPodPolicy(execution_timeout_ms=60_000))
        assert job.status is RunPodStatus.IN_QUEUE
        done = finished(client, job.id)
    assert done.status is RunPodStatus.COMPLETED and done.has_output and done.worker_id
    assert [chunk.index for chunk in parse_tts_output(done.output)] == [0, 1]
    wait_for(lambda: endpoint.hooks, what="the webhook")
    hook = RunPodJob.parse(endpoint.hooks[0])
    assert (hook.id, hook.status, hook.input) == (job.id, RunPodStatus.COMPLETED, TTS)
    assert hook.model_extra and hook.model_extra["webhook"] == endpoint.hook + "?t=1"


def test_runsync_waits_for_the_result_or_returns_in_flight(endpoint: Endpoint) -> None:
    with endpoint.client() as client:
        done = client.runsync(TTS, wait_ms=10_000)
        assert done.id.startswith("sync-") and done.status is RunPodStatus.COMPLETED and done.has_output
        endpoint.patch(execution_time_s=0.5)
        early = client.runsync(TTS, wait_ms=20)
        assert early.status in (RunPodStatus.IN_QUEUE, RunPodStatus.IN_PROGRESS)
        assert finished(client, early.id).status is RunPodStatus.COMPLETED


def test_cancel_retry_health_and_purge(endpoint: Endpoint) -> None:
    endpoint.patch(workers=0)
    with endpoint.client() as client:
        first, second = client.run(TTS), client.run(tts_input([(0, "other", "v")], "wav"))
        assert client.health().jobs.in_queue == 2
        assert client.cancel(first.id).status is RunPodStatus.CANCELLED
        purge = client.purge_queue()
        assert (purge.removed, purge.status) == (1, "completed")
        with pytest.raises(ProviderNotFound):
            client.status(second.id)
        endpoint.patch(workers=1, fail_first_executions=1)
        failed = finished(client, client.run(TTS).id)
        assert failed.status is RunPodStatus.FAILED
        detail = failed.error_detail()
        assert isinstance(detail, dict) and "simulated failure" in detail["error_message"]
        assert client.retry(failed.id).status is RunPodStatus.IN_QUEUE
        again = finished(client, failed.id)
        assert (again.status, again.retries) == (RunPodStatus.COMPLETED, 1)
        health = client.health()
        assert (health.jobs.completed, health.jobs.failed, health.jobs.retried) == (1, 1, 1)


def test_timed_out_and_completed_without_output_are_reported(endpoint: Endpoint) -> None:
    with endpoint.client() as client:
        endpoint.patch(execution_time_s=30)
        slow = client.run(TTS, policy=RunPodPolicy(execution_timeout_ms=50))
        assert finished(client, slow.id).status is RunPodStatus.TIMED_OUT
        endpoint.patch(execution_time_s=0, handler="tests.e2e.test_runpod_client:empty_handler")
        empty = finished(client, client.run({"anything": 1}).id)
    assert empty.status is RunPodStatus.COMPLETED and not empty.has_output and empty.output is None


def test_the_async_client_runs_jobs_concurrently(endpoint: Endpoint) -> None:
    endpoint.patch(execution_time_s=0.2, workers=4)

    async def main() -> list[RunPodJob]:
        async with AsyncRunPodClient(endpoint.url + "/v2/sim", KEY, retry=FAST_RETRY) as client:
            jobs = await asyncio.gather(
                *(client.runsync(tts_input([(0, f"line {n}", "v")], "wav"), wait_ms=10_000) for n in range(4))
            )
            assert (await client.status(jobs[0].id)).status is RunPodStatus.COMPLETED
            assert (await client.health()).jobs.completed == 4
            assert (await client.purge_queue()).removed == 0
            with pytest.raises(ProviderRejected):
                await client.retry(jobs[0].id)
            assert (await client.cancel(jobs[0].id)).status is RunPodStatus.COMPLETED
            queued = await client.run(TTS)
            return [*jobs, queued]

    jobs = asyncio.run(main())
    assert all(job.status is RunPodStatus.COMPLETED and job.has_output for job in jobs[:4])
    counters = endpoint.counters()
    assert counters["max_executions_per_input"] == 1 and counters["jobs_received"] == {"runsync": 4, "run": 1}


# --- every error class ------------------------------------------------------------------------------


def test_a_wrong_key_is_an_auth_error_and_never_retried(endpoint: Endpoint) -> None:
    with endpoint.client(key="wrong-key") as client, pytest.raises(ProviderAuthError) as caught:
        client.health()
    assert caught.value.status_code == 401 and "Unauthorized" in caught.value.message
    assert "wrong-key" not in str(caught.value)
    assert endpoint.counters()["requests"] == {"health": 1}


def test_an_expired_job_is_not_found(endpoint: Endpoint) -> None:
    endpoint.patch(run_retention_s=0.1)
    with endpoint.client() as client:
        job = client.run(TTS)

        def expired() -> bool:
            try:
                client.status(job.id)
            except ProviderNotFound as exc:
                return exc.status_code == 404 and "not found" in exc.message
            return False

        wait_for(expired, what="the job to expire")
        with pytest.raises(ProviderNotFound):
            client.retry(job.id)


def test_invalid_and_oversized_requests_are_rejected_without_retry(endpoint: Endpoint) -> None:
    endpoint.patch(max_run_bytes=500, min_ttl_ms=10_000)
    with endpoint.client() as client:
        with pytest.raises(ProviderRejected) as bad_policy:
            client.run(TTS, policy=RunPodPolicy(ttl_ms=1000))
        assert bad_policy.value.status_code == 400 and "policy.ttl" in bad_policy.value.message
        with pytest.raises(ProviderRejected) as too_big:
            client.run({"text": "x" * 1000})
        assert too_big.value.status_code == 413
    assert endpoint.counters()["requests"] == {"run": 2}


def test_429_and_5xx_are_retried_then_the_job_is_submitted_once(endpoint: Endpoint) -> None:
    endpoint.patch(http_faults={"run": [503, 429]})
    with endpoint.client() as client:
        job = client.run(TTS)
        assert finished(client, job.id).status is RunPodStatus.COMPLETED
    counters = endpoint.counters()
    assert counters["requests"]["run"] == 3 and counters["jobs_received"] == {"run": 1}
    assert counters["executions_total"] == 1


def test_429_after_the_retries_is_rate_limited(endpoint: Endpoint) -> None:
    endpoint.patch(rate_limits={"status": 1})
    with endpoint.client() as client:
        job = client.run(TTS)
        client.status(job.id)
        with pytest.raises(ProviderRateLimited) as caught:
            client.status(job.id)
    assert caught.value.status_code == 429 and "rate limit" in caught.value.message
    assert endpoint.counters()["responses_429"] == 3


def test_5xx_after_the_retries_is_unavailable(endpoint: Endpoint) -> None:
    endpoint.patch(http_faults={"health": [500, 502, 503, 504]})
    with endpoint.client() as client, pytest.raises(ProviderUnavailable) as caught:
        client.health()
    assert caught.value.status_code == 503 and "injected fault" in caught.value.message
    assert endpoint.counters()["requests"]["health"] == 3


def test_a_refused_connection_is_unavailable_after_retries() -> None:
    closed = f"http://127.0.0.1:{free_port()}/v2/sim"
    with RunPodClient(closed, KEY, retry=FAST_RETRY, timeout_s=1.0) as client:
        with pytest.raises(ProviderUnavailable, match="ConnectError"):
            client.status("job-u1")
        with pytest.raises(ProviderUnavailable, match="ConnectError") as caught:
            client.run(TTS)  # never sent, so a submit may be retried too
    assert "outcome is unknown" not in str(caught.value)


def test_a_submit_that_timed_out_is_not_resent(endpoint: Endpoint) -> None:
    endpoint.patch(run_response_delay_s=1.0)
    with endpoint.client(timeout_s=0.3) as client, pytest.raises(ProviderUnavailable, match="outcome is unknown"):
        client.run(TTS)
    wait_for(lambda: endpoint.counters()["outcomes"].get("COMPLETED") == 1, what="the job to run anyway")
    counters = endpoint.counters()
    assert counters["requests"]["run"] == 1 and counters["jobs_received"] == {"run": 1}
    assert counters["executions_total"] == 1
