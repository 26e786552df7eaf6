"""The transitions of a :class:`~fastapi_app.store.batch.Batch`: pure functions over the parsed record.

Each is run atomically by :meth:`fastapi_app.store.docstore.DocStore.update` and returns the due-index changes
it needs with its result. They are safe to apply twice: a second delivery of the same result finds the group
already terminal and changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from pydantic import BaseModel

from fastapi_app.store.batch import STEP_NAMES, Batch, FailureCode, Group, GroupStatus, Item
from fastapi_app.store.docstore import Effects
from strangler_bridge.contracts.common import BatchStatus, ItemStatus

#: Submissions that did not get through (outages, 429s) before a group fails, and the longest wait between.
MAX_SUBMIT_ERRORS = 20
MAX_BACKOFF_S = 30.0


class Claim(BaseModel):
    """A worker's right to submit one group for one attempt."""

    no: int
    attempt: int
    token: str
    indexes: list[int]  # the group's items still without a result: only these are sent
    provider_id: str | None = None  # set before sending when we choose the id (Runware's taskUUID)
    lapsed: bool = False  # a previous claim lapsed: its request may have reached the provider
    #: An earlier submission of this group may have a result (a lapsed claim, or a retry after a cancel or a
    #: deadline): ask the provider about ``provider_id`` before paying for the work again.
    recover: bool = False


def claim_group(
    batch: Batch,
    no: int,
    *,
    now: float,
    lease_s: float,
    max_attempts: int,
    new_provider_id: Callable[[], str] | None = None,
) -> tuple[Effects, Claim | None]:
    """Take the right to submit group ``no``: only a pending group, or one whose previous claim lapsed.

    A lapsed claim means a worker died between claiming and recording the outcome (or the outcome of its
    call is unknown): the provider may have the work, so the lease is long enough for its webhook to arrive
    first. Where we choose the provider's id (``new_provider_id``), it is stored here, before anything is
    sent, and kept across lapsed claims so the provider can be asked about it.

    Every claim is an attempt (a submission or a recovery): once ``max_attempts`` are used the group fails
    instead, with the last error it saw.
    """
    group = batch.group(no)
    if batch.status.terminal or group.status.terminal:
        return Effects(changed=False), None
    if group.status is GroupStatus.SUBMITTED:
        return Effects(changed=False), None
    if group.status is GroupStatus.SUBMITTING and (group.claim_until or 0) > now:
        return Effects(changed=False), None
    lapsed = group.status is GroupStatus.SUBMITTING
    open_items = [index for index in group.indexes if batch.item(index).sendable]
    if not open_items and not lapsed:  # every open item waits for identical work elsewhere: look again later
        return Effects(due={batch.due(no): now + lease_s}), None
    if group.attempts_used >= max_attempts:
        last = f"; last error: {group.error}" if group.error else ""
        reason = f"no result after {group.attempts_used} attempts{last}"
        return _fail_group(batch, group, reason, FailureCode.ATTEMPTS_EXHAUSTED), None
    # An id kept from an earlier round (a retry, a fetch that failed for now) may hold a result; one kept by
    # release_claim was never accepted, and resending it is safe (Runware answers conflictTaskUUID if it was).
    recover = lapsed or (group.provider_id is not None and group.submit_errors == 0)
    group.status = GroupStatus.SUBMITTING
    group.attempt += 1
    group.claim = secrets.token_hex(8)
    group.claim_until = now + lease_s
    if new_provider_id is not None and group.provider_id is None:
        group.provider_id = new_provider_id()
    batch.status = BatchStatus.RUNNING
    for index in open_items:
        batch.item(index).status = ItemStatus.SUBMITTED
    claim = Claim(
        no=no,
        attempt=group.attempt,
        token=group.claim,
        indexes=open_items,
        provider_id=group.provider_id,
        lapsed=lapsed,
        recover=recover,
    )
    return Effects(due={batch.due(no): group.claim_until}), claim


