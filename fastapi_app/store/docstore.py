"""Records as JSON documents in Redis, changed only through atomic, optimistic transactions.

Each record (a batch, a pipeline job) is one key holding one JSON document. A transition is a plain Python
function over the parsed record: :meth:`DocStore.update` runs it under ``WATCH`` and writes the result with
``MULTI``/``EXEC``, retrying if another process changed the record in between. So every transition is
atomic, and the rules live in ordinary, unit-testable functions rather than in Lua.

Alongside the write, the same transaction maintains the *due index* (a sorted set of work that must be
looked at by a deadline: the reconciler's input), stages the completion webhook of a record that has just
ended (the :mod:`~fastapi_app.store.outbox`), and publishes a change event for long-pollers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import redis
import redis.asyncio as aredis
from pydantic import BaseModel, Field

from strangler_bridge import tracing
from strangler_bridge.contracts.callbacks import CallbackData, CallbackEvent, CallbackObject, CallbackState
from strangler_bridge.contracts.common import BatchStatus, as_time
from strangler_bridge.errors import Conflict, RecordNotFound, StoreUnavailable
from strangler_bridge.keys import DueMember, Keys

if TYPE_CHECKING:
    from fastapi_app.store.outbox import Outbox

M = TypeVar("M", bound="Record")
R = TypeVar("R")

MAX_TX_RETRIES = 200
INDEX_SIZE = 1000  # records listed per kind for operators; older ones stay readable by id until they expire


class Record(BaseModel):
    """A stored document: an id, a version that grows on every change, and timestamps."""

    id: str
    version: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    trace: dict[str, str] = Field(default_factory=dict)  # the trace it was created in: later work joins it
    #: The delivery of the completion webhook of the record's latest end, if its request named a ``callback_url``.
    callback: CallbackState | None = None

    @property
    def final(self) -> bool:
        """Whether the record has ended (a record that can end says when)."""
        return False

    def completion(self) -> tuple[str, CallbackEvent] | None:
        """The ``callback_url`` and the event announcing the record's end, once it has ended and asked for one."""
        return None


class Announced(NamedTuple):
    """What a completion event says of one kind of record, besides what every ending record has."""

    object: CallbackObject
    status_url: str
    video_url: str | None
    cost_total: float | None


class EndingRecord(Record):
    """A record made from a request and ending in a terminal status (a batch, a job); if the request named a
    ``callback_url``, its end is announced there."""

    request: dict[str, Any]
    status: BatchStatus = BatchStatus.QUEUED
    video_id: str | None = None
    error: str | None = None

    @property
    def final(self) -> bool:
        """Whether the record has ended."""
        return self.status.terminal

    def completion(self) -> tuple[str, CallbackEvent] | None:
        """The request's ``callback_url`` and the event announcing the record's end, once it has ended."""
        url = self.request.get("callback_url")
        if not url or not self.final:
            return None
        announced = self.announced()
        data = CallbackData(
            id=self.id,
            status=self.status,
            version=self.version,
            video_id=self.video_id,
            error=self.error,
            metadata=self.request.get("metadata") or {},
            **announced._asdict(),
        )
        event_type = f"{announced.object.value}.{self.status.value}"
        return str(url), CallbackEvent(type=event_type, timestamp=as_time(self.updated_at), data=data)

    def announced(self) -> Announced:
        """What the completion event says of this kind of record."""
        raise NotImplementedError


@dataclass
class Effects:
    """What a transition asks for besides the new record: due-index changes, and whether it changed anything."""

    due: dict[DueMember, float] = field(default_factory=dict)  # entry -> deadline (epoch seconds)
    undue: set[DueMember] = field(default_factory=set)
    changed: bool = True


