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

from fastapi_app import enqueueing
from fastapi_app.batch_ops import Transition, update_batch, update_batch_many
from fastapi_app.batches import (
    Batch,
    Claim,
    GroupStatus,
    ItemResult,
    claim_group,
    complete_group,
    due_member,
    fail_attempt,
    record_submission,
    reject_group,
    release_claim,
)
from fastapi_app.docstore import Effects
from fastapi_app.metrics.recorders import provider_call
from fastapi_app.runtime import Runtime
from fastapi_app.signing import sign
from fastapi_app.tts.service import artifact_key
from strangler_bridge.audio import audio_duration
from strangler_bridge.contracts.tts import AudioFormat, TtsBatchCreate
from strangler_bridge.errors import (
    BridgeError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.fetch import fetch_stream
from strangler_bridge.http import UNSENT_ERRORS
from strangler_bridge.providers.runpod import (
    LOCAL_STATUS_TIMEOUT_S,
    RunPodJob,
    RunPodStatus,
    is_local_test_job,
    parse_tts_output,
    tts_input,
)

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
    """Submit every group of a batch that is not yet with RunPod."""
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal:
        return
    for group in batch.groups:
        if group.status in (GroupStatus.PENDING, GroupStatus.SUBMITTING):
            submit_group(rt, batch_id, group.no)


def submit_group(rt: Runtime, batch_id: str, no: int) -> None:
    """Claim group ``no``, send it to RunPod's ``/run`` with its webhook, and record the job id.

    The claim is taken (atomically) before calling RunPod and the job id recorded right after, so a group
    with a recorded id is never submitted again. If the call's outcome is unknown (the request may have
    reached RunPod), the claim is left to lapse: the webhook, which names this attempt, completes the
    group if the job exists; only after the lease does the reconciler submit again.
    """
    now = time.time()
    lease = rt.settings.reconcile_after_s
    try:
        batch, claim = update_batch(rt, batch_id, lambda b: claim_group(b, no, now=now, lease_s=lease))
    except KeyError:
        return
    if claim is None:
        return
    request = TtsBatchCreate.model_validate(batch.request)
    chunks = {chunk.index: chunk for chunk in request.chunks}
    payload = tts_input(
        [(index, chunks[index].text, chunks[index].voice or request.voice) for index in claim.indexes],
        request.format.value,
    )
    try:
        with _claim_kept(rt, batch_id, claim, lease), provider_call(rt, "runpod", "run"):
            job = rt.runpod.run(payload, webhook=webhook_url(rt, batch_id, no, claim.attempt))
    except (ProviderRejected, ProviderAuthError, ProviderNotFound) as exc:  # 4xx: retrying cannot help
        reason = str(exc)
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
    update_batch(
        rt, batch_id, lambda b: record_submission(b, claim, job.id, now=time.time(), reconcile_after_s=poll_after)
    )


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
        return Effects(due={due_member("tts", batch_id, claim.no): group.claim_until}), None

    def keep() -> None:
        while not done.wait(lease_s / 3):
            try:
                rt.batches.update(batch_id, renew)
            except (BridgeError, KeyError) as exc:
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

    Every output is stored first; then all completions are written in one update of the batch record
    (webhooks of one batch tend to arrive together, and parsing and rewriting the record is the main cost).
    """
    applied = [False] * len(deliveries)
    batch = rt.batches.load(batch_id)
    if batch is None:
        return applied  # unknown or expired: a late delivery changes nothing
    fmt = AudioFormat(batch.request.get("format", "wav"))
    completions: list[tuple[int, Transition[bool]]] = []
    for position, (no, attempt, job) in enumerate(deliveries):
        if not job.status.terminal or not 0 <= no < len(batch.groups) or batch.group(no).status.terminal:
            continue  # not final, or no such group, or already applied: a duplicate or late delivery
        applied[position] = True
        if job.status is not RunPodStatus.COMPLETED:
            _fail(rt, batch_id, no, attempt, describe_failure(job))
            continue
        try:
            results = _store_outputs(rt, batch_id, batch.group(no).indexes, fmt, job)
        except ProviderRejected as exc:
            _fail(rt, batch_id, no, attempt, f"unusable RunPod output: {exc.message}")
            continue
        completions.append((position, functools.partial(complete_group, no=no, results=results)))
    if completions:
        _, done = update_batch_many(rt, batch_id, [transition for _, transition in completions])
        for (position, _), ok in zip(completions, done, strict=True):
            applied[position] = ok
    return applied


def _fail(rt: Runtime, batch_id: str, no: int, attempt: int, reason: str) -> None:
    max_failures = rt.settings.provider_attempts
    _, again = update_batch(
        rt, batch_id, lambda b: fail_attempt(b, no, attempt, reason, max_failures=max_failures, retry_at=time.time())
    )
    if again:
        enqueueing.submit_tts(rt, batch_id)


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
    wanted = set(indexes)
    results = []
    for chunk in parse_tts_output(job.output):
        if chunk.index not in wanted:
            continue
        key = artifact_key(batch_id, chunk.index, fmt)
        if chunk.audio_url and not chunk.audio_base64:
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
        results.append(
            ItemResult(
                index=chunk.index,
                artifact=key,
                content_type=fmt.content_type,
                size_bytes=size,
                duration_s=duration,
                provider_id=job.id,
            )
        )
    return results


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
    member = due_member("tts", batch_id, no)
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal or not 0 <= no < len(batch.groups) or batch.group(no).status.terminal:
        rt.redis.zrem(rt.batches.due_key, member)
        return
    group = batch.group(no)
    now = time.time()
    if group.status is GroupStatus.PENDING or (
        group.status is GroupStatus.SUBMITTING and (group.claim_until or 0) <= now
    ):
        submit_group(rt, batch_id, no)
        return
    if group.status is GroupStatus.SUBMITTING or group.provider_id is None:
        rt.redis.zadd(rt.batches.due_key, {member: group.claim_until or now + rt.settings.reconcile_after_s})
        return
    if is_local_test_job(group.provider_id):
        # That status call runs the job: no other reconcile may ask (and find it gone) while it does.
        rt.redis.zadd(rt.batches.due_key, {member: now + LOCAL_STATUS_TIMEOUT_S})
    try:
        with provider_call(rt, "runpod", "status"):
            job = rt.runpod.status(group.provider_id)
    except ProviderNotFound:
        _fail(rt, batch_id, no, group.attempt, "RunPod no longer knows the job (expired before its result was read)")
        return
    except ProviderError as exc:
        log.warning("runpod status for batch %s group %s failed: %s", batch_id, no, exc)
        rt.redis.zadd(rt.batches.due_key, {member: now + rt.settings.reconcile_after_s})
        return
    if job.status.terminal:
        apply_job(rt, batch_id, no, group.attempt, job)
    else:
        rt.redis.zadd(rt.batches.due_key, {member: time.time() + _poll_after_s(rt, job.id)})
