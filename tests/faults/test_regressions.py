"""Regressions the fault matrix found, each pinned down by a small deterministic run of the real stack."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastapi_app.store.docstore import Effects
from strangler_bridge.audio import tone_wav
from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.settings import Settings
from tests.support.stack import create, follow, tts_body
from tests.support.waiting import wait_for

pytestmark = pytest.mark.faults


@pytest.fixture
def slow_submit_stack(settings: Settings, tmp_path: Path) -> Iterator[DevStack]:
    # Three 503s in a row: the client's own retries (with back-off) keep one /run call going for longer than
    # the claim's lease, while the reconciler looks every 0.1 s for lapsed claims.
    base = settings.model_copy(update={"reconcile_after_s": 0.5, "reconcile_interval_s": 0.1, "tts_group_size": 10})
    runpod = {"execution_time_s": 0.05, "webhook_retry_delay_s": 0.05, "http_faults": {"run": [503, 503, 503]}}
    with DevStack(base, workers=2, runpod=runpod, log_dir=tmp_path / "stack") as stack:
        yield stack


def test_a_slow_submit_keeps_its_claim_so_runpod_never_gets_the_group_twice(slow_submit_stack: DevStack) -> None:
    created = create(slow_submit_stack, "/tts/batch", tts_body(3))
    with slow_submit_stack.client() as client:
        status = follow(client, f"/tts/batch/{created['id']}", timeout=60)
    assert status["status"] == "completed", status
    counters = slow_submit_stack.counters("runpod")
    assert counters["injected_faults"] == 3, counters
    assert counters["jobs_received_total"] == 1, counters
    assert counters["max_executions_per_input"] == 1, counters


def test_creating_the_render_again_after_a_crash_finds_the_first_one(settings: Settings, tmp_path: Path) -> None:
    # A worker that dies (or loses Redis) between creating a job's render and recording it on the job leaves the
    # video step pending; the next advance creates the render again under the same Idempotency-Key. That must
    # find the first render, not fail the job because the signed links in the body were signed at another time.
    from fastapi_app.pipeline.orchestrator import advance
    from fastapi_app.runtime import Runtime
    from fastapi_app.store.job import JobRecord
    from strangler_bridge.contracts.common import BatchStatus, ItemStatus
    from strangler_bridge.contracts.jobs import StepName

    base = settings.model_copy(update={"reconcile_after_s": 1.5, "reconcile_interval_s": 0.2})
    stack = DevStack(
        base, workers=1, runpod={"execution_time_s": 0.05}, video={"force_placeholder": True}, log_dir=tmp_path / "s"
    )
    with stack, stack.client() as client:
        created = create(stack, "/jobs", {"chunks": [{"text": "One."}, {"text": "Two."}], "video": {"width": 64}})
        job = follow(client, f"/jobs/{created['id']}", timeout=60)
        assert job["status"] == "completed", job
        render_id = job["steps"][3]["batch_id"]
        rt = Runtime.build(stack.settings)
        try:
            render = rt.batches.load(render_id)
            assert render is not None
            wait_for(lambda: time.time() > render.created_at + 1.5, timeout=5, what="a later second")

            def lose_the_render(record: JobRecord) -> tuple[Effects, None]:
                step = record.step(StepName.VIDEO)
                step.status, step.batch_id, step.finished_at = ItemStatus.PENDING, None, None
                record.status = BatchStatus.RUNNING
                return Effects(), None

            rt.jobs.update(created["id"], lose_the_render)
            advance(rt, created["id"])
            again = rt.jobs.load(created["id"])
        finally:
            rt.close()
    assert again is not None and again.status is BatchStatus.COMPLETED, again
    assert again.step(StepName.VIDEO).batch_id == render_id


def test_a_render_waits_for_the_api_serving_its_assets_instead_of_failing(settings: Settings, tmp_path: Path) -> None:
    # Found by the api-restart row: renders sent while the API (which serves their assets) was restarting
    # failed at the video service's download, each costing an attempt and a second render. They must wait.
    from fastapi_app.api.artifact_links import link
    from fastapi_app.renders.service import create_render
    from fastapi_app.runtime import Runtime
    from strangler_bridge.contracts.video import VideoRenderCreate

    base = settings.model_copy(update={"reconcile_after_s": 1.0, "reconcile_interval_s": 0.1})
    stack = DevStack(base, workers=1, video={"force_placeholder": True}, log_dir=tmp_path / "s")
    with stack:
        assert stack.api is not None
        stack.api.kill()
        rt = Runtime.build(stack.settings)
        try:
            rt.artifacts.put("held/a.wav", tone_wav(0.5))
            rt.artifacts.put("held/i.png", b"\x89PNG\r\n\x1a\n" + bytes(64))
            segment = {"index": 0, "start_s": 0.0, "end_s": 0.5, "text": "Hi."}
            links = {"audio_url": link(rt, "held/a.wav"), "image_url": link(rt, "held/i.png")}
            body = VideoRenderCreate.model_validate({"video_id": "held", "segments": [{**segment, **links}]})
            render, _ = create_render(rt, body, idempotency_key=None)  # queues its submission too
        finally:
            rt.close()
        worker = stack.workers[0]
        wait_for(lambda: worker.output().count("held back") >= 2, timeout=30, what="the render held back twice")
        assert stack.counters("video")["renders_submitted"] == 0
        stack.start_api()
        with stack.client() as client:
            status = follow(client, f"/video/render/{render.id}", timeout=60)
        counters = stack.counters("video")
    assert status["status"] == "completed", status
    assert status["attempts"] == 1, status
    assert counters["renders_failed"] == 0, counters
    assert list(counters["renders_executed"].values()) == [1], counters
