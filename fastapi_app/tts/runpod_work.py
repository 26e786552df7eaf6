"""Submitting TTS groups to RunPod and applying what RunPod reports, by webhook or by polling.

:func:`apply_jobs` is the one transition function for results: the webhook inbox, the reconciler and the
download task all call it, and a second delivery of the same result changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import io
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import httpx

from fastapi_app import tasks
from fastapi_app.batching.updates import Transition, discard_unrecorded, past_deadline, update_batch, update_batch_many
from fastapi_app.metrics.recorders import provider_call
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
    record_submission,
    reject_group,
    release_claim,
)
from fastapi_app.store.docstore import Effects
from fastapi_app.tts.service import artifact_key
from strangler_bridge.audio import audio_duration
from strangler_bridge.contracts.tts import AudioFormat, TtsBatchCreate
from strangler_bridge.errors import (
    BridgeError,
    InvalidInput,
    NotFound,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RecordNotFound,
)
from strangler_bridge.fetch import fetch_stream
from strangler_bridge.http import UNSENT_ERRORS
from strangler_bridge.keys import DueKind, DueMember
from strangler_bridge.providers.runpod.client import (
    LOCAL_STATUS_TIMEOUT_S,
    RunPodJob,
    RunPodStatus,
    is_local_test_job,
    parse_tts_output,
    tts_input,
)
from strangler_bridge.settings import Settings
from strangler_bridge.signing import sign

log = logging.getLogger(__name__)

PURPOSE = "tts"
#: One RunPod status object for one attempt of one group: ``(group no, attempt, job)``.
Delivery = tuple[int, int, RunPodJob]


def webhook_url(rt: Runtime, batch_id: str, no: int, attempt: int) -> str:
    """The signed URL RunPod calls for one attempt of one group."""
    settings = rt.settings
    token = sign(
        settings.secret("webhook_secret"), PURPOSE, [batch_id, str(no), str(attempt)], settings.webhook_token_ttl_s
    )
    return settings.public_link(f"/tts/callback?token={token}")


def submit_batch(rt: Runtime, batch_id: str) -> None:
    """Submit every group of a batch that is not yet with RunPod (after reusing what identical chunks made)."""
    prepared = reuse.prepare(rt, batch_id)
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal:
        return
    for group in batch.groups:
        if group.status in (GroupStatus.PENDING, GroupStatus.SUBMITTING):
            submit_group(rt, batch_id, group.no)
    reuse.reuse_kept(rt, prepared)  # after the submissions: the copies are off their critical path


def submit_group(rt: Runtime, batch_id: str, no: int) -> None:
    """Claim group ``no``, send it to RunPod's ``/run`` with its webhook, and record the job id.

    The claim is taken (atomically) before calling RunPod and the job id recorded right after, so a group
    with a recorded id is never submitted again. If the call's outcome is unknown (the request may have
    reached RunPod), the claim is left to lapse: the webhook, which names this attempt, completes the
    group if the job exists; only after the lease does the reconciler submit again.
    """
    now = time.time()
    lease = rt.settings.reconcile_after_s
    attempts = rt.settings.provider_attempts
    try:
        batch, claim = update_batch(
            rt, batch_id, lambda b: claim_group(b, no, now=now, lease_s=lease, max_attempts=attempts)
        )
    except RecordNotFound:
        return
    if claim is None:
        return
    if claim.recover and claim.provider_id and _recovered(rt, batch_id, claim):
        return
    request = TtsBatchCreate.model_validate(batch.request)
    chunks = {chunk.index: chunk for chunk in request.chunks}
    payload = tts_input(
        [(index, chunks[index].text, chunks[index].voice or request.voice) for index in claim.indexes],
        request.format.value,
    )
    try:
        with _claim_kept(rt, batch_id, claim, lease), provider_call(rt, "runpod", "run"):
            job = rt.runpod.run(
                payload, webhook=webhook_url(rt, batch_id, no, claim.attempt), s3_config=upload_grant(rt, batch_id)
            )
    except (ProviderRejected, ProviderAuthError, ProviderNotFound) as exc:  # 4xx: retrying cannot help
        reason = f"RunPod rejected the job: {exc}"
        log.warning("runpod rejected batch %s group %s: %s", batch_id, no, reason)
        update_batch(rt, batch_id, lambda b: reject_group(b, no, reason))
        return
    except ProviderError as exc:
        if _outcome_unknown(exc):
            log.warning("runpod submit outcome unknown for batch %s group %s: %s", batch_id, no, exc)
            return
        reason = str(exc)
        update_batch(rt, batch_id, lambda b: release_claim(b, claim, reason, now=time.time()))
        return
    poll_after = _poll_after_s(rt, job.id)
    after, _ = update_batch(
        rt, batch_id, lambda b: record_submission(b, claim, job.id, now=time.time(), reconcile_after_s=poll_after)
    )
    if after.group(no).status is GroupStatus.CANCELLED:
        _cancel_at_runpod(rt, job.id)  # cancelled while the call was in flight: nobody wants this work


def _cancel_at_runpod(rt: Runtime, job_id: str) -> None:
    try:
        with provider_call(rt, "runpod", "cancel"):
            rt.runpod.cancel(job_id)
    except ProviderError as exc:
        log.info("runpod cancel of %s failed: %s", job_id, exc)


def _recovered(rt: Runtime, batch_id: str, claim: Claim) -> bool:
    """Before paying again, ask RunPod about the group's earlier job: apply its result, or adopt it if running.

    Returns whether the claim was resolved that way (``False``: the earlier job has nothing to give, submit).
    """
    job_id = claim.provider_id or ""
    try:
        with provider_call(rt, "runpod", "status"):
            job = rt.runpod.status(job_id)
    except ProviderNotFound:
        return False
    except ProviderError as exc:
        log.warning("runpod status of earlier job %s failed (%s); leaving the claim to lapse", job_id, exc)
        return True  # its outcome is unknown: the reconciler asks again when the claim lapses
    if job.status is RunPodStatus.COMPLETED:
        applied = apply_jobs(rt, batch_id, [(claim.no, claim.attempt, job)])[0]
        log.info("batch %s group %s: earlier RunPod job %s reused (applied: %s)", batch_id, claim.no, job_id, applied)
        return True
    if not job.status.terminal:  # still queued or running: wait for it instead of paying for another
        update_batch(
            rt,
            batch_id,
            lambda b: record_submission(
                b, claim, job_id, now=time.time(), reconcile_after_s=rt.settings.reconcile_after_s
            ),
        )
        return True
    return False


def _poll_after_s(rt: Runtime, job_id: str) -> float:
    """When to ask RunPod about a job: after the webhook lease, or at once for the SDK's local test API,
    which sends no webhook and runs a job only when asked for its status."""
    return rt.settings.reconcile_interval_s if is_local_test_job(job_id) else rt.settings.reconcile_after_s


@contextlib.contextmanager
def _claim_kept(rt: Runtime, batch_id: str, claim: Claim, lease_s: float) -> Iterator[None]:
    """Renew the claim while the ``/run`` call is in flight.

    The client's retries and back-off can make one call outlast the lease; had the claim lapsed meanwhile, the
    reconciler would submit the group again and RunPod would run (and bill) it twice. So a claim lapses only
    once its worker stops renewing it: the worker died, or the call ended with its outcome unknown.
    """
    done = threading.Event()

    def renew(batch: Batch) -> tuple[Effects, None]:
        group = batch.group(claim.no)
        if group.status is not GroupStatus.SUBMITTING or group.claim != claim.token:
            return Effects(changed=False), None
        group.claim_until = time.time() + lease_s
        return Effects(due={batch.due(claim.no): group.claim_until}), None

    def keep() -> None:
        while not done.wait(lease_s / 3):
            try:
                rt.batches.update(batch_id, renew)
            except BridgeError as exc:
                log.warning("could not renew the claim on batch %s group %s: %s", batch_id, claim.no, exc)

    keeper = threading.Thread(target=keep, name=f"claim-{batch_id}-{claim.no}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()


def _outcome_unknown(exc: ProviderError) -> bool:
    """Whether the request may have reached the provider (a transport failure after sending)."""
    cause = exc.__cause__
    return (
        isinstance(exc, ProviderUnavailable)
        and isinstance(cause, httpx.TransportError)
        and not isinstance(cause, UNSENT_ERRORS)
    )


def apply_job(rt: Runtime, batch_id: str, no: int, attempt: int, job: RunPodJob) -> bool:
    """Apply RunPod's status object for ``attempt`` of group ``no`` (from a webhook or a poll).

    Returns whether it was applied (``False``: not final yet, or a duplicate or late delivery).
    """
    return apply_jobs(rt, batch_id, [(no, attempt, job)])[0]


def apply_jobs(rt: Runtime, batch_id: str, deliveries: Sequence[Delivery]) -> list[bool]:
    """Apply several status objects for groups of one batch; whether each was applied, in order.

    Every output is stored first, each delivery under its own keys; then all completions are written in one
    update of the batch record (webhooks of one batch tend to arrive together, and parsing and rewriting the
    record is the main cost), and the files of deliveries that lost to another are removed. A result for a
    cancelled or failed group is stored too: it is paid for, and a retry uses it.
    """
    applied = [False] * len(deliveries)
    batch = rt.batches.load(batch_id)
    if batch is None:
        return applied  # unknown or expired: a late delivery changes nothing
    fmt = AudioFormat(batch.request.get("format", "wav"))
    attempts, now = rt.settings.provider_attempts, time.time()
    completions: list[tuple[int, Transition[bool]]] = []
    stored: list[ItemResult] = []
    for position, (no, attempt, job) in enumerate(deliveries):
        if not job.status.terminal or not 0 <= no < len(batch.groups) or not _open_items(batch, no):
            continue  # not final, or no such group, or every item has its result: a duplicate or late delivery
        if batch.group(no).status.terminal and job.status is not RunPodStatus.COMPLETED:
            continue  # a cancelled or failed group: only a result is worth keeping
        applied[position] = True
        if job.status is not RunPodStatus.COMPLETED:
            _fail(rt, batch_id, no, attempt, describe_failure(job))
            continue
        try:
            results = _store_outputs(rt, batch_id, _open_items(batch, no), fmt, job)
        except ProviderRejected as exc:  # a retry cannot mend it: refused or dead URL, invalid or oversized
            reason = f"unusable RunPod output: {exc.message}"
            update_batch(
                rt, batch_id, functools.partial(reject_group, no=no, error=reason, code=FailureCode.UNUSABLE_OUTPUT)
            )
            continue
        except ProviderUnavailable as exc:  # fetching it failed for now: the next attempt asks RunPod again
            _fail(rt, batch_id, no, attempt, f"RunPod output not fetched: {exc.message}", keep_submission=True)
            continue
        stored.extend(results)
        completions.append(
            (position, functools.partial(complete_group, no=no, results=results, max_attempts=attempts, now=now))
        )
    if completions:
        after, done = update_batch_many(rt, batch_id, [transition for _, transition in completions])
        discard_unrecorded(rt, after, stored)
        for (position, _), ok in zip(completions, done, strict=True):
            applied[position] = ok
        if any(g.status is GroupStatus.PENDING for g in after.groups) and not after.status.terminal:
            tasks.submit_tts.enqueue(rt, batch_id)  # items an output lacked go out again
    return applied


def _open_items(batch: Batch, no: int) -> list[int]:
    """The group's items still without a result."""
    return [index for index in batch.group(no).indexes if batch.item(index).artifact is None]