def record_submission(
    batch: Batch, claim: Claim, provider_id: str, *, now: float, reconcile_after_s: float
) -> tuple[Effects, bool]:
    """Record the provider's id for a claimed submission; the group then counts as submitted.

    If the webhook already completed the group, or it was cancelled meanwhile, only the id is kept (so a late
    result is recognised and the caller can cancel the work at the provider). Returns whether the claim still
    held.
    """
    group = batch.group(claim.no)
    if group.status.terminal:
        if group.provider_id is None:
            group.provider_id = provider_id
            return Effects(), group.status is GroupStatus.COMPLETED
        if provider_id != group.provider_id and provider_id not in group.previous_ids:
            group.previous_ids.append(provider_id)
            return Effects(), group.status is GroupStatus.COMPLETED
        return Effects(changed=False), group.status is GroupStatus.COMPLETED
    if group.status is not GroupStatus.SUBMITTING or group.claim != claim.token:
        # Our claim lapsed and another attempt took over; keep the id so its webhook is still recognised.
        if provider_id not in group.previous_ids:
            group.previous_ids.append(provider_id)
            return Effects(), False
        return Effects(changed=False), False
    group.status = GroupStatus.SUBMITTED
    if group.provider_id and group.provider_id != provider_id:
        group.previous_ids.append(group.provider_id)
    group.provider_id = provider_id
    group.claim = None
    group.claim_until = None
    for index in claim.indexes:
        batch.item(index).provider_id = provider_id
    return Effects(due={batch.due(claim.no): now + reconcile_after_s}), True


def release_claim(
    batch: Batch, claim: Claim, error: str, *, now: float, max_submit_errors: int = MAX_SUBMIT_ERRORS
) -> tuple[Effects, bool]:
    """The call did not get through (outage, 429): back to pending, tried again after an exponential backoff.

    After ``max_submit_errors`` such failures in a row the group fails. Returns whether it will be retried.
    """
    group = batch.group(claim.no)
    if group.claim != claim.token or group.status is not GroupStatus.SUBMITTING:
        return Effects(changed=False), False
    group.submit_errors += 1
    group.claim = None
    group.claim_until = None
    group.attempt -= 1  # nothing was sent under this attempt number
    if group.submit_errors >= max_submit_errors:
        reason = f"provider unreachable after {group.submit_errors} tries: {error}"
        return _fail_group(batch, group, reason, FailureCode.UNREACHABLE), False
    group.status = GroupStatus.PENDING
    group.error = error
    _reopen(batch, group)
    retry_at = now + min(2.0**group.submit_errors, MAX_BACKOFF_S)
    return Effects(due={batch.due(claim.no): retry_at}), True


def reject_group(
    batch: Batch, no: int, error: str, code: FailureCode = FailureCode.REJECTED, *, attempt: int | None = None
) -> tuple[Effects, None]:
    """A retry cannot mend it (the provider refused the input, the output is unusable): the group's items fail.

    With ``attempt``, only that attempt's error counts (an older attempt's result, delivered late while a
    newer one is in flight, changes nothing). Items that already have a result keep it.
    """
    group = batch.group(no)
    if group.status.terminal or (attempt is not None and attempt != group.attempt):
        return Effects(changed=False), None
    return _fail_group(batch, group, error, code), None


class ItemResult(BaseModel):
    """What a completed item produced (already stored in the artifact store)."""

    index: int
    artifact: str
    content_type: str
    size_bytes: int
    duration_s: float | None = None
    cost: float | None = None
    provider_id: str | None = None


def delivery_tag() -> str:
    """A fresh name part for one delivery's files.

    Two deliveries of one item (a duplicate webhook, a poll racing the webhook, outputs that differ) never
    write the same file: the transition that records one of them decides the winner, and the caller removes
    the files of the others, so the stored file is always the recorded one.
    """
    return secrets.token_hex(6)


