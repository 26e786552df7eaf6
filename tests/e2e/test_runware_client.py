"""The Runware client against the Runware simulator over real HTTP: results, errors, retries, never paying twice."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.errors import (
    InvalidInput,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderPaymentRequired,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.http import RetryPolicy
from strangler_bridge.providers.runware.client import (
    AsyncRunwareClient,
    ImageTask,
    InferenceOutcome,
    RecoveryPolicy,
    RunwareClient,
)
from tests.e2e.test_runware_simulator import Sim
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

RETRY = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02, jitter_s=0.01)
POLL = RecoveryPolicy(initial_s=0.02, factor=1.5, max_s=0.1, timeout_s=10.0)
BASE = {"positive_prompt": "a paper boat on a pond", "width": 512, "height": 384, "model": "runware:100@1"}


def task(**changes: Any) -> ImageTask:
    return ImageTask(**{**BASE, **changes})


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Sim]:
    started = Sim(image_max_side=64, api_key="sim-key")
    yield started
    started.stop()


@pytest.fixture
def sim(shared_sim: Sim) -> Sim:
    shared_sim.http.post(f"{shared_sim.url}/_sim/reset").raise_for_status()
    return shared_sim


@pytest.fixture
def client(sim: Sim) -> Iterator[RunwareClient]:
    with RunwareClient(sim.v1, "sim-key", timeout_s=5.0, retry=RETRY, recovery=POLL) as runware:
        yield runware


# --- validation before sending -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("task_uuid", "1234"),
        ("positive_prompt", "x"),
        ("negative_prompt", "y" * 3001),
        ("width", 1000),
        ("height", 4096),
        ("model", "no-air-id"),
        ("number_results", 25),
        ("output_type", "file"),
        ("output_format", "bmp"),
        ("include_cost", "sometimes"),
        ("seed", -1),
        ("steps", 0),
        ("cfg_scale", -1),
        ("delivery_method", "stream"),
        ("webhook_url", "mailto:a@b"),
    ],
)
def test_invalid_tasks_never_reach_runware(sim: Sim, client: RunwareClient, field: str, value: Any) -> None:
    unchecked = ImageTask.model_construct(**{**task().model_dump(), field: value})
    with pytest.raises(InvalidInput) as caught:
        client.infer([unchecked])
    assert caught.value.field == field
    assert sim.counters()["requests_received"] == 0


# --- results -------------------------------------------------------------------------------------------------------


def test_sync_results_in_every_output_type_with_costs_per_image_and_per_batch(client: RunwareClient) -> None:
    url_task = task(number_results=2, seed=7)
    inline = task(output_type="base64Data", output_format="png")
    data_uri = task(output_type="dataURI", output_format="jpg", include_cost=False)
    outcome = client.infer([url_task, inline, data_uri])
    assert outcome.errors == [] and outcome.processing == []
    images = outcome.results_for(url_task.task_uuid)
    assert [image.seed for image in images] == [7, 8]
    downloaded = Image.open(io.BytesIO(client.download(images[0].image_url or "", allow_hosts=["127.0.0.1"])))
    assert (downloaded.format, downloaded.size) == ("PNG", (64, 48))
    (png,) = outcome.results_for(inline.task_uuid)
    assert Image.open(io.BytesIO(png.image_bytes() or b"")).format == "PNG"
    (jpg,) = outcome.results_for(data_uri.task_uuid)
    assert Image.open(io.BytesIO(jpg.image_bytes() or b"")).format == "JPEG"
    assert jpg.cost is None
    assert outcome.cost_by_task() == {
        url_task.task_uuid: pytest.approx(0.0026),
        inline.task_uuid: pytest.approx(0.0013),
        data_uri.task_uuid: 0.0,
    }
    assert outcome.total_cost == pytest.approx(0.0039)


def test_async_delivery_is_acknowledged_then_collected_with_get_response(sim: Sim, client: RunwareClient) -> None:
    sim.configure(latency_s=0.2)
    job = task(delivery_method="async", number_results=2)
    assert client.infer([job]).processing == [job.task_uuid]

    def finished() -> InferenceOutcome | None:
        outcome = client.get_response(job.task_uuid)
        return None if outcome.processing else outcome

    done = wait_for(finished, timeout=10, what="async task")
    assert len(done.results) == 2


def test_partial_success_returns_results_and_task_errors(sim: Sim, client: RunwareClient) -> None:
    first = task()
    client.infer([first])
    sim.configure(fail_next_tasks=1, failure_code="inferenceError")
    failing, fresh, reused = task(), task(), task(task_uuid=first.task_uuid)
    outcome = client.infer([failing, fresh, reused])
    assert [r.task_uuid for r in outcome.results] == [fresh.task_uuid]
    assert outcome.error_for(failing.task_uuid).code == "inferenceError"  # type: ignore[union-attr]
    conflict = outcome.error_for(reused.task_uuid)
    assert conflict is not None and (conflict.code, conflict.parameter) == ("conflictTaskUUID", "taskUUID")


# --- errors and retries --------------------------------------------------------------------------------------------


def test_a_wrong_key_is_an_auth_error(sim: Sim) -> None:
    with RunwareClient(sim.v1, "wrong", retry=RETRY) as wrong, pytest.raises(ProviderAuthError) as caught:
        wrong.infer([task()])
    assert (caught.value.status_code, caught.value.provider_code, caught.value.field) == (
        401,
        "invalidApiKey",
        "apiKey",
    )


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (402, ProviderPaymentRequired, "insufficientCredits"),
        (403, ProviderAuthError, "forbidden"),
        (404, ProviderNotFound, "notFound"),
        (400, ProviderRejected, "validationFailed"),
        (500, ProviderUnavailable, "internalServerError"),
    ],
)
def test_statuses_that_are_not_transient_fail_at_once(
    sim: Sim, client: RunwareClient, status: int, kind: type[ProviderError], code: str
) -> None:
    sim.configure(inject_statuses=[status])
    with pytest.raises(kind) as caught:
        client.infer([task()])
    assert (type(caught.value), caught.value.status_code, caught.value.provider_code) == (kind, status, code)
    assert sim.counters()["requests_received"] == 1


def test_a_rejected_task_is_not_retried(sim: Sim, client: RunwareClient) -> None:
    once = task()
    client.infer([once])
    with pytest.raises(ProviderRejected) as caught:
        client.infer([once])
    assert (caught.value.provider_code, caught.value.field) == ("conflictTaskUUID", "taskUUID")
    assert sim.counters()["requests_received"] == 2


def test_429_503_504_are_retried_with_backoff(sim: Sim, client: RunwareClient) -> None:
    sim.configure(inject_statuses=[503, 504])
    assert len(client.infer([task()]).results) == 1
    sim.configure(rate_limit_burst=2)
    assert len(client.infer([task()]).results) == 1
    counters = sim.counters()
    assert counters["requests_received"] == 6
    assert counters["rate_limited"]["injected"] == 2
    assert counters["tasks_executed"] == 2


def test_rate_limited_after_retries_run_out(sim: Sim, client: RunwareClient) -> None:
    sim.configure(rate_limit_burst=5)
    with pytest.raises(ProviderRateLimited) as caught:
        client.infer([task()])
    assert caught.value.provider_code == "rateLimitExceeded"
    assert sim.counters()["requests_received"] == RETRY.attempts


def test_nothing_listening_is_provider_unavailable() -> None:
    nowhere = RunwareClient(f"http://127.0.0.1:{free_port()}/v1", "k", retry=RETRY)
    with nowhere, pytest.raises(ProviderUnavailable, match="ConnectError"):
        nowhere.infer([task()])


# --- never pay twice -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "hang", "lose"])
def test_a_lost_answer_is_recovered_and_the_task_is_charged_once(sim: Sim, mode: str) -> None:
    sim.configure(drop_next_responses=1, drop_mode=mode, latency_s=0.05)
    job = task(number_results=2)
    with RunwareClient(sim.v1, "sim-key", timeout_s=0.5, retry=RETRY, recovery=POLL) as client:
        outcome = client.infer_or_recover(job)
    assert len(outcome.results) == 2
    assert outcome.total_cost == pytest.approx(0.0026)
    counters = sim.counters()
    assert counters["dropped_responses"] == {mode: 1}
    assert counters["executed_by_task"] == {job.task_uuid: 1}
    assert counters["tasks_executed"] == 1
    assert counters["get_response_calls"] >= 1
    # "lose": Runware never saw the task, so the same taskUUID was submitted a second time.
    assert counters["tasks_received"] == (2 if mode == "lose" else 1)


def test_a_slow_task_is_polled_until_done_after_the_answer_times_out(sim: Sim) -> None:
    sim.configure(latency_s=0.8)
    job = task()
    with RunwareClient(sim.v1, "sim-key", timeout_s=0.3, retry=RETRY, recovery=POLL) as client:
        outcome = client.infer_or_recover(job)
    assert len(outcome.results) == 1
    assert sim.counters()["executed_by_task"] == {job.task_uuid: 1}


def test_a_task_sent_before_a_crash_is_found_not_paid_again(sim: Sim, client: RunwareClient) -> None:
    job = task()
    first = client.infer([job])
    for maybe_sent in (True, False):
        again = client.infer_or_recover(job, maybe_sent=maybe_sent)
        assert [r.image_uuid for r in again.results] == [r.image_uuid for r in first.results]
    assert sim.counters()["tasks_executed"] == 1


def test_async_client_respects_the_account_cap_by_retrying_429s(sim: Sim) -> None:
    sim.configure(concurrency_cap=2, latency_s=0.3)
    jobs = [task() for _ in range(5)]
    patient = RetryPolicy(attempts=12, initial_s=0.05, max_s=0.2, jitter_s=0.05)

    async def main() -> list[int]:
        async with AsyncRunwareClient(sim.v1, "sim-key", timeout_s=5.0, retry=patient, recovery=POLL) as client:
            outcomes = await asyncio.gather(*(client.infer_or_recover(job) for job in jobs))
        return [len(outcome.results) for outcome in outcomes]

    assert asyncio.run(main()) == [1] * 5
    counters = sim.counters()
    assert counters["max_in_flight"] == 2
    assert counters["rate_limited"]["cap"] >= 1
    assert counters["tasks_executed"] == 5
    assert counters["tasks_executed_max_per_task"] == 1
