"""Reusing outputs before a batch is submitted, and sharing an output once it is made.

:func:`prepare` runs before a batch's groups are submitted (and when the reconciler looks at a waiting group):
each pending item with a fingerprint is held back from its group's submission if its output is kept in the
index, and then completed with a copy of it by :func:`reuse_kept`, after the other items are submitted;
otherwise it takes the fingerprint's flight (it makes the output) or, if an identical item holds the flight,
waits for it.

:func:`after_update` runs after every change of a batch: an item made by a provider is published to the index
and completes every item that waited for it; an item holding a flight that ended without an output ends the
flight, and its waiters either share its failure (the identical work fails the same way) or, when the holder
was only cancelled or ran out of time, go out themselves. A waiting item never hangs: the reconciler brings its
group back, and :func:`prepare` looks at the holder again (completing from its output, or taking over if it is
gone), until the item's own deadline.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import redis

# A module, not names: the task module imports the work modules, which import this one.
from fastapi_app.batching import kinds
from fastapi_app.batching.updates import Transition, update_batch
from fastapi_app.images.service import artifact_key as image_key
from fastapi_app.metrics.families import PROVIDER_COST, REUSE_COST_SAVED, REUSED_ITEMS
from fastapi_app.metrics.store import Increments, record
from fastapi_app.reuse.index import Entry, ReuseIndex, item_member, parse_member
from fastapi_app.runtime import Runtime
from fastapi_app.store.batch import STEP_NAMES, Batch, FailureCode, GroupStatus, Item
from fastapi_app.store.batch_transitions import (
    Reused,
    delivery_tag,
    fail_waiting,
    mark_waiting,
    stop_waiting,
    take_reused,
)
from fastapi_app.tts.service import artifact_key as audio_key
from strangler_bridge.contracts.common import ItemStatus
from strangler_bridge.contracts.images import ImageFormat
from strangler_bridge.contracts.tts import AudioFormat
from strangler_bridge.errors import BridgeError, NotFound
from strangler_bridge.keys import DueKind

log = logging.getLogger(__name__)

#: Failures of the item in flight that its waiters share: identical work would fail the same way, so they fail
#: with its reason rather than pay for the attempt again. A deadline or a cancel belongs to the holder's batch
#: alone: its waiters then go out themselves.
SHARED_FAILURES = frozenset(
    {
        FailureCode.REJECTED,
        FailureCode.UNUSABLE_OUTPUT,
        FailureCode.MISSING_OUTPUT,
        FailureCode.PROVIDER_FAILED,
        FailureCode.ATTEMPTS_EXHAUSTED,
        FailureCode.UNREACHABLE,
    }
)
#: Who is paid for each kind of batch (the ``provider`` label of the cost counter).
PROVIDERS = {"tts": "runpod", "img": "runware", "vid": "video"}
_OWN, _WAIT = "own", "wait"


@dataclass
class Prepared:
    """What :func:`prepare` decided: the items whose kept output is copied to them by :func:`reuse_kept`."""

    batch_id: str
    kept: list[tuple[int, str, Entry]] = field(default_factory=list)  # (item index, fingerprint, entry)


def prepare(rt: Runtime, batch_id: str, groups: set[int] | None = None) -> Prepared:
    """Hold back the batch's pending items whose output is kept or identical to one in flight; the others make it.

    Call :func:`reuse_kept` next, after submitting the batch's other items: copying the kept files is then off
    the critical path of the items that go to a provider. ``groups``: only the items of these groups (the
    reconciler's one group); all by default.
    """
    prepared = Prepared(batch_id)
    batch = rt.batches.load(batch_id)
    if batch is None or batch.status.terminal:
        return prepared
    if not rt.settings.reuse:  # turned off while items waited: they go out themselves
        waited = {item.index for item in batch.items if item.waiting}
        if waited:
            _guarded(rt, batch_id, lambda b: mark_waiting(b, set(), waited))
        return prepared
    candidates = [
        item
        for item in batch.items
        if item.reuse_key
        and (groups is None or item.group in groups)
        and item.status is ItemStatus.PENDING
        and batch.group(item.group).status is GroupStatus.PENDING
    ]
    if not candidates:
        return prepared
    started = time.monotonic()
    index = ReuseIndex(rt)
    flight_s = batch.deadline_s or float(rt.settings.record_ttl_s)  # a flight lasts at most its holder's step
    held: set[int] = set()
    owned: set[int] = set()
    for item in candidates:
        decision = _decide(rt, index, batch, item, flight_s)
        if isinstance(decision, Entry):
            prepared.kept.append((item.index, item.reuse_key or "", decision))
            held.add(item.index)
        elif decision == _WAIT:
            held.add(item.index)
        else:
            owned.add(item.index)
    _guarded(rt, batch_id, lambda b: mark_waiting(b, held, owned))
    log.info(
        "batch %s: %d item(s) kept, %d waiting for identical work, %d to make (%.0f ms)",
        batch_id,
        len(prepared.kept),
        len(held) - len(prepared.kept),
        len(owned),
        (time.monotonic() - started) * 1000,
    )
    return prepared


def reuse_kept(rt: Runtime, prepared: Prepared) -> None:
    """Complete the held items whose output is kept, each with a copy of it; an item whose kept file vanished
    meanwhile goes out to its provider."""
    if not prepared.kept:
        return
    batch = rt.batches.load(prepared.batch_id)
    if batch is None:
        return
    index = ReuseIndex(rt)
    copies: list[Reused] = []
    lost: list[int] = []
    for number, key, entry in prepared.kept:
        copied = _copy(rt, index, batch, number, key=key, entry=entry)
        if copied is None:
            lost.append(number)
        else:
            copies.append(copied)
    if copies:
        _take(rt, batch.id, copies)
    if lost:
        _release(rt, {batch.id: lost})


def _decide(rt: Runtime, index: ReuseIndex, batch: Batch, item: Item, flight_s: float) -> Entry | str:
    """The kept output to copy, or make it (hold the flight), or wait for the item that holds it."""
    key = item.reuse_key or ""
    me = item_member(batch.kind, batch.id, item.index)
    entry, holder = index.lookup_or_fly(key, me, flight_s)
    if entry is not None:
        if rt.artifacts.exists(entry.artifact):
            return entry
        index.forget(key, entry)  # the kept file is gone: make the output again
        holder = index.take_flight(key, me, flight_s)
    for attempt in range(2):  # a holder that ended without an output is replaced once; then the reconciler looks
        if attempt:
            holder = index.take_flight(key, me, flight_s)
        if holder is None or holder == me:
            return _OWN
        made = _holder_item(rt, holder, batch, key)
        if made is not None and not made.status.terminal:
            index.wait(key, me, flight_s)
            # The holder may have published between the look at the index and this registration.
            return index.lookup(key) or _WAIT
        if made is not None and made.status is ItemStatus.COMPLETED:
            made_entry = entry_of(batch.kind, holder, made)
            index.publish(key, made_entry)  # its worker stopped before publishing
            return made_entry
        index.drop_flight(key, holder)  # the holder ended without an output, or its record is gone: take over
    return _WAIT


def _holder_item(rt: Runtime, holder: str, batch: Batch, key: str) -> Item | None:
    """The item holding a flight (``None`` if its record is gone or it no longer makes that output)."""
    _, batch_id, number = parse_member(holder)
    record = batch if batch_id == batch.id else rt.batches.load(batch_id)
    if record is None:
        return None
    try:
        made = record.item(number)
    except KeyError:
        return None
    return made if made.reuse_key == key else None


def _copy(rt: Runtime, index: ReuseIndex, batch: Batch, number: int, *, key: str, entry: Entry) -> Reused | None:
    """Copy a kept output to the item's own artifact key, so each record owns its files (``None``: it is gone)."""
    target = copy_key(batch, number)
    try:
        with rt.artifacts.open(entry.artifact) as source:
            size = rt.artifacts.put(target, iter(lambda: source.read(1 << 20), b""))
    except NotFound:
        index.forget(key, entry)
        return None
    index.touch(key, entry)
    return Reused(
        index=number,
        artifact=target,
        content_type=entry.content_type,
        size_bytes=size,
        duration_s=entry.duration_s,
        cost_saved=entry.cost,
        provider_id=entry.provider_id,
    )


def copy_key(batch: Batch, number: int) -> str:
    """Where a reused output of item ``number`` is stored: the same place a provider's output would be."""
    if batch.kind == "tts":
        return audio_key(batch.id, number, AudioFormat(batch.request.get("format", "wav")), delivery_tag())
    return image_key(batch.id, number, ImageFormat(batch.request.get("format", "PNG")), delivery_tag())


def entry_of(kind: str, member: str, item: Item) -> Entry:
    """The index entry of a completed item (a reused item's saving is what the output first cost)."""
    return Entry(
        artifact=item.artifact or "",
        content_type=item.content_type or "application/octet-stream",
        size_bytes=item.size_bytes or 0,
        duration_s=item.duration_s,
        cost=item.cost_saved if item.reused else item.cost,
        provider_id=item.provider_id,
        made_by=member,
    )


def _take(rt: Runtime, batch_id: str, reused: list[Reused]) -> None:
    """Complete items from copies; the copies the record did not take are removed."""
    try:
        _, taken = update_batch(rt, batch_id, lambda b: take_reused(b, reused))
    except KeyError:
        taken = []
    for result in reused:
        if result.index not in taken:
            rt.artifacts.delete(result.artifact)


def open_items(batch: Batch) -> dict[int, str | None]:
    """The batch's unfinished items and their fingerprints, taken before a change for :func:`after_update`."""
    return {item.index: item.reuse_key for item in batch.items if not item.status.terminal}


def after_update(rt: Runtime, batch: Batch, opened: dict[int, str | None]) -> None:
    """Follow up the items a change finished (``opened``: the unfinished ones before it).

    Counts provider cost and reuse, publishes what a provider made and completes its waiters, and ends the
    flights of items that failed or were cancelled. Never raises: what it could not do, the reconciler and
    :func:`prepare` do later.
    """
    finished = [batch.item(number) for number in opened if batch.item(number).status.terminal]
    if not finished:
        return
    try:
        _count(rt, batch, finished)
        if rt.settings.reuse:
            index = ReuseIndex(rt)
            for item in finished:
                if item.reuse_key:
                    _share(rt, index, batch, item)
    except (BridgeError, redis.RedisError, OSError) as exc:
        log.warning("reuse follow-up of batch %s failed (%s); the reconciler takes over", batch.id, exc)


def _count(rt: Runtime, batch: Batch, finished: list[Item]) -> None:
    increments = Increments()
    for item in finished:
        if item.status is not ItemStatus.COMPLETED:
            continue
        if item.reused:
            increments.inc(REUSED_ITEMS, (STEP_NAMES[batch.kind],))
            if item.cost_saved:
                increments.inc(REUSE_COST_SAVED, (STEP_NAMES[batch.kind],), item.cost_saved)
        elif item.cost:
            increments.inc(PROVIDER_COST, (PROVIDERS[batch.kind],), item.cost)
    record(rt.redis, rt.keys, increments)


def _share(rt: Runtime, index: ReuseIndex, batch: Batch, item: Item) -> None:
    key = item.reuse_key or ""
    me = item_member(batch.kind, batch.id, item.index)
    if item.status is ItemStatus.COMPLETED:
        entry = entry_of(batch.kind, me, item)
        _, taken = index.finish(key, me, made=None if item.reused else entry, completed=True)
        _complete_waiters(rt, index, key, entry, taken)
        return
    held, taken = index.finish(key, me)
    if not held:
        return  # it held no flight: nobody waits for it
    waiters = _by_batch(taken)
    if item.status is ItemStatus.FAILED and item.error_code in SHARED_FAILURES:
        reason = f"an identical item in flight ({me}) failed: {item.error}"
        code = item.error_code or FailureCode.PROVIDER_FAILED
        for batch_id, numbers in waiters.items():
            _guarded(rt, batch_id, functools.partial(fail_waiting, indexes=numbers, reason=reason, code=code))
        return
    _release(rt, waiters)


def _release(rt: Runtime, held: dict[str, list[int]]) -> None:
    """Held items go out to their provider themselves (due at once, and their batches submitted)."""
    for batch_id, numbers in held.items():
        after = _guarded(rt, batch_id, functools.partial(stop_waiting, indexes=numbers, now=time.time()))
        if after is not None and not after.status.terminal:
            kinds.BATCH_WORK[DueKind(after.kind)].submit(rt, batch_id)


def _complete_waiters(rt: Runtime, index: ReuseIndex, key: str, entry: Entry, members: list[str]) -> None:
    for batch_id, numbers in _by_batch(members).items():
        waiter = rt.batches.load(batch_id)
        if waiter is None:
            continue
        copies = [c for n in numbers if (c := _copy(rt, index, waiter, n, key=key, entry=entry)) is not None]
        if copies:
            _take(rt, batch_id, copies)


def _guarded(rt: Runtime, batch_id: str, transition: Transition[object]) -> Batch | None:
    """Apply a transition to a batch that may have expired meanwhile; the batch after it (``None``: gone)."""
    try:
        return update_batch(rt, batch_id, transition)[0]
    except KeyError:
        return None


def _by_batch(members: list[str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for member in members:
        _, batch_id, number = parse_member(member)
        grouped[batch_id].append(number)
    return grouped
