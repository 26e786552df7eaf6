"""BridgeClient for image batches, video renders and pipeline jobs: the same core, typed per kind."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from flask_plugin import BatchFailed, BridgeClient, Deadline
from flask_plugin.media import image_size, mp4_duration
from flask_plugin.testing import FakeService
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.contracts.images import ImageBatchCreate
from strangler_bridge.contracts.jobs import JobCreate
from strangler_bridge.contracts.video import VideoRenderCreate
from strangler_bridge.errors import ServiceError

pytestmark = pytest.mark.unit

IMAGES = ImageBatchCreate.model_validate(
    {"images": [{"prompt": "a bridge at dawn"}, {"prompt": "a crowd"}], "width": 256, "height": 128, "video_id": "v1"}
)
RENDER = VideoRenderCreate.model_validate(
    {
        "segments": [
            {"index": i, "start_s": i, "end_s": i + 1.0, "audio_url": f"http://a/{i}", "image_url": f"http://i/{i}"}
            for i in range(3)
        ],
        "video_id": "v1",
    }
)
JOB = JobCreate.model_validate({"chunks": [{"text": "Hello there."}, {"text": "Bye now."}], "video_id": "v1"})


def _spy(fake: FakeService) -> tuple[BridgeClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake.handle(request)

    return BridgeClient(fake.base_url, fake.token, transport=httpx.MockTransport(handler)), seen


# --- image batches ------------------------------------------------------------------------------------


def test_image_batch_round_trip_downloads_every_image(tmp_path: Path) -> None:
    fake = FakeService(polls_to_complete=2)
    client, seen = _spy(fake)
    status = client.run_image_batch(IMAGES, 5)
    assert status.status is BatchStatus.COMPLETED
    paths = client.download_images(status, tmp_path / "img")
    assert [p.name for p in paths.values()] == ["image_0000.png", "image_0001.png"]
    assert image_size(paths[1]) == (256, 128)
    create = seen[0]
    assert (create.method, create.url.path) == ("POST", "/imagegen/batch")
    assert create.headers["idempotency-key"].startswith("imagegen:v1:")
    assert [r.url.path for r in seen[1:3]] == [f"/imagegen/batch/{status.id}"] * 2


def test_image_batch_get_and_wait_are_typed() -> None:
    fake = FakeService(polls_to_complete=3)
    client = fake.client()
    created = client.create_image_batch(IMAGES)
    assert client.get_image_batch(created.id).status is BatchStatus.RUNNING
    assert client.wait_image_batch(created.id, Deadline(5), since=created.version).images[0].image_url


def test_a_failed_image_batch_names_itself() -> None:
    with pytest.raises(BatchFailed, match=r"image batch img_\w+ ended failed: scripted failure"):
        FakeService(fail_batches=True).client().run_image_batch(IMAGES, 5)


def test_an_image_without_a_file_is_reported_with_its_status(tmp_path: Path) -> None:
    fake = FakeService(polls_to_complete=10)
    client = fake.client()
    status = client.create_image_batch(IMAGES)
    with pytest.raises(ServiceError, match=r"image 0 \(status submitted\) has no file"):
        client.download_images(status, tmp_path)


# --- video renders ------------------------------------------------------------------------------------


def test_video_render_round_trip(tmp_path: Path) -> None:
    fake = FakeService(polls_to_complete=1)
    client, seen = _spy(fake)
    status = client.run_video_render(RENDER, 5)
    assert status.video_url == f"/video/render/{status.id}/video"
    client.download_render_video(status, tmp_path / "v.mp4")
    assert mp4_duration(tmp_path / "v.mp4") == pytest.approx(3.0)
    assert seen[0].url.path == "/video/render"
    assert json.loads(seen[0].content)["segments"][2]["audio_url"] == "http://a/2"
    assert client.get_video_render(status.id).status is BatchStatus.COMPLETED
    assert client.wait_video_render(status.id, 1).id == status.id


def test_create_video_render_is_idempotent() -> None:
    fake = FakeService(polls_to_complete=5)
    client = fake.client()
    assert client.create_video_render(RENDER).id == client.create_video_render(RENDER).id
    assert len(fake.created("/video/render")) == 1


# --- jobs ---------------------------------------------------------------------------------------------


def test_job_round_trip_downloads_video_and_segments(tmp_path: Path) -> None:
    fake = FakeService(polls_to_complete=1)
    client = fake.client()
    status = client.run_job(JOB, 5)
    assert [step.status.value for step in status.steps] == ["completed"] * 4
    paths = client.download_job_files(status, tmp_path / "work")
    segments = json.loads(paths["segments"].read_text())
    assert [s["index"] for s in segments["segments"]] == [0, 1]
    assert mp4_duration(paths["video"]) == pytest.approx(segments["total_duration_s"], abs=1e-3)
    assert client.get_job(status.id).status is BatchStatus.COMPLETED
    assert client.wait_job(status.id, 1).version == status.version


def test_retry_and_cancel_post_to_the_job() -> None:
    fake = FakeService(polls_to_complete=5)
    client, seen = _spy(fake)
    job = client.create_job(JOB)
    cancelled = client.cancel_job(job.id)
    assert cancelled.status is BatchStatus.CANCELLED
    assert client.retry_job(job.id).status is BatchStatus.RUNNING
    assert [(r.method, r.url.path) for r in seen[1:]] == [
        ("POST", f"/jobs/{job.id}/cancel"),
        ("POST", f"/jobs/{job.id}/retry"),
    ]


def test_a_conflicting_action_is_a_409_service_error() -> None:
    client = FakeService().client()
    job = client.create_job(JOB)  # completed at once
    with pytest.raises(ServiceError) as caught:
        client.retry_job(job.id)
    assert (caught.value.status_code, caught.value.service_code) == (409, "conflict")


def test_actions_are_not_resent_after_a_read_timeout() -> None:
    fake = FakeService(polls_to_complete=5)
    client = fake.client()
    job = client.create_job(JOB)

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    fake.script("POST", f"/jobs/{job.id}/cancel", timeout)
    with pytest.raises(ServiceError):
        client.cancel_job(job.id)
    assert fake.count("POST", f"/jobs/{job.id}/cancel") == 1


def test_asking_again_for_a_failed_job_resumes_it() -> None:
    fake = FakeService(fail_batches=True)
    client = fake.client()
    with pytest.raises(BatchFailed, match=r"job job_\w+ ended failed"):
        client.run_job(JOB, 5, resume=False)  # the fake finishes a job as it is created
    fake.fail_batches = False
    status = client.run_job(JOB, 5)
    assert status.status is BatchStatus.COMPLETED
    assert len(fake.created("/jobs")) == 1  # the same job, resumed
    assert fake.count("POST", f"/jobs/{status.id}/retry") == 1


def test_without_resume_a_failed_job_stays_failed() -> None:
    fake = FakeService(fail_batches=True)
    client = fake.client()
    with pytest.raises(BatchFailed):
        client.run_job(JOB, 5, resume=False)
    fake.fail_batches = False
    with pytest.raises(BatchFailed):
        client.run_job(JOB, 5, resume=False)
    assert fake.count("POST", "/jobs/job_") == 0


def test_resume_follows_a_retry_someone_else_started() -> None:
    fake = FakeService(fail_batches=True)
    client = fake.client()
    with pytest.raises(BatchFailed):
        client.run_job(JOB, 5, resume=False)
    fake.fail_batches = False
    [job_id] = fake._batches

    def retried_by_another_process(request: httpx.Request) -> httpx.Response:
        fake._action(job_id, "retry")  # another request resumed the job a moment earlier
        return httpx.Response(409, json={"error": {"code": "conflict", "message": "the job is running"}})

    fake.script("POST", f"/jobs/{job_id}/retry", retried_by_another_process)
    assert client.run_job(JOB, 5).status is BatchStatus.COMPLETED
