"""Submitting image tasks to Runware under the cluster-wide limit, and recovering unknown outcomes.

Each image is one Runware task whose ``taskUUID`` is chosen and stored in the batch record *before* the
request is sent. A worker that dies mid-request leaves the group's claim to lapse; the reconciler then asks
Runware about that same taskUUID (``getResponse``) and only resubmits it, still with the same taskUUID, if
Runware never got it. So an image is never paid for twice.

Inside a worker, the images of every batch it took are requested concurrently on one event loop
(:mod:`~fastapi_app.images.request_loop`), so the RQ task returns at once; across workers the Redis
:class:`~fastapi_app.limiter.Limiter` keeps the number of in-flight Runware requests at the configured limit.

The batch writes of an image (its claim, then its result) go through
:class:`~fastapi_app.images.batch_writes.BatchWrites`, which runs them in a thread and combines those of one
batch made at the same moment into one atomic write: the images of a batch start and finish together, and
each write parses and rewrites the whole batch record. A claim is still awaited, written, before its request
is sent. The batch's request is parsed once per submission, not per image.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import httpx
import redis.asyncio as aredis

from fastapi_app import enqueueing
from fastapi_app.batch_ops import Transition
from fastapi_app.batches import (
    Claim,
    GroupStatus,
    ItemResult,
    claim_group,
    complete_group,
    due_member,
    fail_attempt,
    reject_group,
    release_claim,
)
from fastapi_app.images.batch_writes import BatchWrites
from fastapi_app.images.request_loop import batch_writes, gated, request_loop, shared_redis, ssl_context
from fastapi_app.images.service import artifact_key
from fastapi_app.limiter import Limiter
from fastapi_app.metrics.recorders import limiter_wait, provider_call
from fastapi_app.runtime import Runtime
from strangler_bridge.contracts.images import ImageBatchCreate, ImageFormat
from strangler_bridge.errors import ProviderError, ProviderRateLimited, ProviderRejected, ProviderUnavailable
from strangler_bridge.fetch import fetch_bytes
from strangler_bridge.providers.runware import AsyncRunwareClient, ImageTask, InferenceOutcome

log = logging.getLogger(__name__)


def limiter(rt: Runtime, client: aredis.Redis) -> Limiter:
    """The cluster-wide Runware limiter."""
    settings = rt.settings
    return Limiter(client, rt.key("limiter", "runware"), settings.runware_concurrency, lease_s=settings.runware_lease_s)


def submit_batch(rt: Runtime, batch_id: str) -> None:
    """Hand every open image of a batch to this process's request loop and return (see ``request_loop``)."""
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal:
        return
    todo = [g.no for g in batch.groups if g.status in (GroupStatus.PENDING, GroupStatus.SUBMITTING)]
    if todo:
        request = ImageBatchCreate.model_validate(batch.request)
        request_loop(rt.settings).submit(_submit_many(rt, batch_id, todo, request))


def submit_group(rt: Runtime, batch_id: str, no: int, request: ImageBatchCreate) -> None:
    """Submit (or recover) one image of a batch whose parsed request is ``request`` (blocking)."""
    asyncio.run(_submit_many(rt, batch_id, [no], request))


async def _submit_many(rt: Runtime, batch_id: str, groups: list[int], request: ImageBatchCreate) -> None:
    # ``request`` is parsed once for all the images (a batch's request never changes); each image keeps only
    # its task, not the parsed batch record.
    writes = batch_writes()
    async with contextlib.AsyncExitStack() as resources:
        client = shared_redis()
        if client is None:  # not on the request loop (the reconciler's one-off submission)
            client = await resources.enter_async_context(aredis.Redis.from_url(rt.settings.redis_url or ""))
        http = await resources.enter_async_context(httpx.AsyncClient(verify=ssl_context()))
        timeout_s = max(rt.settings.http_timeout_s, 60.0)
        runware = await resources.enter_async_context(
            AsyncRunwareClient.from_settings(rt.settings, timeout_s=timeout_s, http=http)
        )
        slots = limiter(rt, client)
        await asyncio.gather(
            *(gated(_submit_one(rt, runware, slots, batch_id, no, writes=writes, request=request)) for no in groups)
        )