def _fail(rt: Runtime, batch_id: str, no: int, attempt: int, reason: str, *, keep_submission: bool = False) -> None:
    attempts = rt.settings.provider_attempts
    code = FailureCode.UNUSABLE_OUTPUT if keep_submission else FailureCode.PROVIDER_FAILED
    transition = functools.partial(
        fail_attempt,
        no=no,
        attempt=attempt,
        reason=reason,
        max_attempts=attempts,
        retry_at=time.time(),
        code=code,
        keep_submission=keep_submission,
    )
    _, again = update_batch(rt, batch_id, transition)
    if again:
        tasks.submit_tts.enqueue(rt, batch_id)


def describe_failure(job: RunPodJob) -> str:
    """A one-line reason from a FAILED / TIMED_OUT / CANCELLED status object."""
    detail = job.error_detail()
    if isinstance(detail, dict):
        message = detail.get("error_message") or detail.get("message") or detail.get("error") or str(detail)
        kind = detail.get("error_type")
        text = f"{kind}: {message}" if kind else str(message)
    else:
        text = detail or ""
    return f"RunPod {job.status.value}" + (f": {text}" if text else "")


def _store_outputs(
    rt: Runtime, batch_id: str, indexes: list[int], fmt: AudioFormat, job: RunPodJob
) -> list[ItemResult]:
    if not job.has_output:
        raise ProviderRejected("RunPod reported COMPLETED without any output", provider="runpod")
    results: list[ItemResult] = []
    try:
        _store_chunks(rt, batch_id, indexes, fmt, job, into=results)
    except BaseException:
        for result in results:  # nothing half-stored: the files of this delivery go with it
            rt.artifacts.delete(result.artifact)
        raise
    return results


