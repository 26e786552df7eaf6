"""Batches of provider work (TTS chunks, images, a video render): the stored record and how one is made.

Items are grouped; a group is what one provider submission covers (a RunPod job carries several chunks). The
transitions that change a batch are in :mod:`fastapi_app.store.batch_transitions`.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field

from fastapi_app.store.docstore import Announced, EndingRecord
from strangler_bridge.contracts.callbacks import CallbackObject
from strangler_bridge.contracts.common import BatchStatus, ItemStatus, Progress
from strangler_bridge.errors import NotFound
from strangler_bridge.ids import is_valid_id
from strangler_bridge.keys import DueKind, DueMember

Kind = Literal["tts", "img", "vid"]

#: What each kind is called in completion webhooks, and the path of its status.
CALLBACK_OBJECTS: dict[Kind, CallbackObject] = {
    "tts": CallbackObject.TTS_BATCH,
    "img": CallbackObject.IMAGE_BATCH,
    "vid": CallbackObject.VIDEO_RENDER,
}
STATUS_PATHS: dict[Kind, str] = {"tts": "/tts/batch/", "img": "/imagegen/batch/", "vid": "/video/render/"}

#: What each kind is called in messages.
NOUNS: dict[Kind, str] = {"tts": "TTS batch", "img": "image batch", "vid": "video render"}


def batch_not_found(kind: Kind, batch_id: str) -> NotFound:
    """The 404 for a batch of ``kind`` that does not exist (or expired)."""
    return NotFound(f"no {NOUNS[kind]} {batch_id!r}")


def check_id(kind: Kind, batch_id: str) -> str:
    """``batch_id`` if it is well formed for ``kind``; 404 otherwise (odd ids never reach Redis or disk)."""
    if not is_valid_id(batch_id, kind):
        raise batch_not_found(kind, batch_id)
    return batch_id


class FailureCode(str, Enum):
    """Why an item, group or batch failed for good (the ``reason`` label of the terminal-failure counter)."""

    REJECTED = "rejected"  # the provider refused the input or our request (a retry cannot mend it)
    UNUSABLE_OUTPUT = "unusable_output"  # refused or dead output URL, invalid or oversized output
    MISSING_OUTPUT = "missing_output"  # part of the output was missing on every attempt
    PROVIDER_FAILED = "provider_failed"  # the provider reported failure on every attempt
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # submissions and recoveries used up without a result
    UNREACHABLE = "unreachable"  # the provider could not be reached
    DEADLINE = "deadline"  # the step's deadline passed


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
    error_code: FailureCode | None = None
    #: Reuse (fastapi_app/reuse): the fingerprint of what determines the output (``None``: never reused), whether
    #: the item is held back from its group's submission (its output is kept, or an identical item in flight
    #: makes it), and whether it came from earlier work.
    reuse_key: str | None = None
    waiting: bool = False
    reused: bool = False
    cost_saved: float | None = None

    @property
    def sendable(self) -> bool:
        """Whether the item goes in its group's next submission: no result yet, and not waiting for one."""
        return self.status is not ItemStatus.COMPLETED and not self.waiting


class Group(BaseModel):
    """One provider submission covering some items."""

    no: int
    indexes: list[int]
    status: GroupStatus = GroupStatus.PENDING
    attempt: int = 0  # submissions and recoveries started (names the webhook URL of each)
    spent: int = 0  # attempts used before the last retry (each retry gets a fresh budget)
    failures: int = 0  # provider-reported failures
    submit_errors: int = 0  # calls that never reached the provider (outages, 429s)
    provider_id: str | None = None
    previous_ids: list[str] = Field(default_factory=list)
    claim: str | None = None
    claim_until: float | None = None
    error: str | None = None
    error_code: FailureCode | None = None

    @property
    def attempts_used(self) -> int:
        """Attempts started since the group was created or last retried."""
        return self.attempt - self.spent


class Batch(EndingRecord):
    """A TTS or image batch, or a video render."""

    kind: Kind
    job_id: str | None = None  # the pipeline job this batch belongs to, if any
    items: list[Item]
    groups: list[Group]
    error_code: FailureCode | None = None
    deadline_s: float | None = None  # how long the step may take, from creation and from each retry
    deadline_at: float | None = None

    def announced(self) -> Announced:
        """A batch's status path by kind; a completed render's video."""
        path = STATUS_PATHS[self.kind] + self.id
        rendered = self.kind == "vid" and self.status is BatchStatus.COMPLETED
        return Announced(CALLBACK_OBJECTS[self.kind], path, f"{path}/video" if rendered else None, self.total_cost)

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

    def due(self, no: int) -> DueMember:
        """The due-index entry of group ``no``."""
        return DueMember(DueKind(self.kind), self.id, no)

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

    @property
    def reused(self) -> int:
        """Items completed from earlier identical work instead of a provider call."""
        return sum(item.reused and item.status is ItemStatus.COMPLETED for item in self.items)

    @property
    def cost_saved(self) -> float | None:
        """The provider cost the reused items had when first made, if any was recorded."""
        saved = [item.cost_saved for item in self.items if item.reused and item.cost_saved is not None]
        return round(sum(saved), 6) if saved else None


def request_hash(body: BaseModel) -> str:
    """A stable hash of a request body (an ``Idempotency-Key`` must come back with the same one)."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_batch(
    batch_id: str,
    kind: Kind,
    indexes: list[int],
    group_size: int,
    request: dict[str, Any],
    *,
    video_id: str | None,
    job_id: str | None = None,
    deadline_s: float | None = None,
    now: float = 0.0,
) -> Batch:
    """A new batch whose items are cut into groups of ``group_size`` in index order.

    With ``deadline_s``, the batch fails with that reason if it has not finished ``deadline_s`` after ``now``.
    """
    ordered = sorted(indexes)
    chunks = [ordered[i : i + group_size] for i in range(0, len(ordered), group_size)]
    groups = [Group(no=no, indexes=members) for no, members in enumerate(chunks)]
    items = [Item(index=index, group=group.no) for group in groups for index in group.indexes]
    return Batch(
        id=batch_id,
        kind=kind,
        request=request,
        items=items,
        groups=groups,
        video_id=video_id,
        job_id=job_id,
        deadline_s=deadline_s,
        deadline_at=now + deadline_s if deadline_s is not None else None,
    )


def open_groups_due(batch: Batch, at: float) -> dict[DueMember, float]:
    """Due entries for every unfinished group (used at creation: the reconciler is the safety net)."""
    return {batch.due(g.no): at for g in batch.groups if not g.status.terminal}


#: The pipeline step (and ``phase`` metric label) each kind of batch belongs to.
STEP_NAMES: dict[str, str] = {"tts": "tts", "img": "imagegen", "vid": "video"}