async def _submit_one(
    rt: Runtime,
    runware: AsyncRunwareClient,
    slots: Limiter,
    batch_id: str,
    no: int,
    *,
    writes: BatchWrites,
    request: ImageBatchCreate,
) -> None:
    # The slot is taken before the claim, so a cancel or a competing worker is seen right before sending, and
    # the claim's lease is not spent waiting for a slot. The claim (with the taskUUID) is written before sending.
    lease = max(rt.settings.reconcile_after_s, 5.0)
    async with slots.slot() as waited:
        try:
            claim = await writes.apply(
                rt,
                batch_id,
                lambda b: claim_group(b, no, now=time.time(), lease_s=lease, new_provider_id=lambda: str(uuid.uuid4())),
            )
        except KeyError:
            return
        if claim is None or claim.provider_id is None:
            return
        task = _task(rt, request, claim)
        limiter_wait(rt, "runware", waited)  # counted for requests sent, not for slots given back unused
        try:
            with provider_call(rt, "runware", "infer"):
                outcome = await runware.infer_or_recover(task, maybe_sent=claim.lapsed)
        except ProviderRejected as exc:
            reason = f"Runware rejected the task: {exc}"
            await writes.apply(rt, batch_id, lambda b: reject_group(b, no, reason))
            return
        except (ProviderRateLimited, ProviderUnavailable) as exc:
            # Never sent, or its fate is still unknown: back to pending with the same taskUUID, so the next try
            # asks Runware first (Runware answers conflictTaskUUID for a task it already has).
            reason = str(exc)
            await writes.apply(rt, batch_id, lambda b: release_claim(b, claim, reason, now=time.time()))
            return
        except ProviderError as exc:
            reason = str(exc)
            await writes.apply(rt, batch_id, lambda b: reject_group(b, no, reason))
            return
    await apply_outcome(rt, batch_id, claim, task, outcome, writes=writes)


def _task(rt: Runtime, request: ImageBatchCreate, claim: Claim) -> ImageTask:
    image = next(img for img in request.images if img.index == claim.indexes[0])
    return ImageTask(
        task_uuid=claim.provider_id,
        positive_prompt=request.prompt_for(image),
        negative_prompt=image.negative_prompt,
        width=request.width,
        height=request.height,
        model=request.model or rt.settings.runware_model,
        output_type="URL",
        output_format=request.format.value,
        include_cost=True,
        seed=image.seed,
    )


async def apply_outcome(
    rt: Runtime, batch_id: str, claim: Claim, task: ImageTask, outcome: InferenceOutcome, *, writes: BatchWrites
) -> None:
    """Store the image (or record the task's error) for one claimed image: the one transition for results.

    Fetching and storing the image runs in a thread; the batch write goes through ``writes``, combined with
    the other images of the batch that finish at the same time.
    """
    transition = await asyncio.to_thread(outcome_transition, rt, batch_id, claim, task, outcome)
    if transition is not None and await writes.apply(rt, batch_id, transition):
        await asyncio.to_thread(enqueueing.submit_images, rt, batch_id)


def outcome_transition(
    rt: Runtime, batch_id: str, claim: Claim, task: ImageTask, outcome: InferenceOutcome
) -> Transition[bool] | None:
    """Store the image of a claimed task's outcome (blocking) and return the transition recording it.

    The transition's result says whether the image must be submitted again; ``None``: nothing to record yet.
    """
    index = claim.indexes[0]
    results = outcome.results_for(task.task_uuid)
    if results:
        result = results[0]
        data = result.image_bytes()
        if data is None and result.image_url:
            settings = rt.settings
            try:
                allowed, limit = settings.fetch_allow_hosts, settings.max_fetch_bytes
                data = fetch_bytes(rt.http, result.image_url, allow_hosts=allowed, max_bytes=limit)
            except ProviderRejected as exc:  # refused, redirecting, dead or too large: asking again cannot mend it
                reason = f"the image cannot be fetched: {exc}"
                return lambda b: (reject_group(b, claim.no, reason)[0], False)
        if data:
            fmt = ImageFormat(task.output_format)
            key = artifact_key(batch_id, index, fmt)
            size = rt.artifacts.put(key, data)
            item = ItemResult(
                index=index,
                artifact=key,
                content_type=fmt.content_type,
                size_bytes=size,
                cost=sum(r.cost or 0.0 for r in results) if any(r.cost is not None for r in results) else None,
                provider_id=task.task_uuid,
            )
            return lambda b: (complete_group(b, claim.no, [item])[0], False)
    error = outcome.error_for(task.task_uuid)
    if error is None and task.task_uuid in outcome.processing:
        return None  # still running at Runware: the lapsing claim brings the reconciler back to ask again
    reason = f"Runware {error.code}: {error.message}" if error else "Runware returned no image for the task"
    return lambda b: fail_attempt(
        b, claim.no, claim.attempt, reason, max_failures=rt.settings.provider_attempts, retry_at=time.time()
    )


def reconcile_group(rt: Runtime, batch_id: str, no: int) -> None:
    """Resolve an overdue image: submit it, or recover a lapsed submission through ``getResponse``."""
    member = due_member("img", batch_id, no)
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal or not 0 <= no < len(batch.groups) or batch.group(no).status.terminal:
        rt.redis.zrem(rt.batches.due_key, member)
        return
    group = batch.group(no)
    if group.status is GroupStatus.SUBMITTING and (group.claim_until or 0) > time.time():
        rt.redis.zadd(rt.batches.due_key, {member: group.claim_until or 0})
        return
    submit_group(rt, batch_id, no, ImageBatchCreate.model_validate(batch.request))
