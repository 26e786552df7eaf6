"""Phase 1 HTTP routes: create, read and download TTS batches; receive RunPod's webhooks."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from fastapi_app import enqueueing
from fastapi_app.auth import require_token
from fastapi_app.batch_views import CREATE_ERRORS, ERRORS, accepted, artifact_response, read_batch, runtime
from fastapi_app.batches import due_member
from fastapi_app.metrics.recorders import mark_webhook
from fastapi_app.signing import verify
from fastapi_app.tts import runpod_work, service
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.contracts.tts import TtsBatchCreate, TtsBatchStatus
from strangler_bridge.errors import InvalidInput, ProviderRejected
from strangler_bridge.providers.runpod import RunPodJob, parse_tts_output

log = logging.getLogger(__name__)

router = APIRouter(prefix="/tts", tags=["tts"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


@router.post(
    "/batch",
    status_code=202,
    response_model=TtsBatchStatus,
    dependencies=[Depends(require_token)],
    summary="Create a TTS batch",
    responses=CREATE_ERRORS,
)
def create_batch(body: TtsBatchCreate, request: Request, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Store the batch and queue its submission to RunPod; answers at once with the batch status.

    Repeating the request with the same ``Idempotency-Key`` and body returns the same batch (200).
    """
    rt = runtime(request)
    batch, created = service.create_batch(rt, body, idempotency_key=idempotency_key)
    if created:
        enqueueing.submit_tts(rt, batch.id)
    return accepted(service.to_status(batch), created)


@router.get(
    "/batch/{batch_id}",
    response_model=TtsBatchStatus,
    dependencies=[Depends(require_token)],
    summary="Read a TTS batch, optionally long-polling for a change",
    responses=ERRORS,
)
async def get_batch(
    batch_id: str,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for a change")] = 0,
    since: Annotated[int | None, Query(ge=0, description="Version already seen; return once it differs")] = None,
) -> TtsBatchStatus:
    """The batch's status; with ``wait`` the answer comes as soon as the batch changes (or is finished)."""
    return service.to_status(await read_batch(request, "tts", batch_id, wait=wait, since=since))


@router.get(
    "/batch/{batch_id}/chunks/{index}/audio",
    dependencies=[Depends(require_token)],
    summary="Download one chunk's audio",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"audio/wav": {}}, "description": "The audio bytes"}},
)
def get_audio(batch_id: str, index: int, request: Request) -> Response:
    """Stream the chunk's audio with its content type (404 until the chunk is completed)."""
    return artifact_response(request, "tts", batch_id, index)


@router.post(
    "/callback",
    summary="RunPod webhook receiver",
    responses={401: {"model": ErrorResponse, "description": "Missing, forged or expired token"}},
)
async def callback(request: Request, token: Annotated[str | None, Query(max_length=2000)] = None) -> dict[str, str]:
    """Authenticated by the signed token in the URL, which names the batch, group and attempt.

    Applies base64 results at once; results that must be downloaded, and empty bodies (answered by asking
    RunPod for the status), are handed to a worker so RunPod gets its 200 quickly.
    """
    rt = runtime(request)
    batch_id, no_text, attempt_text = verify(rt.settings.secret("webhook_secret"), runpod_work.PURPOSE, token)
    no, attempt = int(no_text), int(attempt_text)
    raw = await request.body()
    if not raw.strip():
        await run_in_threadpool(enqueueing.reconcile, rt, due_member("tts", batch_id, no))
        return {"status": "queued", "reason": "empty body; status will be polled"}
    try:
        payload = json.loads(raw)
        job = RunPodJob.parse(payload)
    except (ValueError, ProviderRejected) as exc:
        raise InvalidInput(f"webhook body is not a RunPod status object: {exc}", field="body") from None
    if _needs_download(job):
        await run_in_threadpool(enqueueing.apply_tts_webhook, rt, batch_id, no, attempt, json.dumps(payload))
        return {"status": "queued"}
    applied = await run_in_threadpool(runpod_work.apply_job, rt, batch_id, no, attempt, job)
    return {"status": mark_webhook(request, "accepted" if applied else "duplicate")}


def _needs_download(job: RunPodJob) -> bool:
    if not job.has_output:
        return False
    try:
        return any(chunk.audio_url and not chunk.audio_base64 for chunk in parse_tts_output(job.output))
    except ProviderRejected:
        return False