def complete_group(
    batch: Batch, no: int, results: list[ItemResult], *, max_attempts: int, now: float
) -> tuple[Effects, bool]:
    """The provider finished group ``no`` and its outputs are stored. Returns whether this call applied any.

    Only an item without a result takes one: a second delivery (the same or a differing output) changes
    nothing, so the caller removes the files of results not recorded. A result for a cancelled or failed
    group is kept too (it is paid for; a retry uses it). Items the output lacks are submitted again while the
    group has attempts left; then they fail.
    """
    group = batch.group(no)
    if group.status is GroupStatus.COMPLETED:
        return Effects(changed=False), False
    by_index = {result.index: result for result in results}
    applied = False
    for index in group.indexes:
        item = batch.item(index)
        result = by_index.get(index)
        if result is None or item.status is ItemStatus.COMPLETED:
            continue
        applied = True
        _record(item, result)
        item.provider_id = result.provider_id or group.provider_id
    unfinished = [index for index in group.indexes if batch.item(index).status is not ItemStatus.COMPLETED]
    member = batch.due(no)
    if group.status.terminal:  # a late result: kept on its items, the group and batch stay as they were
        if not unfinished:
            group.status = GroupStatus.COMPLETED
        return Effects(changed=applied), applied
    if not unfinished:
        group.status = GroupStatus.COMPLETED
        group.claim = group.claim_until = None
        group.error = group.error_code = None
        _settle(batch)
        return Effects(undue={member}), True
    missing = [index for index in unfinished if not batch.item(index).waiting]
    if not missing:  # the rest wait for identical work elsewhere, which completes them (reuse): nothing was lacking
        group.status = GroupStatus.PENDING
        group.claim = group.claim_until = None
        _spend_submission(group)
        return Effects(due={member: now + MAX_BACKOFF_S}), True
    reason = f"the provider returned no output for item(s) {', '.join(map(str, missing))}"
    _spend_submission(group)
    if group.attempts_used >= max_attempts:
        return _fail_group(batch, group, reason, FailureCode.MISSING_OUTPUT), True
    group.status = GroupStatus.PENDING
    group.error = reason
    _reopen(batch, group)
    return Effects(due={member: now}), True


def fail_attempt(
    batch: Batch,
    no: int,
    attempt: int,
    reason: str,
    *,
    max_attempts: int,
    retry_at: float,
    code: FailureCode = FailureCode.PROVIDER_FAILED,
    keep_submission: bool = False,
) -> tuple[Effects, bool]:
    """``attempt`` of group ``no`` failed: try again, or fail with ``code`` once the attempts are used.

    A failure of an older attempt than the current one is ignored (a newer submission is in flight), and so is
    a second report of the same failure. With ``keep_submission`` (the provider has the result, but fetching
    it failed for now) the next attempt recovers that result instead of paying for the work again. Returns
    whether the group will be tried again.
    """
    group = batch.group(no)
    # Only an attempt in flight can fail: a pending group already counted this failure (a repeated webhook).
    in_flight = group.status in (GroupStatus.SUBMITTING, GroupStatus.SUBMITTED)
    if not in_flight or attempt != group.attempt:
        return Effects(changed=False), False
    group.failures += 1
    group.error = reason
    if not keep_submission:
        _spend_submission(group)
    group.claim = group.claim_until = None
    if group.attempts_used >= max_attempts:
        return _fail_group(batch, group, reason, code), False
    group.status = GroupStatus.PENDING
    _reopen(batch, group)
    return Effects(due={batch.due(no): retry_at}), True


def cancel_batch(batch: Batch, reason: str = "cancelled") -> tuple[Effects, list[str]]:
    """Cancel every unfinished group; returns the provider ids of submissions that may still be running.

    Nothing more is submitted (a claim is refused once the batch is terminal); a cancelled group keeps its
    provider id, so a result that still arrives is stored and a retry asks the provider before paying again.
    """
    if batch.status.terminal:
        return Effects(changed=False), []
    running: list[str] = []
    effects = Effects()
    for group in batch.groups:
        if group.status.terminal:
            continue
        if group.status is GroupStatus.SUBMITTED and group.provider_id:
            running.append(group.provider_id)
        group.status = GroupStatus.CANCELLED
        group.claim = None
        group.claim_until = None
        effects.undue.add(batch.due(group.no))
        for index in group.indexes:
            item = batch.item(index)
            if not item.status.terminal:
                item.status = ItemStatus.CANCELLED
                item.error = reason
    batch.status = BatchStatus.CANCELLED
    batch.error = reason
    return effects, running


