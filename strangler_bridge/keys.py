"""The one scheme naming every Redis key (and RQ queue) the service writes under a deployment's prefix.

Pure string building, no Redis client: the service's store uses it, and so does the CLI that deletes what a
throw-away prefix wrote (``strangler_bridge/cli/own_keys.py``), which may not import the service. Keys are
``<prefix>:<area>:...``; RQ queues are ``<prefix>-<name>`` (RQ adds its own ``rq:`` keys around the name).

The due index (one sorted set, :attr:`Keys.due`) holds :class:`DueMember` entries: ``<kind>:<id>:<group>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: The RQ queue of submissions to providers and continuations of the pipeline.
WORK = "work"
#: The RQ queue reconciling overdue provider work (polls providers); kept apart so it cannot starve submissions.
RECONCILE = "reconcile"
QUEUES = (WORK, RECONCILE)


@dataclass(frozen=True)
class Keys:
    """Every key of one deployment, named from its prefix (``STRANGLER_REDIS_PREFIX``)."""

    prefix: str

    def _key(self, *parts: object) -> str:
        return ":".join((self.prefix, *map(str, parts)))

    # --- records --------------------------------------------------------------------------------------
    def record(self, kind: str, record_id: str) -> str:
        """The JSON document of one record (``kind`` is the store's: ``batch``, ``job``)."""
        return self._key(kind, record_id)

    def idempotency(self, kind: str, key: str, *, internal: bool = False) -> str:
        """A client's ``Idempotency-Key`` for one record kind, or (``internal``) one of the service's own.

        The service's keys live under another area than every client key, so no header can collide with one.
        """
        return self._key("idem-internal" if internal else "idem", kind, key)

    def index(self, name: str) -> str:
        """The sorted set listing recent records of one kind (newest last)."""
        return self._key("index", name)

    @property
    def due(self) -> str:
        """The due index: work items scored by the deadline at which the reconciler looks at them."""
        return self._key("due")

    def changes(self, record_id: str) -> str:
        """The pub/sub channel announcing changes of one record."""
        return self._key("changes", record_id)

    @property
    def changes_pattern(self) -> str:
        """The pattern matching every record's change channel."""
        return self.changes("*")

    def changed_record(self, channel: str) -> str:
        """The record id a change channel names."""
        return channel.removeprefix(self.changes(""))

    # --- metrics --------------------------------------------------------------------------------------
    @property
    def counters(self) -> str:
        """The hash of counter samples shared by every process."""
        return self._key("metrics", "counters")

    @property
    def histograms(self) -> str:
        """The hash of histogram buckets, sums and counts shared by every process."""
        return self._key("metrics", "histograms")

    @property
    def steps_seen(self) -> str:
        """The sorted set of pipeline steps already counted in the step-duration histogram."""
        return self._key("metrics", "steps_seen")

    # --- inbound events and operator state -----------------------------------------------------------
    @property
    def tts_inbox(self) -> str:
        """The stream of received RunPod webhooks, applied by the workers' inbox threads."""
        return self._key("inbox", "tts")

    @property
    def recent_events(self) -> str:
        """The capped list of the latest ``POST /events`` bodies."""
        return self._key("events", "recent")

    @property
    def breakers(self) -> str:
        """The hash of the Flask side's breaker states, one field per (process, phase)."""
        return self._key("events", "breakers")

    @property
    def flags(self) -> str:
        """The hash of per-phase routing flags."""
        return self._key("flags")

    @property
    def flags_version(self) -> str:
        """The counter bumped on every flag change (clients cache flags by it)."""
        return self._key("flags", "version")

    def limiter(self, name: str) -> str:
        """The sorted set of leases of one concurrency limiter (``runware``)."""
        return self._key("limiter", name)

    @property
    def retention_lock(self) -> str:
        """The lock (one per sweep interval) that lets one worker at a time sweep expired artifacts."""
        return self._key("retention", "lock")

    # --- completion webhooks (fastapi_app/store/outbox.py) ---------------------------------------------
    def callback(self, webhook_id: str) -> str:
        """One completion webhook owed to a ``callback_url`` (a JSON entry: the body, the URL, the attempts)."""
        return self._key("callbacks", "entry", webhook_id)

    @property
    def callbacks_due(self) -> str:
        """The sorted set of undelivered webhooks scored by when they are next sent (or their claim lapses)."""
        return self._key("callbacks", "due")

    # --- reuse (fastapi_app/reuse) ---------------------------------------------------------------------
    def reuse_entry(self, fingerprint: str) -> str:
        """The kept output of a fingerprint (a JSON entry), kept ``STRANGLER_RECORD_TTL_S`` from its last use."""
        return self._key("reuse", "entry", fingerprint)

    def reuse_artifact(self, artifact: str) -> str:
        """The mark that an entry points at ``artifact`` (a retention sweep keeps the file while it exists)."""
        return self._key("reuse", "artifact", artifact)

    def reuse_flight(self, fingerprint: str) -> str:
        """The item whose provider call makes a fingerprint's output now (``kind:batch:index``)."""
        return self._key("reuse", "flight", fingerprint)

    def reuse_waiters(self, fingerprint: str) -> str:
        """The set of items waiting for that call."""
        return self._key("reuse", "waiters", fingerprint)

    # --- RQ -------------------------------------------------------------------------------------------
    def queue(self, name: str) -> str:
        """The RQ queue name of ``name`` (:data:`WORK`, :data:`RECONCILE`) for this deployment."""
        return f"{self.prefix}-{name}"


class DueKind(str, Enum):
    """What a due-index entry names: a batch group of one phase, or a pipeline job."""

    TTS = "tts"
    IMAGES = "img"
    VIDEO = "vid"
    JOB = "job"


@dataclass(frozen=True)
class DueMember:
    """One due-index entry: ``<kind>:<record id>:<group>`` (a video render and a job have the one group 0)."""

    kind: DueKind
    record_id: str
    group: int = 0

    def format(self) -> str:
        """The member as stored in the due index."""
        return f"{self.kind.value}:{self.record_id}:{self.group}"

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, text: str) -> DueMember:
        """The entry ``text`` names (``ValueError`` if it is not one, or its kind is unknown)."""
        kind, _, rest = text.partition(":")
        record_id, _, group = rest.rpartition(":")
        if not record_id or not (group.isascii() and group.isdigit()) or str(int(group)) != group:
            raise ValueError(f"not a due-index member: {text!r}")
        return cls(DueKind(kind), record_id, int(group))
