"""Every job ends with a reason and nothing is paid twice, whatever the providers do (issue 14, parts 1 and 2).

Each test is a regression for one example of the issue, driven through the real API, workers and simulators.
"""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.providers.runware.models import MAX_SEED
from tests.support.stack import StackFactory, create, follow, tts_body
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _job_body(chunks: int = 3) -> dict[str, Any]:
    return {
        "chunks": [{"text": f"liveness sentence number {k}."} for k in range(chunks)],
        "voice": "narrator",
        "images": {"width": 256, "height": 256},
        "video": {"width": 160, "height": 120, "fps": 5},
        "video_id": "vid-liveness",
    }


def _failure_count(client: httpx.Client, phase: str, reason: str) -> float:
    text = client.get("/metrics").text
    pattern = rf'^strangler_terminal_failures_total\{{phase="{phase}",reason="{reason}"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _refused_host(stack: DevStack, name: str) -> str:
    """The simulator's own address spelled with a loopback host name the service refuses to fetch from."""
    return stack.servers[name].url.replace("127.0.0.1", "localhost")


def test_an_image_that_can_never_be_stored_fails_at_once_with_its_reason(make_stack: StackFactory) -> None:
    stack = make_stack(provider_attempts=3)
    stack.set_knobs("runware", public_url=_refused_host(stack, "runware"))
    created = create(stack, "/imagegen/batch", {"images": [{"prompt": "a lighthouse"}, {"prompt": "a boat"}]})
    with stack.client() as client:
        status = follow(client, f"/imagegen/batch/{created['id']}", timeout=60)
        assert status["status"] == "failed", status
        assert "refusing to fetch" in (status["error"] or ""), status
        for image in status["images"]:
            assert image["status"] == "failed" and "refusing to fetch" in image["error"], image
            assert image["attempts"] == 1, image  # not recovered through getResponse again and again
        assert _failure_count(client, "imagegen", "unusable_output") == 1
    counters = stack.counters("runware")
    assert counters["tasks_executed_max_per_task"] == 1
    assert counters["get_response_calls"] == 0


def test_a_request_runware_rejects_for_good_fails_at_once_with_runwares_message(make_stack: StackFactory) -> None:
    stack = make_stack(provider_attempts=3)
    stack.set_knobs("runware", inject_statuses=[400])  # e.g. a value outside a range Runware enforces
    created = create(stack, "/imagegen/batch", {"images": [{"prompt": "a lighthouse"}]})
    with stack.client() as client:
        status = follow(client, f"/imagegen/batch/{created['id']}", timeout=60)
    assert status["status"] == "failed", status
    assert "Runware rejected the task" in status["images"][0]["error"], status
    assert status["images"][0]["attempts"] == 1, status
    assert stack.counters("runware")["tasks_received"] <= 1


def test_a_value_runware_refuses_is_refused_up_front_or_fails_the_image_at_once(make_stack: StackFactory) -> None:
    stack = make_stack(provider_attempts=3)
    body = {"images": [{"prompt": "a lighthouse", "seed": MAX_SEED + 1}]}
    with stack.client() as client:
        response = client.post("/imagegen/batch", json=body)
        if response.status_code == 422:  # the contract knows Runware's range
            assert response.json()["error"]["field"] == "images.0.seed", response.text
            return
        assert response.status_code == 202, response.text
        status = follow(client, f"/imagegen/batch/{response.json()['id']}", timeout=60)
    assert status["status"] == "failed", status
    image = status["images"][0]
    assert "seed" in image["error"] and image["attempts"] == 1, image
    assert stack.counters("runware")["tasks_received"] == 0


def test_a_partial_runpod_output_resubmits_only_the_missing_chunks(make_stack: StackFactory) -> None:
    stack = make_stack(tts_group_size=3, runpod={"partial_outputs": 1})
    created = create(stack, "/tts/batch", tts_body(3))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}")
    assert status["status"] == "completed", status
    counters = stack.counters("runpod")
    assert counters["partial_outputs"] == 1
    assert counters["jobs_received_total"] == 2  # the whole group, then only the chunk its output lacked
    assert counters["max_executions_per_input"] == 1


def test_retrying_a_job_whose_output_lacked_chunks_finishes_it(make_stack: StackFactory) -> None:
    stack = make_stack(tts_group_size=3, provider_attempts=1, runpod={"partial_outputs": 1})
    with stack.client() as client:
        job = client.post("/jobs", json=_job_body()).json()
        failed = follow(client, f"/jobs/{job['id']}")
        assert failed["status"] == "failed" and "no output for item(s) 2" in failed["error"], failed
        tts = client.get(f"/tts/batch/{failed['steps'][0]['batch_id']}").json()
        assert tts["status"] == "failed" and tts["chunks"][2]["error"], tts
        assert client.post(f"/jobs/{job['id']}/retry").status_code in (200, 202)
        done = follow(client, f"/jobs/{job['id']}", timeout=90)
    assert done["status"] == "completed", done
    assert stack.counters("runpod")["max_executions_per_input"] == 1


def test_audio_finished_while_a_job_is_cancelled_is_kept_and_the_retry_does_not_pay_again(
    make_stack: StackFactory,
) -> None:
    # The webhook is held long enough to cancel in between; no reconcile poll gets there first.
    stack = make_stack(reconcile_after_s=60.0, runpod={"webhook_faults": {"extra_delay_s": 1.5}})
    with stack.client() as client:
        job = client.post("/jobs", json=_job_body(2)).json()
        wait_for(lambda: stack.counters("runpod")["outcomes"].get("COMPLETED", 0) >= 1, timeout=30, what="RunPod done")
        assert client.post(f"/jobs/{job['id']}/cancel").status_code in (200, 202)
        batch_id = client.get(f"/jobs/{job['id']}").json()["steps"][0]["batch_id"]

        def stored() -> bool:
            chunks = client.get(f"/tts/batch/{batch_id}").json()["chunks"]
            return all(chunk["status"] == "completed" for chunk in chunks)

        wait_for(stored, timeout=30, what="the late webhook's audio stored on the cancelled batch")
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "cancelled"
        assert client.post(f"/jobs/{job['id']}/retry").status_code in (200, 202)
        done = follow(client, f"/jobs/{job['id']}", timeout=90)
    assert done["status"] == "completed", done
    assert stack.counters("runpod")["jobs_received_total"] == 1


def _wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as reader:
        return reader.getnframes() / reader.getframerate()


def test_differing_deliveries_at_the_same_moment_leave_the_recorded_file_on_disk(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(
        workers=2, tts_group_size=2, runpod={"webhook_faults": {"duplicates": 3, "differing_duplicates": True}}
    )
    created = create(stack, "/tts/batch", tts_body(6))
    with stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}")
        assert status["status"] == "completed", status
        for chunk in status["chunks"]:
            audio = client.get(chunk["audio_url"]).content
            assert len(audio) == chunk["size_bytes"], chunk
            assert _wav_seconds(audio) == pytest.approx(chunk["duration_s"], abs=1e-3), chunk
    assert stack.counters("runpod")["webhooks"]["differing"] == 3 * 3
    stored = list((stack.settings.artifacts_dir / "tts" / created["id"]).glob("*.wav"))
    assert len(stored) == 6, stored  # the losing deliveries' files were removed