def expire_batch(batch: Batch, *, now: float) -> tuple[Effects, bool]:
    """Fail every unfinished group once the batch's deadline has passed. Returns whether it did.

    Provider ids are kept: a result that arrives later is stored, and a retry asks for it before paying again.
    """
    if batch.status.terminal or batch.deadline_at is None or now < batch.deadline_at:
        return Effects(changed=False), False
    reason = f"{STEP_NAMES[batch.kind]} did not finish within its deadline of {batch.deadline_s or 0:g} s"
    effects = Effects()
    for group in batch.groups:
        if not group.status.terminal:
            effects.undue |= _fail_group(batch, group, reason, FailureCode.DEADLINE).undue
    return effects, True


def retry_failed(batch: Batch, *, now: float) -> tuple[Effects, int]:
    """Put a failed or cancelled batch's unfinished groups back to pending; completed items are kept.

    Each group gets a fresh budget of attempts and the batch a fresh deadline. A group whose last submission
    may still hold a result (cancelled, or failed by its deadline or attempts) keeps that provider id, so the
    submit path asks the provider for it before paying again; a group whose items all got a result after
    the cancel is not submitted at all. Returns how many groups will be submitted again.
    """
    if batch.status not in (BatchStatus.FAILED, BatchStatus.CANCELLED):
        return Effects(changed=False), 0
    effects = Effects()
    again = 0
    for group in batch.groups:
        if group.status is GroupStatus.COMPLETED:
            continue
        if all(batch.item(index).status is ItemStatus.COMPLETED for index in group.indexes):
            group.status = GroupStatus.COMPLETED
            group.error = group.error_code = None
            continue
        if batch.kind == "vid":  # a cancelled render is cancelled at the service: a retry renders anew
            _spend_submission(group)
        group.status = GroupStatus.PENDING
        group.spent = group.attempt
        group.failures = group.submit_errors = 0
        group.error = group.error_code = None
        _reopen(batch, group)
        effects.due[batch.due(group.no)] = now
        again += 1
    batch.status = BatchStatus.RUNNING
    batch.error = batch.error_code = None
    if batch.deadline_s is not None:
        batch.deadline_at = now + batch.deadline_s
    _settle(batch)  # every group may already have its results
    return effects, again


# --- reuse (fastapi_app/reuse): items completed from identical work, and items waiting for it ---------------


class Reused(ItemResult):
    """An item's output copied from identical work made earlier or elsewhere (already stored under its key).

    ``cost`` stays ``None`` (nothing was paid for it); ``cost_saved`` is what the output cost when first made.
    """

    cost_saved: float | None = None


def take_reused(batch: Batch, results: list[Reused]) -> tuple[Effects, list[int]]:
    """Complete items from reused outputs; returns the indexes taken (an item with a result, or in a finished
    group, keeps what it has, and the caller removes the copies not taken). A group whose items all have their
    result completes, without a provider call when none of them was sent."""
    taken: list[int] = []
    for result in results:
        item = batch.item(result.index)
        if item.status.terminal or batch.group(item.group).status.terminal:
            continue
        _record(item, result)  # its cost is None: nothing was paid for this item
        item.cost_saved = result.cost_saved
        item.reused = True
        item.waiting = False
        taken.append(result.index)
    effects = Effects(changed=bool(taken))
    for no in sorted({batch.item(index).group for index in taken}):
        group = batch.group(no)
        if all(batch.item(index).status is ItemStatus.COMPLETED for index in group.indexes):
            group.status = GroupStatus.COMPLETED
            group.claim = group.claim_until = None
            group.error = group.error_code = None
            effects.undue.add(batch.due(no))
    if taken and not batch.status.terminal:
        batch.status = BatchStatus.RUNNING
    _settle(batch)
    return effects, taken