def _store_chunks(
    rt: Runtime, batch_id: str, indexes: list[int], fmt: AudioFormat, job: RunPodJob, *, into: list[ItemResult]
) -> None:
    wanted = set(indexes)
    delivery = delivery_tag()
    chunks = parse_tts_output(job.output)
    share = job_cost(rt.settings, job, len(chunks))
    for chunk in chunks:
        if chunk.index not in wanted:
            continue
        wanted.discard(chunk.index)  # a chunk listed twice in one output is stored once
        key = artifact_key(batch_id, chunk.index, fmt, delivery)
        if chunk.audio_key and not chunk.audio_base64:
            # Uploaded by the handler to our bucket: copied (streamed) under this delivery's own key, like a download.
            uploaded = _uploaded_key(rt, batch_id, chunk.audio_key)
            try:
                source = rt.artifacts.open(uploaded)
            except NotFound:
                raise ProviderRejected(f"audio_key {chunk.audio_key!r} does not exist", provider="runpod") from None
            with source:
                size = rt.artifacts.put(key, _blocks(source))
            with rt.artifacts.open(key) as stored:
                duration = _measured(chunk.index, stored, size, fmt)
        elif chunk.audio_url and not chunk.audio_base64:
            # A download goes straight to the store, so a 50 MB file never sits in the worker's memory; its
            # duration is then measured from the stored file.
            settings = rt.settings
            parts = fetch_stream(
                rt.http, chunk.audio_url, allow_hosts=settings.fetch_allow_hosts, max_bytes=settings.max_fetch_bytes
            )
            size = rt.artifacts.put(key, parts)
            with rt.artifacts.open(key) as stored:
                duration = _measured(chunk.index, stored, size, fmt)
        else:
            data = _audio_bytes(chunk.audio_base64)
            duration = _measured(chunk.index, io.BytesIO(data), len(data), fmt)
            size = rt.artifacts.put(key, data)
        into.append(
            ItemResult(
                index=chunk.index,
                artifact=key,
                content_type=fmt.content_type,
                size_bytes=size,
                duration_s=duration,
                cost=share,
                provider_id=job.id,
            )
        )


