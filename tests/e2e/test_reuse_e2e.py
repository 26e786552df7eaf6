"""Pay once (issue 20): identical audio and images are reused, and identical work in flight is made once.

The simulators' counters are the proof: RunPod's ``chunks_received`` and Runware's ``tasks_received`` count
what the service paid for.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from strangler_bridge.cli.devstack import DevStack
from tests.support.stack import StackFactory, create, follow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

RUNPOD_USD_PER_S = 0.00031


@pytest.fixture
def stack_defaults() -> dict[str, Any]:
    return {"tts_group_size": 4, "runpod_usd_per_s": RUNPOD_USD_PER_S}


def script(n: int, **extra: Any) -> dict[str, Any]:
    """A job of ``n`` sentences whose pictures have a fixed seed (so they are reusable)."""
    return {
        "chunks": [{"text": f"Sentence number {i} of the lighthouse story."} for i in range(n)],
        "voice": "narrator",
        "image_style": "watercolour",
        "images": {"width": 128, "height": 128, "seed": 42},
        "video": {"width": 160, "height": 120, "fps": 5},
        **extra,
    }


def image_batch(prompt: str = "a lighthouse at dawn", **extra: Any) -> dict[str, Any]:
    image = {"prompt": prompt, **extra.pop("image", {"seed": 7})}
    return {"images": [image], "width": 128, "height": 128, **extra}


def paid(stack: DevStack) -> tuple[int, int]:
    """``(chunks sent to RunPod, tasks sent to Runware)`` so far."""
    return stack.counters("runpod")["chunks_received"], stack.counters("runware")["tasks_received"]


def run_job(stack: DevStack, body: dict[str, Any]) -> dict[str, Any]:
    created = create(stack, "/jobs", body)
    with stack.client() as client:
        job = follow(client, f"/jobs/{created['id']}", timeout=180)
    assert job["status"] == "completed", job
    return job


def run_batch(stack: DevStack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    created = create(stack, path, body)
    with stack.client() as client:
        status = follow(client, f"{path}/{created['id']}", timeout=120)
    assert status["status"] == "completed", status
    return status


def download(client: httpx.Client, path: str) -> bytes:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.content


def test_an_edited_script_pays_for_one_chunks_audio_and_one_image(make_stack: StackFactory) -> None:
    stack = make_stack()
    first = run_job(stack, script(20))
    after_first = paid(stack)
    assert after_first == (20, 20)
    tts_cost = first["steps"][0]["cost"]
    assert tts_cost is not None and tts_cost > 0  # RunPod's executionTime x STRANGLER_RUNPOD_USD_PER_S
    assert first["reused"] == 0 and first["cost_saved"] is None

    edited = script(20)
    edited["chunks"][7]["text"] = "A sentence the editor rewrote entirely."
    second = run_job(stack, edited)
    chunks, tasks = paid(stack)
    assert (chunks - after_first[0], tasks - after_first[1]) == (1, 1)
    assert second["reused"] == 38  # 19 chunks' audio and 19 images
    tts, _, images, _ = second["steps"]
    assert (tts["reused"], images["reused"]) == (19, 19)
    # What was saved is what those items cost the first time: 19 of 20 images at the simulator's price.
    assert images["cost_saved"] == pytest.approx(first["steps"][2]["cost"] * 19 / 20, rel=1e-6)
    assert second["cost_saved"] == pytest.approx(tts["cost_saved"] + images["cost_saved"], rel=1e-6)
    assert second["cost_total"] < first["cost_total"] / 10
    with stack.client() as client:
        old, new = (client.get(f"/jobs/{job['id']}/files").json() for job in (first, second))
        for kind in ("audio", "images"):
            for before, after in zip(old[kind], new[kind], strict=True):
                if before["index"] == 7:
                    continue
                assert download(client, after["url"]) == download(client, before["url"])  # byte-identical copies
        assert download(client, new["audio"][7]["url"]) != download(client, old["audio"][7]["url"])
    assert stack.counters("video")["submits_total"] == 2  # the video itself is rendered again


def test_twenty_identical_images_in_flight_make_one_runware_call(make_stack: StackFactory) -> None:
    stack = make_stack(runware={"latency_s": 1.0})
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(lambda _: run_batch(stack, "/imagegen/batch", image_batch()), range(20)))
    assert paid(stack)[1] == 1
    assert sum(status["reused"] for status in statuses) == 19
    with stack.client() as client:
        images = {download(client, status["images"][0]["image_url"]) for status in statuses}
    assert len(images) == 1


def test_twenty_identical_chunks_of_one_batch_make_one_runpod_chunk(make_stack: StackFactory) -> None:
    stack = make_stack(runpod={"execution_time_s": 0.5})
    body = {"chunks": [{"text": "Again and again."} for _ in range(20)], "voice": "v1"}
    status = run_batch(stack, "/tts/batch", body)
    assert paid(stack)[0] == 1
    assert stack.counters("runpod")["jobs_received_total"] == 1
    assert status["reused"] == 19
    with stack.client() as client:
        audio = {download(client, chunk["audio_url"]) for chunk in status["chunks"]}
    assert len(audio) == 1


def test_waiting_items_survive_a_worker_restart(make_stack: StackFactory) -> None:
    stack = make_stack(runware={"latency_s": 2.0}, runware_lease_s=2.0)
    first = create(stack, "/imagegen/batch", image_batch())
    wait_for(lambda: stack.counters("runware")["in_flight"] >= 1, timeout=30, what="the first image in flight")
    second = create(stack, "/imagegen/batch", image_batch())
    with stack.client() as client:
        wait_for(
            lambda: client.get(f"/imagegen/batch/{second['id']}").json()["status"] == "running",
            timeout=30,
            what="the identical image to wait",
        )
        stack.workers[0].kill()
        stack.add_worker()
        done = [follow(client, f"/imagegen/batch/{batch['id']}", timeout=120) for batch in (first, second)]
    assert [status["status"] for status in done] == ["completed", "completed"], done
    assert paid(stack)[1] == 1  # the restarted worker recovered the first task; the second waited for it
    assert stack.counters("runware")["tasks_executed"] == 1
    assert done[1]["reused"] == 1


def test_reuse_is_kept_across_a_worker_restart(make_stack: StackFactory) -> None:
    stack = make_stack()
    run_batch(stack, "/tts/batch", {"chunks": [{"text": "Kept in Redis."}], "voice": "v1"})
    stack.workers[0].kill()
    stack.add_worker()
    status = run_batch(stack, "/tts/batch", {"chunks": [{"text": "Kept in Redis."}], "voice": "v1"})
    assert status["reused"] == 1 and paid(stack)[0] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"image": {"seed": 8}},
        {"width": 192},
        {"height": 192},
        {"model": "runware:101@1"},
        {"format": "JPG"},
        {"style": "oil painting"},
        {"image": {"seed": 7, "negative_prompt": "fog"}},
    ],
    ids=["seed", "width", "height", "model", "format", "style", "negative_prompt"],
)
def test_a_different_image_is_never_reused(make_stack: StackFactory, change: dict[str, Any]) -> None:
    stack = make_stack()
    run_batch(stack, "/imagegen/batch", image_batch())
    status = run_batch(stack, "/imagegen/batch", image_batch(**copy.deepcopy(change)))
    assert paid(stack)[1] == 2 and status["reused"] == 0


def test_a_different_voice_or_text_is_never_reused(make_stack: StackFactory) -> None:
    stack = make_stack()
    base = {"chunks": [{"text": "The same words."}], "voice": "v1"}
    run_batch(stack, "/tts/batch", base)
    for other in (
        {**base, "voice": "v2"},
        {**base, "chunks": [{"text": "The same words!"}]},
        {**base, "chunks": [{"text": "The same words.", "voice": "v3"}]},
    ):
        assert run_batch(stack, "/tts/batch", other)["reused"] == 0
    assert paid(stack)[0] == 4


def test_unseeded_images_are_made_anew_unless_the_request_opts_in(make_stack: StackFactory) -> None:
    stack = make_stack()
    unseeded = image_batch(image={})
    run_batch(stack, "/imagegen/batch", unseeded)
    assert run_batch(stack, "/imagegen/batch", unseeded)["reused"] == 0
    assert paid(stack)[1] == 2
    by_prompt = {**unseeded, "reuse": "prompt"}
    run_batch(stack, "/imagegen/batch", by_prompt)
    assert run_batch(stack, "/imagegen/batch", by_prompt)["reused"] == 1
    assert paid(stack)[1] == 3


def test_reuse_false_pays_again(make_stack: StackFactory) -> None:
    stack = make_stack()
    run_job(stack, script(2))
    again = run_job(stack, script(2, reuse=False))
    assert again["reused"] == 0
    assert paid(stack) == (4, 4)
    assert run_batch(stack, "/tts/batch", {"chunks": [{"text": "x y z"}], "reuse": False})["reused"] == 0
    assert run_batch(stack, "/tts/batch", {"chunks": [{"text": "x y z"}], "reuse": False})["reused"] == 0
    assert paid(stack)[0] == 6


def test_a_deployment_with_reuse_off_pays_for_everything(make_stack: StackFactory) -> None:
    stack = make_stack(reuse=False)
    body = {"chunks": [{"text": "Twice."}, {"text": "Twice."}], "voice": "v1"}
    run_batch(stack, "/tts/batch", body)
    assert run_batch(stack, "/tts/batch", body)["reused"] == 0
    assert paid(stack)[0] == 4


def test_a_failure_in_flight_ends_its_waiters_with_the_reason(make_stack: StackFactory) -> None:
    stack = make_stack(runware={"failure_rate": 1.0, "latency_s": 1.0}, provider_attempts=1)
    created = [create(stack, "/imagegen/batch", image_batch()) for _ in range(3)]
    with stack.client() as client:
        done = [follow(client, f"/imagegen/batch/{batch['id']}", timeout=120) for batch in created]
    assert [status["status"] for status in done] == ["failed"] * 3, done
    assert paid(stack)[1] == 1
    assert all("identical item in flight" in (status["images"][0]["error"] or "") for status in done[1:]), done
