"""Phase 1 HTTP routes: create, read and download TTS batches; receive RunPod's webhooks."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from fastapi_app import tasks
from fastapi_app.api.auth import require_token
from fastapi_app.api.deps import CallbackToken, IdempotencyKey, RuntimeDep, Since, Wait, runtime
from fastapi_app.api.views import (
    CANCEL_ERRORS,
    CREATE_ERRORS,
    ERRORS,
    accepted,
    artifact_response,
    read_batch,
)
from fastapi_app.batching import cancel as cancelling
from fastapi_app.tts import runpod_work, service, webhook_inbox
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.contracts.tts import TtsBatchCreate, TtsBatchStatus
from strangler_bridge.errors import InvalidInput, ProviderRejected
from strangler_bridge.keys import DueKind, DueMember
from strangler_bridge.providers.runpod.client import RunPodJob
from strangler_bridge.signing import verify

router = APIRouter(prefix="/tts", tags=["tts"])


@router.post(
    "/batch",
    status_code=202,
    response_model=TtsBatchStatus,
    dependencies=[Depends(require_token)],
    summary="Create a TTS batch",
    responses=CREATE_ERRORS,
)
def create_batch(body: TtsBatchCreate, rt: RuntimeDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Store the batch and queue its submission to RunPod; answers at once with the batch status.

    Repeating the request with the same ``Idempotency-Key`` and body returns the same batch (200).
    """
    batch, created = service.create_batch(rt, body, idempotency_key=idempotency_key)
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
    wait: Wait = 0,
    since: Since = None,
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
    "/batch/{batch_id}/cancel",
    response_model=TtsBatchStatus,
    dependencies=[Depends(require_token)],
    summary="Cancel a TTS batch",
    responses=CANCEL_ERRORS,
)
def cancel(batch_id: str, rt: RuntimeDep) -> TtsBatchStatus:
    """Stop submitting its chunks and cancel its RunPod jobs; idempotent (a finished batch is answered as is).

    Chunks already made stay available; a result that arrives after the cancel is kept.
    """
    return service.to_status(cancelling.cancel_requested(rt, "tts", batch_id))


@router.post(
    "/callback",
    summary="RunPod webhook receiver",
    responses={401: {"model": ErrorResponse, "description": "Missing, forged or expired token"}},
)
async def callback(request: Request, token: CallbackToken = None) -> dict[str, str]:
    """Authenticated by the signed token in the URL, which names the batch, group and attempt.

    Answers as soon as the delivery is queued for the workers (``webhook_inbox``), so RunPod gets its 200
    quickly; an empty body (answered by asking RunPod for the status) queues a reconcile instead.
    """
    # Not RuntimeDep: resolving a dependency costs FastAPI ~0.1 ms of CPU, a quarter of this hot route's cost.
    rt = runtime(request)
    batch_id, no_text, attempt_text = verify(rt.settings.secret("webhook_secret"), runpod_work.PURPOSE, token)
    raw = await request.body()
    if not raw.strip():
        await run_in_threadpool(tasks.reconcile.enqueue, rt, DueMember(DueKind.TTS, batch_id, int(no_text)).format())
        return {"status": "queued", "reason": "empty body; status will be polled"}
    try:
        RunPodJob.parse_json(raw)
    except ProviderRejected as exc:
        raise InvalidInput(f"webhook body is not a RunPod status object: {exc}", field="body") from None
    await webhook_inbox.append(rt, batch_id, int(no_text), int(attempt_text), raw)
    return {"status": "queued"}  # counted as a deferred delivery; the worker counts what applying it did
