"""Batches of provider work (TTS chunks, images): the stored record and its transitions.

Items are grouped; a group is what one provider submission covers (a RunPod job carries several chunks).
Every function here is a pure transition over a :class:`Batch`, run atomically by
:meth:`fastapi_app.docstore.DocStore.update`. They are safe to apply twice: a second delivery of the same
result finds the group already terminal and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field

from fastapi_app.docstore import Effects, Record
from strangler_bridge.contracts.common import BatchStatus, ItemStatus, Progress

Kind = Literal["tts", "img", "vid"]

#: Submissions that did not get through (outages, 429s) before a group fails, and the longest wait between.
MAX_SUBMIT_ERRORS = 20
MAX_BACKOFF_S = 30.0


class GroupStatus(str, Enum):
    """Where one provider submission stands."""

    PENDING = "pending"  # not submitted (or to be submitted again)
    SUBMITTING = "submitting"  # claimed by a worker that is calling the provider
    SUBMITTED = "submitted"  # the provider accepted it; its id is recorded
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the group is finished."""
        return self in (GroupStatus.COMPLETED, GroupStatus.FAILED, GroupStatus.CANCELLED)


class Item(BaseModel):
    """One chunk or image."""

    index: int
    group: int
    status: ItemStatus = ItemStatus.PENDING
    artifact: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    duration_s: float | None = None
    cost: float | None = None
    provider_id: str | None = None
    error: str | None = None


class Group(BaseModel):
    """One provider submission covering some items."""

    no: int
    indexes: list[int]
    status: GroupStatus = GroupStatus.PENDING
    attempt: int = 0  # submissions started (names the webhook URL of each)
    failures: int = 0  # provider-reported failures
    submit_errors: int = 0  # calls that never reached the provider (outages, 429s)
    provider_id: str | None = None
    previous_ids: list[str] = Field(default_factory=list)
    claim: str | None = None
    claim_until: float | None = None
    error: str | None = None


class Batch(Record):
    """A TTS or image batch."""

    kind: Kind
    status: BatchStatus = BatchStatus.QUEUED
    video_id: str | None = None
    job_id: str | None = None  # the pipeline job this batch belongs to, if any
    request: dict[str, Any]
    items: list[Item]
    groups: list[Group]
    error: str | None = None

    def group(self, no: int) -> Group:
        """The group numbered ``no`` (``KeyError`` if there is none)."""
        if 0 <= no < len(self.groups):
            return self.groups[no]
        raise KeyError(no)

    def item(self, index: int) -> Item:
        """The item with that index (``KeyError`` if there is none)."""
        for item in self.items:
            if item.index == index:
                return item
        raise KeyError(index)

    def progress(self) -> Progress:
        """Done, failed and total item counts."""
        done = sum(item.status is ItemStatus.COMPLETED for item in self.items)
        failed = sum(item.status in (ItemStatus.FAILED, ItemStatus.CANCELLED) for item in self.items)
        return Progress(done=done, failed=failed, total=len(self.items))

    @property
    def total_cost(self) -> float | None:
        """Sum of the items' provider costs, if any were reported."""
        costs = [item.cost for item in self.items if item.cost is not None]
        return round(sum(costs), 6) if costs else None


def request_hash(body: BaseModel) -> str:
    """A stable hash of a request body (an ``Idempotency-Key`` must come back with the same one)."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def due_member(kind: str, batch_id: str, no: int) -> str:
    """The due-index member naming one group."""
    return f"{kind}:{batch_id}:{no}"


def new_batch(
    batch_id: str,
    kind: Kind,
    indexes: list[int],
    group_size: int,
    request: dict[str, Any],
    *,
    video_id: str | None,
    job_id: str | None = None,
) -> Batch:
    """A new batch whose items are cut into groups of ``group_size`` in index order."""
    ordered = sorted(indexes)
    chunks = [ordered[i : i + group_size] for i in range(0, len(ordered), group_size)]
    groups = [Group(no=no, indexes=members) for no, members in enumerate(chunks)]
    items = [Item(index=index, group=group.no) for group in groups for index in group.indexes]
    return Batch(id=batch_id, kind=kind, request=request, items=items, groups=groups, video_id=video_id, job_id=job_id)


def open_groups_due(batch: Batch, at: float) -> dict[str, float]:
    """Due entries for every unfinished group (used at creation: the reconciler is the safety net)."""
    return {due_member(batch.kind, batch.id, g.no): at for g in batch.groups if not g.status.terminal}


# --- transitions ---------------------------------------------------------------------------------------


class Claim(BaseModel):
    """A worker's right to submit one group for one attempt."""

    no: int
    attempt: int
    token: str
    indexes: list[int]
    provider_id: str | None = None  # set before sending when we choose the id (Runware's taskUUID)
    lapsed: bool = False  # a previous claim lapsed: its request may have reached the provider


