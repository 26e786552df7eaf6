"""Phase 1 end to end: API, real RQ workers, real Redis and the RunPod simulator over HTTP, with faults."""

from __future__ import annotations

import io
import wave
from typing import Any

import pytest

from tests.support.stack import StackFactory, create, follow, tts_body
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack_defaults() -> dict[str, Any]:
    return {"tts_group_size": 2}


def _wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


def test_batch_of_20_chunks_completes_with_valid_audio(make_stack: StackFactory) -> None:
    stack = make_stack(tts_group_size=5)
    created = create(stack, "/tts/batch", tts_body(20))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}")
        assert status["status"] == "completed", status
        assert status["progress"] == {"done": 20, "failed": 0, "total": 20}
        for chunk in status["chunks"]:
            response = client.get(chunk["audio_url"])
            assert response.status_code == 200
            assert response.headers["content-type"] == "audio/wav"
            assert _wav_seconds(response.content) == pytest.approx(chunk["duration_s"], abs=1e-3)
            assert chunk["duration_s"] > 0.2
    counters = stack.counters("runpod")
    assert counters["jobs_received_total"] == 4
    assert counters["max_executions_per_input"] == 1


@pytest.mark.parametrize(
    ("name", "knobs"),
    [
        ("duplicated webhooks", {"webhook_faults": {"duplicates": 2}}),
        ("half the webhooks lost", {"webhook_faults": {"lost_rate": 0.5}}),
        ("reordered late webhooks", {"webhook_faults": {"reorder": "reverse", "extra_delay_s": [0.0, 0.5]}}),
        ("empty webhook bodies", {"webhook_faults": {"empty_body_rate": 0.5}}),
        ("webhook before the submit is recorded", {"run_response_delay_s": 0.4, "execution_time_s": 0.0}),
    ],
)
def test_webhook_faults_never_lose_or_repeat_work(make_stack: StackFactory, name: str, knobs: dict[str, Any]) -> None:
    stack = make_stack(runpod=knobs)
    created = create(stack, "/tts/batch", tts_body(8))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}")
    assert status["status"] == "completed", (name, status)
    counters = stack.counters("runpod")
    assert counters["max_executions_per_input"] == 1, (name, counters)
    assert counters["jobs_received_total"] == 4, (name, counters)


def test_failure_then_success_is_retried(make_stack: StackFactory) -> None:
    stack = make_stack(runpod={"fail_first_executions": 1})
    created = create(stack, "/tts/batch", tts_body(4))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}")
    assert status["status"] == "completed", status
    assert {chunk["attempts"] for chunk in status["chunks"]} == {2}
    counters = stack.counters("runpod")
    assert set(counters["executions_by_input"].values()) == {2}  # exactly the one forced retry per group


def test_permanent_failure_fails_with_the_providers_reason(make_stack: StackFactory) -> None:
    stack = make_stack(runpod={"failure_rate": 1.0}, provider_attempts=3)
    created = create(stack, "/tts/batch", tts_body(4))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}")
    assert status["status"] == "failed"
    assert status["progress"]["failed"] == 4
    assert all(chunk["error"] and chunk["error"].startswith("RunPod FAILED") for chunk in status["chunks"])
    assert set(stack.counters("runpod")["executions_by_input"].values()) == {3}


def test_audio_by_url_is_downloaded_into_the_artifact_store(make_stack: StackFactory) -> None:
    stack = make_stack(runpod={"output_mode": "url"})
    created = create(stack, "/tts/batch", tts_body(3))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}")
        assert status["status"] == "completed", status
        audio = client.get(status["chunks"][2]["audio_url"])
    assert _wav_seconds(audio.content) == pytest.approx(status["chunks"][2]["duration_s"], abs=1e-3)


def test_worker_killed_mid_submit_loses_and_repeats_nothing(make_stack: StackFactory) -> None:
    # Each /run answer is held back, so the worker is killed while it waits for RunPod, after the job exists.
    stack = make_stack(runpod={"run_response_delay_s": 1.0}, reconcile_after_s=3.0)
    created = create(stack, "/tts/batch", tts_body(8))
    wait_for(lambda: stack.counters("runpod")["jobs_received_total"] >= 1, timeout=20, what="a first submission")
    stack.workers[0].kill()
    stack.add_worker()
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}", timeout=90)
    assert status["status"] == "completed", status
    counters = stack.counters("runpod")
    assert counters["max_executions_per_input"] == 1, counters
    assert counters["jobs_received_total"] == 4, counters


@pytest.mark.parametrize("output_mode", ["base64", "url"])
def test_a_wav_header_that_lies_about_its_size_is_measured_from_the_samples(
    make_stack: StackFactory, output_mode: str
) -> None:
    stack = make_stack(runpod={"lying_wav_header": True, "output_mode": output_mode})
    created = create(stack, "/tts/batch", tts_body(2))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}")
        assert status["status"] == "completed", status
        for chunk in status["chunks"]:
            audio = client.get(chunk["audio_url"]).content
            samples = (len(audio) - 44) / 2 / 16_000  # the simulator's WAVs: 44-byte header, 16-bit mono, 16 kHz
            assert chunk["duration_s"] == pytest.approx(samples, abs=1e-3)  # not the 134,217 s the header claims
            assert chunk["size_bytes"] == len(audio)
