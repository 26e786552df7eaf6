"""RQ task entry points. Each takes ids and JSON primitives, reloads state, and is safe to run twice."""

from __future__ import annotations

import json

from fastapi_app import cancelling
from fastapi_app.images import runware_work
from fastapi_app.pipeline import orchestrator
from fastapi_app.renders import video_work
from fastapi_app.runtime import worker_runtime
from fastapi_app.tts import runpod_work
from strangler_bridge.providers.runpod import RunPodJob


def submit_tts(batch_id: str) -> None:
    """Submit a TTS batch's open groups."""
    runpod_work.submit_batch(worker_runtime(), batch_id)


def apply_tts_webhook(batch_id: str, no: int, attempt: int, payload: str) -> None:
    """Apply a RunPod status object received by webhook."""
    runpod_work.apply_job(worker_runtime(), batch_id, no, attempt, RunPodJob.parse(json.loads(payload)))


def submit_images(batch_id: str) -> None:
    """Submit an image batch's open images."""
    runware_work.submit_batch(worker_runtime(), batch_id)


def reconcile(member: str) -> None:
    """Resolve one overdue item: ``kind:id:group``."""
    kind, record_id, no = member.split(":")
    rt = worker_runtime()
    if kind == "tts":
        runpod_work.reconcile_group(rt, record_id, int(no))
    elif kind == "img":
        runware_work.reconcile_group(rt, record_id, int(no))
    elif kind == "vid":
        video_work.reconcile(rt, record_id)
    elif kind == "job":
        orchestrator.advance(rt, record_id)
    else:
        rt.redis.zrem(rt.batches.due_key, member)


def advance_job(job_id: str) -> None:
    """Move a pipeline job on."""
    orchestrator.advance(worker_runtime(), job_id)


def cancel_provider_work(job_id: str) -> None:
    """Cancel a cancelled job's provider work."""
    orchestrator.cancel_provider_work(worker_runtime(), job_id)


def cancel_at_provider(batch_id: str) -> None:
    """Cancel a cancelled batch's submissions at its provider."""
    cancelling.cancel_batch_at_provider(worker_runtime(), batch_id)


def submit_render(batch_id: str) -> None:
    """Send a render to the video service."""
    video_work.submit(worker_runtime(), batch_id)