def claim_group(
    batch: Batch, no: int, *, now: float, lease_s: float, new_provider_id: Callable[[], str] | None = None
) -> tuple[Effects, Claim | None]:
    """Take the right to submit group ``no``: only a pending group, or one whose previous claim lapsed.

    A lapsed claim means a worker died between claiming and recording the outcome (or the outcome of its
    call is unknown): the provider may have the work, so the lease is long enough for its webhook to arrive
    first. Where we choose the provider's id (``new_provider_id``), it is stored here, before anything is
    sent, and kept across lapsed claims so the provider can be asked about it.
    """
    group = batch.group(no)
    if batch.status.terminal or group.status.terminal:
        return Effects(changed=False), None
    if group.status is GroupStatus.SUBMITTED:
        return Effects(changed=False), None
    if group.status is GroupStatus.SUBMITTING and (group.claim_until or 0) > now:
        return Effects(changed=False), None
    lapsed = group.status is GroupStatus.SUBMITTING
    group.status = GroupStatus.SUBMITTING
    group.attempt += 1
    group.claim = secrets.token_hex(8)
    group.claim_until = now + lease_s
    if new_provider_id is not None and group.provider_id is None:
        group.provider_id = new_provider_id()
    batch.status = BatchStatus.RUNNING
    for index in group.indexes:
        batch.item(index).status = ItemStatus.SUBMITTED
    claim = Claim(
        no=no,
        attempt=group.attempt,
        token=group.claim,
        indexes=list(group.indexes),
        provider_id=group.provider_id,
        lapsed=lapsed,
    )
    return Effects(due={due_member(batch.kind, batch.id, no): group.claim_until}), claim


def record_submission(
    batch: Batch, claim: Claim, provider_id: str, *, now: float, reconcile_after_s: float
) -> tuple[Effects, bool]:
    """Record the provider's id for a claimed submission; the group then counts as submitted.

    If the webhook already completed the group, only the id is kept. Returns whether the claim still held.
    """
    group = batch.group(claim.no)
    if group.status.terminal:
        if group.provider_id is None:
            group.provider_id = provider_id
            return Effects(), True
        return Effects(changed=False), True
    if group.status is not GroupStatus.SUBMITTING or group.claim != claim.token:
        # Our claim lapsed and another attempt took over; keep the id so its webhook is still recognised.
        if provider_id not in group.previous_ids:
            group.previous_ids.append(provider_id)
            return Effects(), False
        return Effects(changed=False), False
    group.status = GroupStatus.SUBMITTED
    if group.provider_id:
        group.previous_ids.append(group.provider_id)
    group.provider_id = provider_id
    group.claim = None
    group.claim_until = None
    for index in group.indexes:
        batch.item(index).provider_id = provider_id
    return Effects(due={due_member(batch.kind, batch.id, claim.no): now + reconcile_after_s}), True


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
        return _fail_group(batch, group, f"provider unreachable after {group.submit_errors} tries: {error}"), False
    group.status = GroupStatus.PENDING
    group.error = error
    retry_at = now + min(2.0**group.submit_errors, MAX_BACKOFF_S)
    return Effects(due={due_member(batch.kind, batch.id, claim.no): retry_at}), True


def reject_group(batch: Batch, no: int, error: str) -> tuple[Effects, None]:
    """The provider refused the submission outright (bad input, auth): the group's items fail."""
    group = batch.group(no)
    if group.status.terminal:
        return Effects(changed=False), None
    return _fail_group(batch, group, error), None


class ItemResult(BaseModel):
    """What a completed item produced (already stored in the artifact store)."""

    index: int
    artifact: str
    content_type: str
    size_bytes: int
    duration_s: float | None = None
    cost: float | None = None
    provider_id: str | None = None


