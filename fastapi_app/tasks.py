"""RQ task entry points. Each takes ids and JSON primitives, reloads state, and is safe to run twice.

Callers enqueue a task by reference: ``tasks.submit_tts.enqueue(rt, batch_id)``; each task declares its job
id scheme, queue and timeout here. The work modules import this module and this module imports them: both
sides import modules, never names, so the cycle resolves whichever side is imported first.
"""

from __future__ import annotations

import json

from fastapi_app import reconciler
from fastapi_app.batching import cancel as cancelling
from fastapi_app.images import runware_work
from fastapi_app.pipeline import orchestrator
from fastapi_app.renders import video_work
from fastapi_app.runtime import worker_runtime
from fastapi_app.store.queues import task
from fastapi_app.tts import runpod_work
from strangler_bridge.keys import RECONCILE
from strangler_bridge.providers.runpod.client import RunPodJob


@task(lambda batch_id: f"submit-{batch_id}")
def submit_tts(batch_id: str) -> None:
    """Submit a TTS batch's open groups."""
    runpod_work.submit_batch(worker_runtime(), batch_id)


@task(lambda batch_id, no, attempt, payload: f"webhook-{batch_id}-{no}-{attempt}")
def apply_tts_webhook(batch_id: str, no: int, attempt: int, payload: str) -> None:
    """Apply a RunPod status object received by webhook."""
    runpod_work.apply_job(worker_runtime(), batch_id, no, attempt, RunPodJob.parse(json.loads(payload)))


@task(lambda batch_id: f"submit-{batch_id}", timeout_s=3600)  # requests run concurrently inside it
def submit_images(batch_id: str) -> None:
    """Submit an image batch's open images."""
    runware_work.submit_batch(worker_runtime(), batch_id)


@task(lambda member: "reconcile-" + member.replace(":", "-"), queue_name=RECONCILE)
def reconcile(member: str) -> None:
    """Resolve one overdue entry of the due index (a :class:`~strangler_bridge.keys.DueMember`)."""
    reconciler.resolve(worker_runtime(), member)


@task(lambda job_id: f"advance-{job_id}")
def advance_job(job_id: str) -> None:
    """Move a pipeline job on."""
    orchestrator.advance(worker_runtime(), job_id)


@task(lambda job_id: f"cancel-{job_id}")
def cancel_provider_work(job_id: str) -> None:
    """Cancel a cancelled job's provider work."""
    orchestrator.cancel_provider_work(worker_runtime(), job_id)


@task(lambda batch_id: f"cancel-{batch_id}")
def cancel_at_provider(batch_id: str) -> None:
    """Cancel a cancelled batch's submissions at its provider."""
    cancelling.cancel_batch_at_provider(worker_runtime(), batch_id)


@task(lambda batch_id: f"submit-{batch_id}")
def submit_render(batch_id: str) -> None:
    """Send a render to the video service."""
    video_work.submit(worker_runtime(), batch_id)