def mark_waiting(batch: Batch, waiting: set[int], owned: set[int]) -> tuple[Effects, None]:
    """Items that wait for an identical item in flight (not sent with their group), and items that stopped waiting
    because they now make the output themselves. Only items of groups not yet submitted change."""
    changed = False
    for index in waiting | owned:
        item = batch.item(index)
        group = batch.group(item.group)
        if item.status is not ItemStatus.PENDING or group.status is not GroupStatus.PENDING:
            continue
        if item.waiting != (index in waiting):
            item.waiting = index in waiting
            changed = True
    if waiting and changed:
        batch.status = BatchStatus.RUNNING  # its work is in flight, if under another item's name
    return Effects(changed=changed), None


def stop_waiting(batch: Batch, indexes: list[int], *, now: float) -> tuple[Effects, bool]:
    """The identical item these waited for ended without an output: they go out themselves (due at once).
    Returns whether any of them still needs submitting."""
    effects = Effects(changed=False)
    for index in indexes:
        item = batch.item(index)
        if not item.waiting or item.status.terminal:
            continue
        item.waiting = False
        effects.changed = True
        group = batch.group(item.group)
        if group.status is GroupStatus.PENDING:
            effects.due[batch.due(group.no)] = now
    return effects, bool(effects.due)


def fail_waiting(batch: Batch, indexes: list[int], reason: str, code: FailureCode) -> tuple[Effects, None]:
    """The identical item these waited for failed for good: their groups fail with its reason."""
    effects = Effects(changed=False)
    for no in sorted({batch.item(index).group for index in indexes if batch.item(index).waiting}):
        group = batch.group(no)
        if not group.status.terminal:
            effects.undue |= _fail_group(batch, group, reason, code).undue
            effects.changed = True
    for index in indexes:
        batch.item(index).waiting = False  # a retry decides afresh
    return effects, None


def _record(item: Item, result: ItemResult) -> None:
    """An item takes its result."""
    item.status = ItemStatus.COMPLETED
    item.artifact = result.artifact
    item.content_type = result.content_type
    item.size_bytes = result.size_bytes
    item.duration_s = result.duration_s
    item.cost = result.cost
    item.provider_id = result.provider_id
    item.error = item.error_code = None


def _spend_submission(group: Group) -> None:
    """The group's current submission is over (failed or used): a later one must not be confused with it."""
    if group.provider_id:
        group.previous_ids.append(group.provider_id)
    group.provider_id = None
    group.claim = None
    group.claim_until = None


def _reopen(batch: Batch, group: Group) -> None:
    """The group's items without a result wait for the next submission."""
    for index in group.indexes:
        item = batch.item(index)
        if item.status is not ItemStatus.COMPLETED:
            item.status = ItemStatus.PENDING
            item.error = item.error_code = None


#: Failures after which the group's last submission may still bring a result worth keeping for a retry.
_RECOVERABLE = (FailureCode.DEADLINE, FailureCode.ATTEMPTS_EXHAUSTED, FailureCode.UNREACHABLE)


def _fail_group(batch: Batch, group: Group, reason: str, code: FailureCode) -> Effects:
    if code not in _RECOVERABLE:
        _spend_submission(group)
    group.status = GroupStatus.FAILED
    group.error = reason
    group.error_code = code
    group.claim = None
    group.claim_until = None
    for index in group.indexes:
        item = batch.item(index)
        if not item.status.terminal:
            item.status = ItemStatus.FAILED
            item.error = reason
            item.error_code = code
    _settle(batch)
    return Effects(undue={batch.due(group.no)})


def _settle(batch: Batch) -> None:
    """Derive the batch status once every group is finished; a failure names the first failed item's reason."""
    if batch.status.terminal or not all(group.status.terminal for group in batch.groups):
        return
    failed = [item for item in batch.items if item.status is not ItemStatus.COMPLETED]
    if failed:
        batch.status = BatchStatus.FAILED
        batch.error = f"{len(failed)} of {len(batch.items)} items failed; first: {failed[0].error}"
        batch.error_code = failed[0].error_code
    else:
        batch.status = BatchStatus.COMPLETED