def complete_group(batch: Batch, no: int, results: list[ItemResult]) -> tuple[Effects, bool]:
    """The provider finished group ``no`` and its outputs are stored. Returns whether this call applied it."""
    group = batch.group(no)
    if group.status.terminal:
        return Effects(changed=False), False
    by_index = {result.index: result for result in results}
    for index in group.indexes:
        item = batch.item(index)
        result = by_index.get(index)
        if result is None:
            item.status = ItemStatus.FAILED
            item.error = "the provider returned no output for this item"
            continue
        item.status = ItemStatus.COMPLETED
        item.artifact = result.artifact
        item.content_type = result.content_type
        item.size_bytes = result.size_bytes
        item.duration_s = result.duration_s
        item.cost = result.cost
        item.provider_id = result.provider_id or group.provider_id
        item.error = None
    group.status = GroupStatus.COMPLETED
    group.claim = None
    group.error = None
    effects = Effects(undue={due_member(batch.kind, batch.id, no)})
    _settle(batch)
    return effects, True


def fail_attempt(
    batch: Batch, no: int, attempt: int, reason: str, *, max_failures: int, retry_at: float
) -> tuple[Effects, bool]:
    """The provider reported failure for ``attempt`` of group ``no``: submit again, or fail after the limit.

    A failure of an older attempt than the current one is ignored (a newer submission is in flight), and so is
    a second report of the same failure. Returns whether the group will be submitted again.
    """
    group = batch.group(no)
    # Only an attempt in flight can fail: a pending group already counted this failure (a repeated webhook).
    in_flight = group.status in (GroupStatus.SUBMITTING, GroupStatus.SUBMITTED)
    if not in_flight or attempt != group.attempt:
        return Effects(changed=False), False
    group.failures += 1
    group.error = reason
    if group.failures >= max_failures:
        return _fail_group(batch, group, reason), False
    group.status = GroupStatus.PENDING
    if group.provider_id:
        group.previous_ids.append(group.provider_id)
    group.provider_id = None
    group.claim = None
    group.claim_until = None
    for index in group.indexes:
        batch.item(index).status = ItemStatus.PENDING
    return Effects(due={due_member(batch.kind, batch.id, no): retry_at}), True


def cancel_batch(batch: Batch, reason: str = "cancelled") -> tuple[Effects, list[str]]:
    """Cancel every unfinished group; returns the provider ids of submissions that may still be running."""
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
        effects.undue.add(due_member(batch.kind, batch.id, group.no))
        for index in group.indexes:
            item = batch.item(index)
            if not item.status.terminal:
                item.status = ItemStatus.CANCELLED
                item.error = reason
    batch.status = BatchStatus.CANCELLED
    batch.error = reason
    return effects, running


def retry_failed(batch: Batch, *, now: float) -> tuple[Effects, int]:
    """Put a failed or cancelled batch's unfinished groups back to pending; completed items are kept.

    A group gets a fresh provider id (the old submission is spent), except a cancelled image, which keeps its
    taskUUID so an image that finished after the cancel is recovered from Runware instead of paid for again.
    Returns how many groups will be submitted again.
    """
    if batch.status not in (BatchStatus.FAILED, BatchStatus.CANCELLED):
        return Effects(changed=False), 0
    effects = Effects()
    again = 0
    for group in batch.groups:
        if group.status not in (GroupStatus.FAILED, GroupStatus.CANCELLED):
            continue
        if group.provider_id and not (group.status is GroupStatus.CANCELLED and batch.kind == "img"):
            group.previous_ids.append(group.provider_id)
            group.provider_id = None
        group.status = GroupStatus.PENDING
        group.failures = group.submit_errors = 0
        group.error = None
        for index in group.indexes:
            item = batch.item(index)
            if item.status is not ItemStatus.COMPLETED:
                item.status = ItemStatus.PENDING
                item.error = None
        effects.due[due_member(batch.kind, batch.id, group.no)] = now
        again += 1
    batch.status = BatchStatus.RUNNING
    batch.error = None
    return effects, again


def _fail_group(batch: Batch, group: Group, reason: str) -> Effects:
    group.status = GroupStatus.FAILED
    group.error = reason
    group.claim = None
    group.claim_until = None
    for index in group.indexes:
        item = batch.item(index)
        if not item.status.terminal:
            item.status = ItemStatus.FAILED
            item.error = reason
    _settle(batch)
    return Effects(undue={due_member(batch.kind, batch.id, group.no)})


def _settle(batch: Batch) -> None:
    """Derive the batch status once every group is finished."""
    if batch.status.terminal or not all(group.status.terminal for group in batch.groups):
        return
    failed = [item for item in batch.items if item.status is not ItemStatus.COMPLETED]
    if failed:
        batch.status = BatchStatus.FAILED
        batch.error = f"{len(failed)} of {len(batch.items)} items failed; first: {failed[0].error}"
    else:
        batch.status = BatchStatus.COMPLETED