def _blocks(source: BinaryIO) -> Iterator[bytes]:
    yield from iter(lambda: source.read(1 << 20), b"")


def upload_grant(rt: Runtime, batch_id: str) -> dict[str, str] | None:
    """The ``s3Config`` for a job of this batch (``STRANGLER_RUNPOD_S3_UPLOAD`` with an S3 store), else None."""
    if not rt.settings.runpod_s3_upload:
        return None
    return rt.artifacts.upload_grant(f"uploads/tts/{batch_id}")


def _uploaded_key(rt: Runtime, batch_id: str, name: str) -> str:
    """The key of an object a handler reports, refused unless it lies below this batch's upload path."""
    try:
        key = rt.artifacts.key_of(name)
    except InvalidInput as exc:
        raise ProviderRejected(f"audio_key {name!r}: {exc.message}", provider="runpod") from None
    if not key.startswith(f"uploads/tts/{batch_id}/"):
        raise ProviderRejected(f"audio_key {name!r} is not below this batch's upload path", provider="runpod")
    return key


def job_cost(settings: Settings, job: RunPodJob, chunks: int) -> float | None:
    """Each chunk's share of what a RunPod job cost: its ``executionTime`` times the endpoint's price per second.

    ``None`` when the price (``STRANGLER_RUNPOD_USD_PER_S``) or the time is unknown. The job's chunks share it
    evenly: RunPod bills the job, not the chunk.
    """
    if settings.runpod_usd_per_s is None or job.execution_time_ms is None or chunks <= 0:
        return None
    return round(job.execution_time_ms / 1000 * settings.runpod_usd_per_s / chunks, 9)


