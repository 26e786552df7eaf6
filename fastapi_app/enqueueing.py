"""Enqueueing the service's RQ tasks (by dotted name, so callers need not import the task module)."""

from __future__ import annotations

from fastapi_app.queues import RECONCILE, enqueue
from fastapi_app.runtime import Runtime

_TASKS = "fastapi_app.tasks"


def submit_tts(rt: Runtime, batch_id: str) -> None:
    """Submit a TTS batch's open groups to RunPod."""
    enqueue(rt.redis, f"{_TASKS}.submit_tts", batch_id, prefix=rt.settings.redis_prefix, job_id=f"submit-{batch_id}")


def apply_tts_webhook(rt: Runtime, batch_id: str, no: int, attempt: int, payload: str) -> None:
    """Apply a RunPod webhook whose outputs must be downloaded (kept off the webhook's request path)."""
    enqueue(
        rt.redis,
        f"{_TASKS}.apply_tts_webhook",
        batch_id,
        no,
        attempt,
        payload,
        prefix=rt.settings.redis_prefix,
        job_id=f"webhook-{batch_id}-{no}-{attempt}",
    )


def reconcile(rt: Runtime, member: str) -> None:
    """Resolve one overdue item of the due index."""
    safe = member.replace(":", "-")
    enqueue(
        rt.redis,
        f"{_TASKS}.reconcile",
        member,
        prefix=rt.settings.redis_prefix,
        job_id=f"reconcile-{safe}",
        queue_name=RECONCILE,
    )


def submit_images(rt: Runtime, batch_id: str) -> None:
    """Submit an image batch's open images to Runware (one long task: requests run concurrently inside it)."""
    enqueue(
        rt.redis,
        f"{_TASKS}.submit_images",
        batch_id,
        prefix=rt.settings.redis_prefix,
        job_id=f"submit-{batch_id}",
        timeout_s=3600,
    )


def advance_job(rt: Runtime, job_id: str) -> None:
    """Move a pipeline job on to its next unfinished step."""
    enqueue(rt.redis, f"{_TASKS}.advance_job", job_id, prefix=rt.settings.redis_prefix, job_id=f"advance-{job_id}")


def cancel_provider_work(rt: Runtime, job_id: str) -> None:
    """Ask the providers to stop what a cancelled job still has running."""
    enqueue(
        rt.redis, f"{_TASKS}.cancel_provider_work", job_id, prefix=rt.settings.redis_prefix, job_id=f"cancel-{job_id}"
    )


def submit_render(rt: Runtime, batch_id: str) -> None:
    """Send a render to the video service."""
    enqueue(rt.redis, f"{_TASKS}.submit_render", batch_id, prefix=rt.settings.redis_prefix, job_id=f"submit-{batch_id}")


def cancel_at_provider(rt: Runtime, batch_id: str) -> None:
    """Ask the provider to stop what a cancelled batch still had running."""
    enqueue(
        rt.redis, f"{_TASKS}.cancel_at_provider", batch_id, prefix=rt.settings.redis_prefix, job_id=f"cancel-{batch_id}"
    )
