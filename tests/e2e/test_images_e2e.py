"""Phase 2 end to end: image batches through real workers and the Runware simulator, under a shared limit."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from strangler_bridge.settings import Settings
from tests.support.stack import StackFactory, create, follow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n"


def image_body(n: int, **extra: Any) -> dict[str, Any]:
    images = [{"prompt": f"a lighthouse, picture {i}"} for i in range(n)]
    return {"images": images, "width": 256, "height": 256, **extra}


def test_batch_of_40_images_completes_with_every_png_downloadable(make_stack: StackFactory) -> None:
    stack = make_stack(runware_concurrency=8)
    created = create(stack, "/imagegen/batch", image_body(40))
    with stack.client() as client:
        status = follow(client, f"/imagegen/batch/{created['id']}")
        assert status["status"] == "completed", status
        assert status["progress"] == {"done": 40, "failed": 0, "total": 40}
        for image in status["images"]:
            response = client.get(image["image_url"])
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            assert response.content.startswith(PNG)
    counters = stack.counters("runware")
    assert counters["tasks_executed"] == 40
    assert counters["tasks_executed_max_per_task"] == 1
    assert status["cost_total"] == pytest.approx(counters["cost_total"])


def test_two_workers_never_exceed_the_provider_cap(make_stack: StackFactory) -> None:
    cap = 3
    stack = make_stack(workers=2, runware_concurrency=cap, runware={"concurrency_cap": cap, "latency_s": 0.2})
    batches = [create(stack, "/imagegen/batch", image_body(12)) for _ in range(2)]
    with stack.client() as client:
        statuses = [follow(client, f"/imagegen/batch/{b['id']}") for b in batches]
    assert [s["status"] for s in statuses] == ["completed", "completed"]
    counters = stack.counters("runware")
    assert counters["max_in_flight"] <= cap
    assert counters["max_in_flight"] == cap  # the limit was actually reached, so the test could have failed
    assert counters["rate_limited"]["cap"] == 0


def test_429_bursts_and_failures_end_completed_or_with_runwares_reason(make_stack: StackFactory) -> None:
    stack = make_stack(runware={"rate_limit_burst": 4, "fail_next_tasks": 3, "inject_statuses": [503, 504]})
    created = create(stack, "/imagegen/batch", image_body(10))
    with stack.client() as client:
        status = follow(client, f"/imagegen/batch/{created['id']}")
    assert status["status"] == "completed", status
    assert max(image["attempts"] for image in status["images"]) == 2  # the three failed tasks were tried again
    counters = stack.counters("runware")
    assert counters["tasks_executed_max_per_task"] == 1
    assert counters["tasks_failed"] == 3


def test_permanent_failure_carries_runwares_reason(make_stack: StackFactory) -> None:
    stack = make_stack(runware={"failure_rate": 1.0, "failure_code": "inferenceError"}, provider_attempts=2)
    created = create(stack, "/imagegen/batch", image_body(2))
    with stack.client() as client:
        status = follow(client, f"/imagegen/batch/{created['id']}")
    assert status["status"] == "failed"
    assert all(image["error"].startswith("Runware inferenceError") for image in status["images"])


def test_worker_killed_mid_batch_leaks_no_slot_and_pays_nothing_twice(
    make_stack: StackFactory, settings: Settings
) -> None:
    stack = make_stack(runware_concurrency=2, runware_lease_s=2.0, runware={"latency_s": 1.0})
    created = create(stack, "/imagegen/batch", image_body(6))
    wait_for(lambda: stack.counters("runware")["in_flight"] >= 1, timeout=20, what="images in flight")
    stack.workers[0].kill()
    stack.add_worker()
    with stack.client() as client:
        status = follow(client, f"/imagegen/batch/{created['id']}", timeout=90)
    assert status["status"] == "completed", status
    assert stack.counters("runware")["tasks_executed_max_per_task"] == 1
    client = redis.Redis.from_url(stack.settings.redis_url or "")
    key = f"{settings.redis_prefix}:limiter:runware"
    # The dead worker's leases were not renewed: they expire, and every slot is free once the work is done.
    wait_for(lambda: client.zcount(key, "-inf", "+inf") == 0 or _all_expired(client, key), timeout=10, what="slots")


def _all_expired(client: redis.Redis, key: str) -> bool:
    seconds, micros = client.time()
    return client.zcount(key, seconds + micros / 1e6, "+inf") == 0


def test_an_image_url_that_redirects_fails_the_image_at_once_with_the_reason(make_stack: StackFactory) -> None:
    stack = make_stack(runware={"redirect_image_urls": True}, provider_attempts=3)
    created = create(stack, "/imagegen/batch", {"images": [{"prompt": "a lighthouse"}], "width": 128, "height": 128})
    with stack.client() as client:
        status = follow(client, f"/imagegen/batch/{created['id']}", timeout=60)
    assert status["status"] == "failed", status
    image = status["images"][0]
    assert "redirect" in (image["error"] or "") and image["attempts"] == 1, image
    counters = stack.counters("runware")
    assert counters["image_redirects"] == 1 and counters["tasks_executed_max_per_task"] == 1, counters
