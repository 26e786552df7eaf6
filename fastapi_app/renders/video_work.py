"""Submitting renders to the video service and collecting the result, by callback or by polling.

The render id sent to the video service is chosen and stored before the request; the service treats it as
an idempotency key, so a lapsed claim resubmits the same id without rendering twice. A failed render gets
a new id on the next attempt.

The video service downloads the segments' audio and images itself; a job's render takes them from this
service's API through signed links, or, with an S3 store, straight from the bucket through presigned URLs made
when the render is sent (the stored request keeps the signed links, so rebuilding it gives the same body).
While the API does not answer (restarting, say) a render whose assets it serves is held
back rather than sent to fail: a failed render costs one of its attempts and a new render. The hold is
bounded, so a worker that cannot reach the API while the video service can still gets the render sent.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time

import httpx

from fastapi_app import tasks
from fastapi_app.api.artifact_links import fetch_url
from fastapi_app.batching.updates import discard_unrecorded, past_deadline, update_batch
from fastapi_app.metrics.recorders import provider_call
from fastapi_app.renders.service import artifact_key
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch, FailureCode, GroupStatus
from fastapi_app.store.batch_transitions import (
    ItemResult,
    claim_group,
    complete_group,
    delivery_tag,
    fail_attempt,
    record_submission,
    reject_group,
    release_claim,
)
from strangler_bridge.contracts.video import VideoRenderCreate
from strangler_bridge.errors import ProviderAuthError, ProviderError, ProviderNotFound, ProviderRejected, RecordNotFound
from strangler_bridge.keys import DueKind, DueMember
from strangler_bridge.providers.video.client import (
    RenderOptions,
    RenderRequest,
    RenderSegment,
    RenderState,
    RenderStatus,
)
from strangler_bridge.signing import sign
from strangler_bridge.video_file import check_video

log = logging.getLogger(__name__)

PURPOSE = "vid"
ASSET_WAIT_S = 300.0  # the longest a render is held back for the API, counted from its creation
ASSET_RECHECK_S = 1.0  # how soon a held render looks again
ASSET_PROBE_TIMEOUT_S = 2.0  # a healthy API answers /healthz in milliseconds; a hung one holds a worker this long


def callback_url(rt: Runtime, batch_id: str) -> str:
    """The signed URL the video service calls when the render ends."""
    token = sign(rt.settings.secret("webhook_secret"), PURPOSE, [batch_id], rt.settings.webhook_token_ttl_s)
    return rt.settings.public_link(f"/video/render/callback?token={token}")


def assets_unreachable(rt: Runtime, batch: Batch) -> str | None:
    """Why the video service could not fetch the render's assets from this service's API now, else None.

    Only renders whose assets the API serves are checked: probing other hosts would let an API client aim the
    worker's requests anywhere, and their outages are not ours to wait out.
    """
    first_audio = VideoRenderCreate.model_validate(batch.request).segments[0].audio_url
    if not first_audio.startswith(rt.settings.public_link("/")) or fetch_url(rt, first_audio) != first_audio:
        return None  # not ours, or fetched straight from the object store
    try:
        response = rt.http.get(rt.settings.public_link("/healthz"), timeout=ASSET_PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return f"the API serving its assets did not answer ({type(exc).__name__})"
    if response.status_code >= 500:
        return f"the API serving its assets answered HTTP {response.status_code}"
    return None


def _held_for_assets(rt: Runtime, batch_id: str) -> bool:
    """Whether the render waits for the API serving its assets (and is due again soon), instead of being sent."""
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal or time.time() - batch.created_at >= ASSET_WAIT_S:
        return False
    reason = assets_unreachable(rt, batch)
    if reason is None:
        return False
    log.warning("render %s held back: %s", batch_id, reason)
    rt.redis.zadd(rt.keys.due, {DueMember(DueKind.VIDEO, batch_id).format(): time.time() + ASSET_RECHECK_S})
    return True


def submit(rt: Runtime, batch_id: str) -> None:
    """Claim the render and send it to the video service (its id recorded first), once its assets can be fetched."""
    if _held_for_assets(rt, batch_id):
        return
    lease, attempts = rt.settings.reconcile_after_s, rt.settings.provider_attempts
    try:
        batch, claim = update_batch(
            rt,
            batch_id,
            lambda b: claim_group(
                b,
                0,
                now=time.time(),
                lease_s=lease,
                max_attempts=attempts,
                new_provider_id=lambda: f"{batch_id}-{secrets.token_hex(4)}",
            ),
        )
    except RecordNotFound:
        return
    if claim is None or claim.provider_id is None:
        return
    body = VideoRenderCreate.model_validate(batch.request)
    request = RenderRequest(
        render_id=claim.provider_id,
        segments=[
            RenderSegment(
                **segment.model_dump(exclude={"audio_url", "image_url"}),
                audio_url=fetch_url(rt, segment.audio_url),
                image_url=fetch_url(rt, segment.image_url),
            )
            for segment in body.segments
        ],
        options=RenderOptions(width=body.options.width, height=body.options.height, fps=body.options.fps),
        callback_url=callback_url(rt, batch_id),
        metadata={"render": batch_id, "video_id": body.video_id},
    )
    try:
        with provider_call(rt, "video", "submit"):
            rt.video.submit(request)
    except (ProviderRejected, ProviderAuthError) as exc:  # 4xx: retrying cannot help
        reason = f"the video service rejected the render: {exc}"
        update_batch(rt, batch_id, lambda b: reject_group(b, 0, reason))
        return
    except ProviderError as exc:
        # The render id is kept (release_claim does not clear it): resubmitting it is idempotent.
        reason = str(exc)
        update_batch(rt, batch_id, lambda b: release_claim(b, claim, reason, now=time.time()))
        return
    update_batch(
        rt,
        batch_id,
        lambda b: record_submission(
            b, claim, claim.provider_id or "", now=time.time(), reconcile_after_s=rt.settings.reconcile_after_s
        ),
    )


def reconcile(rt: Runtime, batch_id: str) -> None:
    """Submit a pending render, or ask the video service how a submitted one is doing (and collect it)."""
    member = DueMember(DueKind.VIDEO, batch_id).format()
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal:
        rt.redis.zrem(rt.keys.due, member)
        return
    if past_deadline(rt, batch):
        return
    group = batch.group(0)
    now = time.time()
    if group.status is GroupStatus.PENDING or (
        group.status is GroupStatus.SUBMITTING and (group.claim_until or 0) <= now
    ):
        submit(rt, batch_id)
        return
    if group.status is GroupStatus.SUBMITTING or group.provider_id is None:
        rt.redis.zadd(rt.keys.due, {member: group.claim_until or now + rt.settings.reconcile_after_s})
        return
    render_id = group.provider_id
    try:
        with provider_call(rt, "video", "status"):
            status = rt.video.status(render_id)
    except ProviderNotFound:
        _fail(rt, batch_id, group.attempt, "the video service no longer knows the render")
        return
    except ProviderError as exc:
        log.warning("video status of %s failed: %s", render_id, exc)
        rt.redis.zadd(rt.keys.due, {member: now + rt.settings.reconcile_after_s})
        return
    if status.status is RenderState.COMPLETED:
        _collect(rt, batch, group.attempt, render_id, status)
    elif status.status.terminal:
        _fail(rt, batch_id, group.attempt, f"render {status.status.value}: {status.error or 'no reason given'}")
    else:
        rt.redis.zadd(rt.keys.due, {member: now + min(rt.settings.reconcile_after_s, 2.0)})


def _collect(rt: Runtime, batch: Batch, attempt: int, render_id: str, status: RenderStatus) -> None:
    """Download the finished video through the one fetch path, check it, store it and complete the render.

    It is stored under this delivery's own key and recorded, or removed if another delivery won. A video that can
    never be had (a redirect, a dead link, over the size limit, not an MP4, or an MP4 whose length does not match
    its segments) fails the render with the reason; a download that failed for now uses one of its attempts, and
    the next sends the same render id (idempotent at the video service) and collects it again.
    """
    batch_id = batch.id
    key = artifact_key(batch_id, delivery_tag())
    settings = rt.settings
    request = VideoRenderCreate.model_validate(batch.request)
    with tempfile.TemporaryFile() as buffer:
        try:
            rt.video.download(
                status.video_url or render_id,
                buffer,
                allow_hosts=settings.fetch_allow_hosts,
                max_bytes=settings.max_video_bytes,
            )
            if not status.placeholder:  # the simulator's declared stand-in is not an MP4 (docs/simulators/video.md)
                check_video(buffer, expected_s=max(s.end_s for s in request.segments), fps=request.options.fps)
        except (ProviderRejected, ValueError) as exc:
            reason = f"the video cannot be used: {exc}"
            update_batch(rt, batch_id, lambda b: reject_group(b, 0, reason, FailureCode.UNUSABLE_OUTPUT))
            return
        except ProviderError as exc:
            log.warning("video download of %s failed: %s", render_id, exc)
            _fail(rt, batch_id, attempt, f"video not fetched: {exc.message}", keep_submission=True)
            return
        buffer.seek(0)
        size = rt.artifacts.put(key, iter(lambda: buffer.read(1 << 20), b""))
    result = ItemResult(
        index=0, artifact=key, content_type="video/mp4", size_bytes=size, cost=status.cost, provider_id=render_id
    )
    attempts = rt.settings.provider_attempts
    after, _ = update_batch(
        rt, batch_id, lambda b: complete_group(b, 0, [result], max_attempts=attempts, now=time.time())
    )
    discard_unrecorded(rt, after, [result])


def _fail(rt: Runtime, batch_id: str, attempt: int, reason: str, *, keep_submission: bool = False) -> None:
    attempts = rt.settings.provider_attempts
    code = FailureCode.UNUSABLE_OUTPUT if keep_submission else FailureCode.PROVIDER_FAILED
    _, again = update_batch(
        rt,
        batch_id,
        lambda b: fail_attempt(
            b,
            0,
            attempt,
            reason,
            max_attempts=attempts,
            retry_at=time.time(),
            code=code,
            keep_submission=keep_submission,
        ),
    )
    if again:
        tasks.submit_render.enqueue(rt, batch_id)
