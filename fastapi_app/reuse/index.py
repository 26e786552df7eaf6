"""The reuse index in Redis: what each fingerprint made, and which identical items are in flight or waiting.

Keys (all under the service's prefix, spelled in :class:`strangler_bridge.keys.Keys`, ``reuse_*``):

- ``reuse:entry:<fingerprint>``: the stored output (an :class:`Entry`), kept as long as finished records are
  (``STRANGLER_RECORD_TTL_S``), refreshed on every reuse;
- ``reuse:artifact:<artifact key>``: marks an artifact an entry points at, for the retention sweep;
- ``reuse:flight:<fingerprint>``: the item whose provider call makes that output now (``kind:batch:index``),
  kept at most for its step's deadline;
- ``reuse:waiters:<fingerprint>``: the items waiting for that call.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from fastapi_app.runtime import Runtime


def item_member(kind: str, batch_id: str, index: int) -> str:
    """How an item is named in the flight and waiter keys."""
    return f"{kind}:{batch_id}:{index}"


def parse_member(member: str) -> tuple[str, str, int]:
    """``(kind, batch id, index)`` of an item member."""
    kind, batch_id, index = member.rsplit(":", 2)
    return kind, batch_id, int(index)


class Entry(BaseModel):
    """An output made by a provider, kept for reuse."""

    artifact: str
    content_type: str
    size_bytes: int
    duration_s: float | None = None
    cost: float | None = None  # what the provider call cost (USD), the saving of every reuse
    provider_id: str | None = None
    made_by: str  # the item member that made it


# The entry if one is kept; else take the flight unless another item holds it. Returns {entry or false, holder}.
_LOOKUP_OR_FLY = """
local entry = redis.call('GET', KEYS[1])
if entry then return {entry, false} end
local holder = redis.call('GET', KEYS[2])
if holder then return {false, holder} end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return {false, ARGV[1]}
"""
# An item finished: keep its entry (ARGV[2], if any), end its flight if it held it, and take the waiters if it
# has an output for them (ARGV[5] == '1') or held the flight. Returns {1 if it held the flight else 0, waiters...}.
_FINISH = """
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[4])
end
local held = 0
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  held = 1
end
if held == 0 and ARGV[5] ~= '1' then return {0} end
local waiters = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
table.insert(waiters, 1, held)
return waiters
"""
# Delete the flight only if ``member`` still holds it.
_DROP_FLIGHT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ReuseIndex:
    """Reads and writes of the reuse index."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.keys = rt.keys
        self.ttl_s = rt.settings.record_ttl_s

    def lookup(self, fingerprint: str) -> Entry | None:
        """The entry of a fingerprint, if one is kept (an unreadable one counts as none)."""
        return _entry(self.rt.redis.get(self.keys.reuse_entry(fingerprint)))

    def lookup_or_fly(self, fingerprint: str, member: str, ttl_s: float) -> tuple[Entry | None, str | None]:
        """The kept entry, or else the flight's holder (``member`` itself if it took the flight), in one call."""
        script = self.rt.redis.register_script(_LOOKUP_OR_FLY)
        keys = [self.keys.reuse_entry(fingerprint), self.keys.reuse_flight(fingerprint)]
        raw, holder = script(keys=keys, args=[member, max(int(ttl_s), 1)])
        entry = _entry(raw) if raw else None
        if raw and entry is None:  # unreadable: as if none were kept
            return None, self.take_flight(fingerprint, member, ttl_s)
        return entry, _text(holder) if holder else None

    def publish(self, fingerprint: str, entry: Entry) -> None:
        """Keep an output for reuse (replacing an older entry of the fingerprint)."""
        with self.rt.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.reuse_entry(fingerprint), entry.model_dump_json(), ex=self.ttl_s)
            pipe.set(self.keys.reuse_artifact(entry.artifact), fingerprint, ex=self.ttl_s)
            pipe.execute()

    def finish(
        self, fingerprint: str, member: str, *, made: Entry | None = None, completed: bool = False
    ) -> tuple[bool, list[str]]:
        """``member`` finished, in one call: keep the entry it ``made``, end its flight, and take the items that
        waited for the output if it has one (``completed``) or held the flight (else none are taken).

        Returns whether it held the flight, and the waiters taken.
        """
        entry = made
        script = self.rt.redis.register_script(_FINISH)
        keys = [
            self.keys.reuse_entry(fingerprint),
            self.keys.reuse_flight(fingerprint),
            self.keys.reuse_waiters(fingerprint),
            self.keys.reuse_artifact(entry.artifact if entry else ""),
        ]
        body = entry.model_dump_json() if entry else ""
        held, *waiters = script(keys=keys, args=[member, body, fingerprint, self.ttl_s, "1" if completed else "0"])
        return bool(held), sorted(_text(w) for w in waiters)

    def touch(self, fingerprint: str, entry: Entry) -> None:
        """An entry was just reused: keep it (and its artifact) for another full lifetime."""
        with self.rt.redis.pipeline(transaction=False) as pipe:
            pipe.expire(self.keys.reuse_entry(fingerprint), self.ttl_s)
            pipe.expire(self.keys.reuse_artifact(entry.artifact), self.ttl_s)
            pipe.execute()

    def forget(self, fingerprint: str, entry: Entry) -> None:
        """Drop an entry whose artifact is gone."""
        self.rt.redis.delete(self.keys.reuse_entry(fingerprint), self.keys.reuse_artifact(entry.artifact))

    def referenced(self, artifact: str) -> bool:
        """Whether a live entry points at ``artifact`` (the retention sweep must keep it)."""
        return bool(self.rt.redis.exists(self.keys.reuse_artifact(artifact)))

    def take_flight(self, fingerprint: str, member: str, ttl_s: float) -> str:
        """Make ``member`` the item whose call makes the fingerprint's output, unless one is; returns the holder."""
        key = self.keys.reuse_flight(fingerprint)
        if self.rt.redis.set(key, member, nx=True, ex=max(int(ttl_s), 1)):
            return member
        holder = self.rt.redis.get(key)
        return _text(holder) if holder else self.take_flight(fingerprint, member, ttl_s)

    def drop_flight(self, fingerprint: str, member: str) -> bool:
        """End ``member``'s flight (nothing happens if another item holds it); whether it did."""
        script = self.rt.redis.register_script(_DROP_FLIGHT)
        return bool(script(keys=[self.keys.reuse_flight(fingerprint)], args=[member]))

    def wait(self, fingerprint: str, member: str, ttl_s: float) -> None:
        """Register ``member`` as waiting for the fingerprint's flight."""
        key = self.keys.reuse_waiters(fingerprint)
        with self.rt.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, member)
            pipe.expire(key, max(int(ttl_s), 1))
            pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(raw: bytes | str | None) -> Entry | None:
    if raw is None:
        return None
    try:
        return Entry.model_validate_json(raw)
    except ValidationError:
        return None
