"""The outbox of completion webhooks: what must be POSTed to a ``callback_url`` until a receiver takes it.

An entry is staged by :class:`~fastapi_app.store.docstore.DocStore` in the transaction that ends its record, so a
record never ends without its webhook being owed. Entries wait in a sorted set scored by when they are next
due. A worker claims one by pushing its score a lease ahead (one Lua call, so two workers never claim the same
entry at once); if the worker dies mid-delivery the lease lapses and another sends it again, under the same
``webhook-id``: delivery is at least once, and receivers drop duplicates by that id.
"""

from __future__ import annotations

import redis
from pydantic import BaseModel, Field

from fastapi_app.store.docstore import Effects, Record
from strangler_bridge.contracts.callbacks import CallbackState
from strangler_bridge.contracts.common import as_time
from strangler_bridge.keys import Keys

# KEYS[1]: the due set. ARGV: now, lease end, most entries. Claims entries due by now, pushing them to the lease end.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return ids
"""


class Delivery(BaseModel):
    """One owed webhook: where it goes, the exact body every attempt signs, and how it went so far."""

    webhook_id: str
    store: str  # the DocStore kind of its record (``batch``, ``job``), to note the attempts on it
    record_id: str
    url: str
    body: str
    created_at: float
    state: CallbackState
    trace: dict[str, str] = Field(default_factory=dict)  # the record's trace: each attempt is a span of it


class Outbox:
    """The owed webhooks of one deployment; entries live ``ttl_s`` (past the whole retry schedule)."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: int) -> None:
        self.client = client
        self.keys = keys
        self.ttl_s = ttl_s
        self._claim = client.register_script(_CLAIM)

    def stage(self, pipe: redis.client.Pipeline, delivery: Delivery, at: float) -> None:
        """Queue ``delivery`` in ``pipe``'s transaction, due at ``at``."""
        pipe.set(self.keys.callback(delivery.webhook_id), delivery.model_dump_json(), ex=self.ttl_s)
        pipe.zadd(self.keys.callbacks_due, {delivery.webhook_id: at})

    def owe(self, pipe: redis.client.Pipeline, store: str, record: Record) -> None:
        """Stage the webhook announcing ``record``'s end, if it has just ended and asked for one (called by
        :class:`~fastapi_app.store.docstore.DocStore` before it writes the record, which then shows the delivery)."""
        completion = record.completion()
        if completion is None:
            return
        url, event = completion
        record.callback = CallbackState(webhook_id=webhook_id(record), next_attempt_at=as_time(record.updated_at))
        delivery = Delivery(
            webhook_id=record.callback.webhook_id,
            store=store,
            record_id=record.id,
            url=url,
            body=event.model_dump_json(),
            created_at=record.updated_at,
            state=record.callback,
            trace=record.trace,
        )
        self.stage(pipe, delivery, record.updated_at)

    def claim(self, now: float, lease_s: float, limit: int) -> list[str]:
        """The ids of at most ``limit`` due entries, each now held for ``lease_s``."""
        ids = self._claim(keys=[self.keys.callbacks_due], args=[now, now + lease_s, limit])
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def load(self, webhook_id: str) -> Delivery | None:
        """The entry, or ``None`` if it expired."""
        raw = self.client.get(self.keys.callback(webhook_id))
        return None if raw is None else Delivery.model_validate_json(raw)

    def save(self, delivery: Delivery, next_at: float | None) -> None:
        """Store the entry's new state; due again at ``next_at``, or (``None``) finished and out of the due set."""
        with self.client.pipeline() as pipe:
            pipe.set(self.keys.callback(delivery.webhook_id), delivery.model_dump_json(), ex=self.ttl_s)
            if next_at is None:
                pipe.zrem(self.keys.callbacks_due, delivery.webhook_id)
            else:
                pipe.zadd(self.keys.callbacks_due, {delivery.webhook_id: next_at})
            pipe.execute()

    def forget(self, webhook_id: str) -> None:
        """Drop a due id whose entry has expired."""
        self.client.zrem(self.keys.callbacks_due, webhook_id)

    def backlog(self, now: float) -> tuple[int, int]:
        """Undelivered webhooks: ``(owed, overdue)``, overdue being due more than a minute ago and unclaimed."""
        owed = int(self.client.zcard(self.keys.callbacks_due))
        overdue = int(self.client.zcount(self.keys.callbacks_due, "-inf", now - 60))
        return owed, overdue


def webhook_id(record: Record) -> str:
    """The id of the webhook announcing the record's end at its current version (stable across retries)."""
    return f"{record.id}.v{record.version}"


def note_attempt(record: Record, state: CallbackState) -> tuple[Effects, bool]:
    """Show a delivery's new state on its record, unless a later end of the record owes another webhook."""
    if record.callback is None or record.callback.webhook_id != state.webhook_id:
        return Effects(changed=False), False
    record.callback = state
    return Effects(), True