def _measured(index: int, stream: BinaryIO, size: int, fmt: AudioFormat) -> float:
    """The clip's duration measured from its bytes (never the handler's ``duration_s``); rejects what is not audio."""
    try:
        return audio_duration(stream, size, fmt.value)
    except ValueError as exc:
        raise ProviderRejected(f"chunk {index}: {exc}", provider="runpod") from None


def _audio_bytes(audio_base64: str | None) -> bytes:
    if audio_base64:
        try:
            return base64.b64decode(audio_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ProviderRejected("audio_base64 is not valid base64", provider="runpod") from None
    raise ProviderRejected("a chunk has neither audio_base64 nor audio_url", provider="runpod")


def reconcile_group(rt: Runtime, batch_id: str, no: int) -> None:
    """Resolve a group whose deadline passed: submit it, wait for its claim, or ask RunPod for its status."""
    member = DueMember(DueKind.TTS, batch_id, no).format()
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal or not 0 <= no < len(batch.groups) or batch.group(no).status.terminal:
        rt.redis.zrem(rt.keys.due, member)
        return
    if past_deadline(rt, batch):
        return
    group = batch.group(no)
    now = time.time()
    if group.status is GroupStatus.PENDING or (
        group.status is GroupStatus.SUBMITTING and (group.claim_until or 0) <= now
    ):
        reuse.reuse_kept(rt, reuse.prepare(rt, batch_id, {no}))
        submit_group(rt, batch_id, no)
        return
    if group.status is GroupStatus.SUBMITTING or group.provider_id is None:
        rt.redis.zadd(rt.keys.due, {member: group.claim_until or now + rt.settings.reconcile_after_s})
        return
    if is_local_test_job(group.provider_id):
        # That status call runs the job: no other reconcile may ask (and find it gone) while it does.
        rt.redis.zadd(rt.keys.due, {member: now + LOCAL_STATUS_TIMEOUT_S})
    try:
        with provider_call(rt, "runpod", "status"):
            job = rt.runpod.status(group.provider_id)
    except ProviderNotFound:
        _fail(rt, batch_id, no, group.attempt, "RunPod no longer knows the job (expired before its result was read)")
        return
    except ProviderError as exc:
        log.warning("runpod status for batch %s group %s failed: %s", batch_id, no, exc)
        rt.redis.zadd(rt.keys.due, {member: now + rt.settings.reconcile_after_s})
        return
    if job.status.terminal:
        apply_job(rt, batch_id, no, group.attempt, job)
    else:
        rt.redis.zadd(rt.keys.due, {member: time.time() + _poll_after_s(rt, job.id)})