class DocStore(Generic[M]):
    """JSON documents of one model under ``{prefix}:{kind}:{id}``, plus the shared due index."""

    def __init__(
        self, client: redis.Redis, keys: Keys, kind: str, model: type[M], ttl_s: int, *, outbox: Outbox | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.kind = kind
        self.model = model
        self.ttl_s = ttl_s
        self.outbox = outbox

    # --- keys ---------------------------------------------------------------------------------------
    def key(self, record_id: str) -> str:
        """The Redis key of a record."""
        return self.keys.record(self.kind, record_id)

    # --- reads --------------------------------------------------------------------------------------
    def load(self, record_id: str) -> M | None:
        """The record, or ``None``."""
        raw = self.client.get(self.key(record_id))
        return None if raw is None else self.model.model_validate_json(raw)

    async def aload(self, client: aredis.Redis, record_id: str) -> M | None:
        """:meth:`load` on an async client (the API's event loop never waits on Redis)."""
        raw = await client.get(self.key(record_id))
        return None if raw is None else self.model.model_validate_json(raw)

    async def aload_many(self, client: aredis.Redis, record_ids: list[str]) -> dict[str, M]:
        """The records of ``record_ids`` that exist, by id, read in one round trip on an async client."""
        raws = await client.mget([self.key(i) for i in record_ids]) if record_ids else []
        return {i: self.model.model_validate_json(raw) for i, raw in zip(record_ids, raws, strict=True) if raw}

    def recent(self, name: str, limit: int) -> list[M]:
        """The newest ``limit`` records listed under ``name`` (expired ones are skipped)."""
        ids = [
            i.decode() if isinstance(i, bytes) else str(i)
            for i in self.client.zrevrange(self.keys.index(name), 0, limit - 1)
        ]
        raws = self.client.mget([self.key(i) for i in ids]) if ids else []
        return [self.model.model_validate_json(raw) for raw in raws if raw is not None]

    # --- writes -------------------------------------------------------------------------------------

    def create(
        self,
        record: M,
        effects: Effects,
        *,
        idem: tuple[str, str] | None = None,
        internal_idem: bool = False,
        index: str | None = None,
    ) -> tuple[M, bool]:
        """Store a new record atomically; with ``idem=(key, body_hash)`` a repeated request returns the first record.

        Returns ``(record, created)``. The same key with another body hash is a :class:`Conflict`. With
        ``internal_idem`` the key is the service's own, not a client's (see :meth:`Keys.idempotency`). With
        ``index``, the record is also listed (by creation time) for :meth:`recent`.
        """
        now = time.time()
        record.created_at = record.updated_at = now
        record.version = 1
        record.trace = tracing.inject()
        idem_key = self.keys.idempotency(self.kind, idem[0], internal=internal_idem) if idem else ""
        keys = [self.key(record.id)] + ([idem_key] if idem else [])

        def attempt(pipe: redis.client.Pipeline) -> tuple[M, bool]:
            if idem:
                seen = pipe.get(idem_key)
                if seen is not None:
                    text = seen.decode() if isinstance(seen, bytes) else str(seen)
                    first_id, _, first_hash = text.partition(" ")
                    if first_hash != idem[1]:
                        raise Conflict(
                            "Idempotency-Key was already used with a different body", field="Idempotency-Key"
                        )
                    existing = pipe.get(self.key(first_id))
                    if existing is not None:
                        return self.model.model_validate_json(existing), False
            pipe.multi()
            if self.outbox is not None and record.final:
                self.outbox.owe(pipe, self.kind, record)
            pipe.set(self.key(record.id), record.model_dump_json(), ex=self.ttl_s)
            if idem:
                pipe.set(idem_key, f"{record.id} {idem[1]}", ex=self.ttl_s)
            if index:
                pipe.zadd(self.keys.index(index), {record.id: now})
                pipe.zremrangebyrank(self.keys.index(index), 0, -INDEX_SIZE - 1)
            self._apply_effects(pipe, record.id, record.version, effects)
            pipe.execute()
            return record, True

        return self._transaction(keys, attempt)

    def update(self, record_id: str, transition: Callable[[M], tuple[Effects, R]]) -> tuple[M, R]:
        """Apply ``transition`` to the current record atomically; it mutates the record and returns effects.

        When the transition reports no change (``effects.changed`` false) nothing is written or published.
        Raises :class:`RecordNotFound` if the record does not exist (or expired).
        """
        key = self.key(record_id)

        def attempt(pipe: redis.client.Pipeline) -> tuple[M, R]:
            raw = pipe.get(key)
            if raw is None:
                raise RecordNotFound(f"no {self.kind} {record_id!r}", record_id=record_id)
            record = self.model.model_validate_json(raw)
            was_final = record.final
            effects, result = transition(record)
            pipe.multi()
            if effects.changed:
                record.version += 1
                record.updated_at = time.time()
                if self.outbox is not None and record.final and not was_final:
                    self.outbox.owe(pipe, self.kind, record)
                pipe.set(key, record.model_dump_json(), ex=self.ttl_s)
            self._apply_effects(pipe, record_id, record.version, effects)
            pipe.execute()
            return record, result

        return self._transaction([key], attempt)

    def _apply_effects(self, pipe: redis.client.Pipeline, record_id: str, version: int, effects: Effects) -> None:
        if effects.due:
            pipe.zadd(self.keys.due, {member.format(): deadline for member, deadline in effects.due.items()})
        if effects.undue:
            pipe.zrem(self.keys.due, *(member.format() for member in effects.undue))
        if effects.changed:
            pipe.publish(self.keys.changes(record_id), str(version))

    def _transaction(self, keys: list[str], attempt: Callable[[redis.client.Pipeline], R]) -> R:
        try:
            for tries in range(MAX_TX_RETRIES):
                with self.client.pipeline() as pipe:
                    try:
                        pipe.watch(*keys)  # type: ignore[no-untyped-call]
                        return attempt(pipe)
                    except redis.WatchError:
                        # Another process changed the record first: back off a little (jittered) and redo.
                        time.sleep(random.uniform(0, 0.002 * min(tries + 1, 10)))
            raise StoreUnavailable("record is too contended; retry")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"the state store (Redis) is unavailable: {type(exc).__name__}") from exc
