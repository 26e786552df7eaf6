"""``BridgeClient``: the legacy app's typed httpx client of the service's API.

Every kind of work (TTS batches, image batches, video renders, pipeline jobs) is a :class:`BatchRoute` run by
the generic core in :mod:`strangler_bridge.client.work`; this module adds the typed methods, four per kind
(``create_*``, ``get_*``, ``wait_*``, ``run_*``) plus the downloads of each kind's files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from strangler_bridge.client.breaker import GuardedTransport
from strangler_bridge.client.wakeups import CallbackWait
from strangler_bridge.client.work import (
    MAX_WAIT_S,
    BatchClient,
    BatchFailed,
    BatchLike,
    BatchRoute,
    Deadline,
    as_deadline,
    idempotency_key,
    require_url,
)
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.contracts.images import ImageBatchCreate, ImageBatchStatus, ImageFormat
from strangler_bridge.contracts.jobs import JobCreate, JobStatus, StepName
from strangler_bridge.contracts.tts import TtsBatchCreate, TtsBatchStatus, TtsChunkResult
from strangler_bridge.contracts.video import VideoRenderCreate, VideoRenderStatus
from strangler_bridge.errors import ServiceError

__all__ = [
    "IMAGES",
    "JOBS",
    "MAX_WAIT_S",
    "TTS",
    "VIDEO",
    "BatchFailed",
    "BatchLike",
    "BatchRoute",
    "BridgeClient",
    "Deadline",
    "idempotency_key",
]

TTS = BatchRoute("tts", "/tts/batch", TtsBatchStatus.model_validate_json, "tts batch")
IMAGES = BatchRoute("imagegen", "/imagegen/batch", ImageBatchStatus.model_validate_json, "image batch")
VIDEO = BatchRoute("video", "/video/render", VideoRenderStatus.model_validate_json, "video render")
JOBS = BatchRoute("jobs", "/jobs", JobStatus.model_validate_json, "job")

_IMAGE_EXTENSIONS = {fmt.content_type: fmt.extension for fmt in ImageFormat}
Destination = Path | str | IO[bytes]


class BridgeClient(BatchClient):
    """Create work on the service, wait for it, and fetch its files.

    Errors: :class:`ServiceError` for 4xx (with the service's ``service_code``, message and field),
    :class:`ServiceUnavailable` for transport errors and 5xx after retries, :class:`DeadlineExceeded` when
    waiting outlives the deadline, :class:`BatchFailed` when the work ends failed or cancelled.

    Every request goes through a :class:`~strangler_bridge.client.breaker.GuardedTransport`: inside a routed step, the
    phase's circuit breaker sees it (and may refuse it with :class:`BreakerOpen`); elsewhere it is inert.
    """

    def __init__(
        self, base_url: str, token: str | None = None, *, transport: httpx.BaseTransport | None = None, **kwargs: Any
    ) -> None:
        super().__init__(base_url, token, transport=GuardedTransport(transport or httpx.HTTPTransport()), **kwargs)

    # --- TTS (phase 1) --------------------------------------------------------------------------------

    def create_tts_batch(self, batch: TtsBatchCreate, *, idempotency_key: str | None = None) -> TtsBatchStatus:
        """``POST /tts/batch``; retried safely, since the same key and body always name the same batch."""
        return self.create(TTS, batch, batch.video_id, idempotency_key)

    def get_tts_batch(self, batch_id: str, *, wait_s: int = 0, since: int | None = None) -> TtsBatchStatus:
        """``GET /tts/batch/{id}``, optionally long-polling up to ``wait_s`` seconds for a version after ``since``."""
        return self.get(TTS, batch_id, wait_s=wait_s, since=since)

    def wait_tts_batch(self, batch_id: str, deadline: Deadline | float, *, since: int | None = None) -> TtsBatchStatus:
        """Long-poll until the batch is terminal; :class:`DeadlineExceeded` if the deadline passes first."""
        return self.wait(TTS, batch_id, deadline, since=since)

    def run_tts_batch(
        self, batch: TtsBatchCreate, deadline: Deadline | float, *, idempotency_key: str | None = None
    ) -> TtsBatchStatus:
        """Create a batch and wait for it; returns the completed status or raises :class:`BatchFailed`."""
        return self.run_batch(TTS, batch, batch.video_id, deadline, idempotency_key=idempotency_key)

    def download_audio(self, chunk: TtsChunkResult, dest: Destination, *, deadline: Deadline | None = None) -> int:
        """Stream one completed chunk's audio to a file path or a binary file object; returns the byte count."""
        url = require_url(chunk.audio_url, f"chunk {chunk.index} (status {chunk.status.value})")
        return self.download(url, dest, deadline=deadline)

    def download_tts_audio(
        self,
        status: TtsBatchStatus,
        directory: Path | str,
        *,
        filename: str = "chunk_{index:04d}.{ext}",
        deadline: Deadline | None = None,
    ) -> dict[int, Path]:
        """Download every chunk of a completed batch into ``directory``; ``{index: path}`` in index order."""
        files = [(chunk.index, chunk.audio_url, chunk.status.value) for chunk in status.chunks]
        ext = status.format.value
        return self.download_files(
            files, directory, lambda i: filename.format(index=i, ext=ext), what="chunk", deadline=deadline
        )

    def cancel_tts_batch(self, batch_id: str) -> TtsBatchStatus:
        """``POST /tts/batch/{id}/cancel``: stop submitting its chunks and cancel RunPod jobs (idempotent)."""
        return self.action(TTS, batch_id, "cancel")

    # --- ImageGen (phase 2) ---------------------------------------------------------------------------

    def create_image_batch(self, batch: ImageBatchCreate, *, idempotency_key: str | None = None) -> ImageBatchStatus:
        """``POST /imagegen/batch``; retried safely (same key and body, same batch)."""
        return self.create(IMAGES, batch, batch.video_id, idempotency_key)

    def get_image_batch(self, batch_id: str, *, wait_s: int = 0, since: int | None = None) -> ImageBatchStatus:
        """``GET /imagegen/batch/{id}``, optionally long-polling."""
        return self.get(IMAGES, batch_id, wait_s=wait_s, since=since)

    def wait_image_batch(
        self, batch_id: str, deadline: Deadline | float, *, since: int | None = None
    ) -> ImageBatchStatus:
        """Long-poll until the batch is terminal; :class:`DeadlineExceeded` if the deadline passes first."""
        return self.wait(IMAGES, batch_id, deadline, since=since)

    def run_image_batch(
        self, batch: ImageBatchCreate, deadline: Deadline | float, *, idempotency_key: str | None = None
    ) -> ImageBatchStatus:
        """Create an image batch and wait for it; the completed status or :class:`BatchFailed`."""
        return self.run_batch(IMAGES, batch, batch.video_id, deadline, idempotency_key=idempotency_key)

    def download_images(
        self,
        status: ImageBatchStatus,
        directory: Path | str,
        *,
        filename: str = "image_{index:04d}.{ext}",
        deadline: Deadline | None = None,
    ) -> dict[int, Path]:
        """Download every image of a completed batch into ``directory``; ``{index: path}`` in index order.

        ``{ext}`` is the image's format (``png``, ``jpg``, ``webp``), from its content type.
        """
        extension = {image.index: _IMAGE_EXTENSIONS.get(image.content_type or "", "png") for image in status.images}
        files = [(image.index, image.image_url, image.status.value) for image in status.images]
        return self.download_files(
            files, directory, lambda i: filename.format(index=i, ext=extension[i]), what="image", deadline=deadline
        )

    def cancel_image_batch(self, batch_id: str) -> ImageBatchStatus:
        """``POST /imagegen/batch/{id}/cancel``: stop submitting its images (idempotent)."""
        return self.action(IMAGES, batch_id, "cancel")

    # --- the video step on its own --------------------------------------------------------------------

    def create_video_render(
        self, render: VideoRenderCreate, *, idempotency_key: str | None = None
    ) -> VideoRenderStatus:
        """``POST /video/render``; retried safely (same key and body, same render)."""
        return self.create(VIDEO, render, render.video_id, idempotency_key)

    def get_video_render(self, render_id: str, *, wait_s: int = 0, since: int | None = None) -> VideoRenderStatus:
        """``GET /video/render/{id}``, optionally long-polling."""
        return self.get(VIDEO, render_id, wait_s=wait_s, since=since)

    def wait_video_render(
        self, render_id: str, deadline: Deadline | float, *, since: int | None = None
    ) -> VideoRenderStatus:
        """Long-poll until the render is terminal; :class:`DeadlineExceeded` if the deadline passes first."""
        return self.wait(VIDEO, render_id, deadline, since=since)

    def run_video_render(
        self, render: VideoRenderCreate, deadline: Deadline | float, *, idempotency_key: str | None = None
    ) -> VideoRenderStatus:
        """Create a render and wait for it; the completed status or :class:`BatchFailed`."""
        return self.run_batch(VIDEO, render, render.video_id, deadline, idempotency_key=idempotency_key)

    def download_render_video(
        self, status: VideoRenderStatus, dest: Destination, *, deadline: Deadline | None = None
    ) -> int:
        """Stream a completed render's video to a path or a binary file object; returns the byte count."""
        return self.download(require_url(status.video_url, f"video render {status.id}"), dest, deadline=deadline)

    def cancel_video_render(self, render_id: str) -> VideoRenderStatus:
        """``POST /video/render/{id}/cancel``: stop the render, at the video service too (idempotent)."""
        return self.action(VIDEO, render_id, "cancel")

    # --- pipeline jobs (phase 3) ----------------------------------------------------------------------

    def create_job(self, job: JobCreate, *, idempotency_key: str | None = None) -> JobStatus:
        """``POST /jobs``; retried safely (same key and body, same job)."""
        return self.create(JOBS, job, job.video_id, idempotency_key)

    def get_job(self, job_id: str, *, wait_s: int = 0, since: int | None = None) -> JobStatus:
        """``GET /jobs/{id}``, optionally long-polling (a job's version changes per step, not per chunk)."""
        return self.get(JOBS, job_id, wait_s=wait_s, since=since)

    def wait_job(self, job_id: str, deadline: Deadline | float, *, since: int | None = None) -> JobStatus:
        """Long-poll until the job is terminal; :class:`DeadlineExceeded` if the deadline passes first."""
        return self.wait(JOBS, job_id, deadline, since=since)

    def run_job(
        self,
        job: JobCreate,
        deadline: Deadline | float,
        *,
        idempotency_key: str | None = None,
        resume: bool = True,
        callback: CallbackWait | None = None,
    ) -> JobStatus:
        """Create a job and wait for it; the completed status or :class:`BatchFailed`.

        The same request names the same job (idempotency key), so asking again for a job that failed or was
        cancelled would only return that outcome: with ``resume`` it is retried instead, from its first
        unfinished step, reusing everything already paid for.

        With ``callback``, the job is created with ``callback_url=callback.url`` and the wait sleeps until its
        completion webhook reaches this process (:meth:`await_callback`) instead of long-polling.
        """
        budget = as_deadline(deadline)
        if callback is not None:
            # Part of the body, so of the idempotency key too: the same request names one job per wait mode.
            job = job.model_copy(update={"callback_url": callback.url})
        status = self.create_job(job, idempotency_key=idempotency_key)
        budget.track(JOBS, status.id)
        if resume and status.status in (BatchStatus.FAILED, BatchStatus.CANCELLED):
            status = self._resume(status)
        return self.finish(JOBS, status, budget, callback=callback)

    def _resume(self, status: JobStatus) -> JobStatus:
        try:
            return self.retry_job(status.id)
        except ServiceError as exc:
            if exc.status_code != 409:
                raise
            return self.get_job(status.id)  # someone else resumed it first: follow that run

    def retry_job(self, job_id: str) -> JobStatus:
        """``POST /jobs/{id}/retry``: resume a failed or cancelled job (409 if it is neither)."""
        return self.action(JOBS, job_id, "retry")

    def cancel_job(self, job_id: str) -> JobStatus:
        """``POST /jobs/{id}/cancel``: stop the job (409 if it already finished)."""
        return self.action(JOBS, job_id, "cancel")

    def download_job_video(self, status: JobStatus, dest: Destination, *, deadline: Deadline | None = None) -> int:
        """Stream a completed job's video to a path or a binary file object; returns the byte count."""
        return self.download(require_url(status.video_url, f"the video of job {status.id}"), dest, deadline=deadline)

    def download_segments(self, status: JobStatus, dest: Destination, *, deadline: Deadline | None = None) -> int:
        """Stream a job's ``segments.json`` (ready once its segments step completed); returns the byte count."""
        url = require_url(status.segments_url, f"segments.json of job {status.id}")
        return self.download(url, dest, deadline=deadline)

    def download_job_files(
        self,
        status: JobStatus,
        directory: Path | str,
        *,
        video: str = "video.mp4",
        segments: str = "segments.json",
        deadline: Deadline | None = None,
    ) -> Mapping[str, Path]:
        """Download a completed job's video and ``segments.json`` into ``directory``: ``{"video", "segments"}``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"video": folder / video, "segments": folder / segments}
        self.download_job_video(status, paths["video"], deadline=deadline)
        self.download_segments(status, paths["segments"], deadline=deadline)
        return paths

    def download_job_media(
        self, status: JobStatus, directory: Path | str, *, deadline: Deadline | None = None
    ) -> dict[str, dict[int, Path]]:
        """Download a job's narration and pictures into ``directory/audio`` and ``directory/images``.

        Each step's files exist once that step completed (a :class:`ServiceError` names the step otherwise).
        Returns ``{"audio": {index: path}, "images": {index: path}}``, in chunk order.
        """
        steps = {step.name: step for step in status.steps}
        folder = Path(directory)
        tts_id = require_url(steps[StepName.TTS].batch_id, f"the tts step of job {status.id}")
        images_id = require_url(steps[StepName.IMAGEGEN].batch_id, f"the imagegen step of job {status.id}")
        return {
            "audio": self.download_tts_audio(self.get_tts_batch(tts_id), folder / "audio", deadline=deadline),
            "images": self.download_images(self.get_image_batch(images_id), folder / "images", deadline=deadline),
        }
