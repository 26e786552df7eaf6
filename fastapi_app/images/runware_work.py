"""Submitting image tasks to Runware under the cluster-wide limit, and recovering unknown outcomes.

Each image is one Runware task whose ``taskUUID`` is chosen and stored in the batch record *before* the
request is sent. A worker that dies mid-request leaves the group's claim to lapse; the reconciler then asks
Runware about that same taskUUID (``getResponse``) and only resubmits it, still with the same taskUUID, if
Runware never got it. So an image is never paid for twice.

Inside a worker, the images of every batch it took are requested concurrently on one event loop
(:mod:`~fastapi_app.images.request_loop`), so the RQ task returns at once; across workers the Redis
:class:`~fastapi_app.store.limiter.Limiter` keeps the number of in-flight Runware requests at the configured limit.

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

from fastapi_app import tasks
from fastapi_app.batching.updates import Transition, past_deadline
from fastapi_app.images.batch_writes import BatchWrites
from fastapi_app.images.request_loop import batch_writes, gated, request_loop, shared_redis, ssl_context
from fastapi_app.images.service import artifact_key
from fastapi_app.metrics.recorders import limiter_wait, provider_call
from fastapi_app.reuse import work as reuse
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import Batch, FailureCode, GroupStatus
from fastapi_app.store.batch_transitions import (
    Claim,
    ItemResult,
    claim_group,
    complete_group,
    delivery_tag,
    fail_attempt,
    reject_group,
    release_claim,
)
from fastapi_app.store.docstore import Effects
from fastapi_app.store.limiter import Limiter
from strangler_bridge.contracts.images import ImageBatchCreate, ImageFormat
from strangler_bridge.errors import (
    InvalidInput,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    RecordNotFound,
)
from strangler_bridge.fetch import fetch_bytes
from strangler_bridge.keys import DueKind, DueMember
from strangler_bridge.providers.runware.client import AsyncRunwareClient, ImageResult, ImageTask, InferenceOutcome

log = logging.getLogger(__name__)


def limiter(rt: Runtime, client: aredis.Redis) -> Limiter:
    """The cluster-wide Runware limiter."""
    settings = rt.settings
    return Limiter(client, rt.keys.limiter("runware"), settings.runware_concurrency, lease_s=settings.runware_lease_s)


def submit_batch(rt: Runtime, batch_id: str) -> None:
    """Hand every open image of a batch to this process's request loop and return (see ``request_loop``), after
    reusing what identical images made."""
    prepared = reuse.prepare(rt, batch_id)
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal:
        return
    # A held image (its output kept, or identical to one in flight) is not sent: reuse completes it.
    todo = [
        g.no
        for g in batch.groups
        if g.status in (GroupStatus.PENDING, GroupStatus.SUBMITTING) and not batch.item(g.indexes[0]).waiting
    ]
    if todo:
        request = ImageBatchCreate.model_validate(batch.request)
        request_loop(rt.settings).submit(_submit_many(rt, batch_id, todo, request))
    reuse.reuse_kept(rt, prepared)  # while the loop sends the others: the copies are off their critical path


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
    attempts = rt.settings.provider_attempts
    async with slots.slot() as waited:
        try:
            claim = await writes.apply(
                rt,
                batch_id,
                lambda b: claim_group(
                    b, no, now=time.time(), lease_s=lease, max_attempts=attempts, new_provider_id=_new_task_uuid
                ),
            )
        except RecordNotFound:
            return
        if claim is None or claim.provider_id is None:
            return
        try:
            task = _task(rt, request, claim)
        except InvalidInput as exc:  # a value outside a range Runware documents: it would reject the task for good
            refused = f"Runware would reject the task: {exc.message}"
            await writes.apply(rt, batch_id, lambda b: reject_group(b, no, refused, attempt=claim.attempt))
            return
        limiter_wait(rt, "runware", waited)  # counted for requests sent, not for slots given back unused
        try:
            with provider_call(rt, "runware", "infer"):
                outcome = await runware.infer_or_recover(task, maybe_sent=claim.recover)
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


def _new_task_uuid() -> str:
    return str(uuid.uuid4())


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


#: What recording an outcome asks of the caller: submit the batch's images again, and a file to remove.
Followup = tuple[bool, str | None]


async def apply_outcome(
    rt: Runtime, batch_id: str, claim: Claim, task: ImageTask, outcome: InferenceOutcome, *, writes: BatchWrites
) -> None:
    """Store the image (or record the task's error) for one claimed image: the one transition for results.

    Fetching and storing the image runs in a thread; the batch write goes through ``writes``, combined with
    the other images of the batch that finish at the same time. A stored image the record did not take
    (another delivery of it won) is removed.
    """
    transition = await asyncio.to_thread(outcome_transition, rt, batch_id, claim, task, outcome)
    if transition is None:
        return
    again, unrecorded = await writes.apply(rt, batch_id, transition)
    if unrecorded:
        await asyncio.to_thread(rt.artifacts.delete, unrecorded)
    if again:
        await asyncio.to_thread(tasks.submit_images.enqueue, rt, batch_id)


def outcome_transition(
    rt: Runtime, batch_id: str, claim: Claim, task: ImageTask, outcome: InferenceOutcome
) -> Transition[Followup] | None:
    """Store the image of a claimed task's outcome (blocking) and return the transition recording it.

    ``None``: nothing to record yet. A refused, dead, oversized or empty output fails the image at once (a
    retry cannot mend it); a download that failed for now uses one of its attempts, and the next one asks
    Runware for the same result (``getResponse``) instead of paying again.
    """
    index, attempts = claim.indexes[0], rt.settings.provider_attempts
    results = outcome.results_for(task.task_uuid)
    if results:
        try:
            item = _store_image(rt, batch_id, index, task, results)
        except ProviderRejected as exc:
            unusable = f"unusable Runware output: {exc.message}"
            return lambda b: (
                reject_group(b, claim.no, unusable, FailureCode.UNUSABLE_OUTPUT, attempt=claim.attempt)[0],
                (False, None),
            )
        except ProviderUnavailable as exc:
            unfetched = f"Runware output not fetched: {exc.message}"
            return lambda b: _failed(b, claim, unfetched, attempts, code=FailureCode.UNUSABLE_OUTPUT, keep=True)
        return lambda b: _completed(b, claim.no, item, attempts)
    error = outcome.error_for(task.task_uuid)
    if error is None and task.task_uuid in outcome.processing:
        return None  # still running at Runware: the lapsing claim brings the reconciler back to ask again
    reason = f"Runware {error.code}: {error.message}" if error else "Runware returned no image for the task"
    return lambda b: _failed(b, claim, reason, attempts, code=FailureCode.PROVIDER_FAILED, keep=False)


def _store_image(rt: Runtime, batch_id: str, index: int, task: ImageTask, results: list[ImageResult]) -> ItemResult:
    result = results[0]
    data = result.image_bytes()
    if data is None and result.image_url:
        settings = rt.settings
        data = fetch_bytes(
            rt.http, result.image_url, allow_hosts=settings.fetch_allow_hosts, max_bytes=settings.max_fetch_bytes
        )
    if not data:
        raise ProviderRejected("Runware returned an empty image", provider="runware")
    fmt = ImageFormat(task.output_format)
    key = artifact_key(batch_id, index, fmt, delivery_tag())
    return ItemResult(
        index=index,
        artifact=key,
        content_type=fmt.content_type,
        size_bytes=rt.artifacts.put(key, data),
        cost=sum(r.cost or 0.0 for r in results) if any(r.cost is not None for r in results) else None,
        provider_id=task.task_uuid,
    )


def _completed(batch: Batch, no: int, item: ItemResult, attempts: int) -> tuple[Effects, Followup]:
    effects, _ = complete_group(batch, no, [item], max_attempts=attempts, now=time.time())
    recorded = batch.item(item.index).artifact == item.artifact
    return effects, (False, None if recorded else item.artifact)


def _failed(
    batch: Batch, claim: Claim, reason: str, attempts: int, *, code: FailureCode, keep: bool
) -> tuple[Effects, Followup]:
    effects, again = fail_attempt(
        batch,
        claim.no,
        claim.attempt,
        reason,
        max_attempts=attempts,
        retry_at=time.time(),
        code=code,
        keep_submission=keep,
    )
    return effects, (again, None)


def reconcile_group(rt: Runtime, batch_id: str, no: int) -> None:
    """Resolve an overdue image: submit it, or recover a lapsed submission through ``getResponse``."""
    member = DueMember(DueKind.IMAGES, batch_id, no).format()
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal or not 0 <= no < len(batch.groups) or batch.group(no).status.terminal:
        rt.redis.zrem(rt.keys.due, member)
        return
    if past_deadline(rt, batch):
        return
    group = batch.group(no)
    if group.status is GroupStatus.SUBMITTING and (group.claim_until or 0) > time.time():
        rt.redis.zadd(rt.keys.due, {member: group.claim_until or 0})
        return
    if group.status is GroupStatus.PENDING:
        reuse.reuse_kept(rt, reuse.prepare(rt, batch_id, {no}))
        after = rt.batches.load(batch_id)
        if after is not None and after.item(group.indexes[0]).waiting:  # the identical image in flight completes it
            rt.redis.zadd(rt.keys.due, {member: time.time() + max(rt.settings.reconcile_after_s, 5.0)})
            return
    submit_group(rt, batch_id, no, ImageBatchCreate.model_validate(batch.request))
