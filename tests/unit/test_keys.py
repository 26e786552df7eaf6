"""The one Redis key scheme: every key under its deployment's prefix, no two deployments sharing one, and
due-index entries that read back as written."""

from __future__ import annotations

import inspect

from hypothesis import given
from hypothesis import strategies as st

from strangler_bridge.keys import QUEUES, DueKind, DueMember, Keys

# A prefix is one key segment: no ":" (the separator). "-" is allowed: the CLI's own prefixes use it.
prefixes = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
record_ids = st.text(min_size=1, max_size=40).filter(lambda text: text.strip() == text)


def every_key(keys: Keys, record_id: str = "tts_0123") -> dict[str, str]:
    """Every key (and queue name) of ``keys``, by the member that builds it."""
    built = {
        "record": keys.record("batch", record_id),
        "record(job)": keys.record("job", record_id),
        "idempotency": keys.idempotency("batch", record_id),
        "idempotency(internal)": keys.idempotency("batch", record_id, internal=True),
        "index": keys.index("tts"),
        "due": keys.due,
        "changes": keys.changes(record_id),
        "changes_pattern": keys.changes_pattern,
        "counters": keys.counters,
        "histograms": keys.histograms,
        "steps_seen": keys.steps_seen,
        "tts_inbox": keys.tts_inbox,
        "recent_events": keys.recent_events,
        "breakers": keys.breakers,
        "flags": keys.flags,
        "flags_version": keys.flags_version,
        "limiter": keys.limiter("runware"),
        "retention_lock": keys.retention_lock,
        "callback": keys.callback(f"{record_id}.v3"),
        "callbacks_due": keys.callbacks_due,
        "reuse_entry": keys.reuse_entry("f" * 64),
        "reuse_artifact": keys.reuse_artifact("tts/tts_0123/0-ab.wav"),
        "reuse_flight": keys.reuse_flight("f" * 64),
        "reuse_waiters": keys.reuse_waiters("f" * 64),
        **{f"queue({name})": keys.queue(name) for name in QUEUES},
    }
    return built


def test_the_listing_covers_every_member_of_the_scheme() -> None:
    members = {name for name, _ in inspect.getmembers(Keys) if not name.startswith("_")}
    listed = {name.partition("(")[0] for name in every_key(Keys("p"))}
    assert members - {"prefix", "changed_record"} == listed


@given(prefixes)
def test_every_key_lives_under_the_prefix(prefix: str) -> None:
    for name, key in every_key(Keys(prefix)).items():
        separator = "-" if name.startswith("queue") else ":"
        assert key.startswith(prefix + separator), (name, key)


def test_the_keys_of_one_deployment_are_distinct() -> None:
    built = every_key(Keys("sb"))
    assert len(set(built.values())) == len(built)


@given(prefixes, prefixes, record_ids)
def test_two_prefixes_never_share_a_key(first: str, second: str, record_id: str) -> None:
    if first == second:
        return
    assert not set(every_key(Keys(first), record_id).values()) & set(every_key(Keys(second), record_id).values())


@given(prefixes, record_ids)
def test_a_change_channel_names_its_record(prefix: str, record_id: str) -> None:
    keys = Keys(prefix)
    assert keys.changed_record(keys.changes(record_id)) == record_id


def test_the_scheme_keeps_the_stored_names() -> None:
    # Keys already in a deployment's Redis must keep their names across releases.
    keys = Keys("sb")
    assert keys.record("batch", "tts_1") == "sb:batch:tts_1"
    assert keys.idempotency("job", "k") == "sb:idem:job:k"
    assert keys.idempotency("batch", "job_1:tts", internal=True) == "sb:idem-internal:batch:job_1:tts"
    assert (keys.due, keys.changes("tts_1"), keys.changes_pattern) == ("sb:due", "sb:changes:tts_1", "sb:changes:*")
    assert (keys.counters, keys.histograms, keys.steps_seen) == (
        "sb:metrics:counters",
        "sb:metrics:histograms",
        "sb:metrics:steps_seen",
    )
    assert (keys.tts_inbox, keys.recent_events, keys.breakers) == (
        "sb:inbox:tts",
        "sb:events:recent",
        "sb:events:breakers",
    )
    assert (keys.flags, keys.flags_version, keys.limiter("runware")) == (
        "sb:flags",
        "sb:flags:version",
        "sb:limiter:runware",
    )
    assert [keys.queue(name) for name in QUEUES] == ["sb-work", "sb-reconcile"]


@given(st.sampled_from(DueKind), record_ids, st.integers(min_value=0, max_value=10_000))
def test_a_due_member_reads_back_as_written(kind: DueKind, record_id: str, group: int) -> None:
    member = DueMember(kind, record_id, group)
    assert DueMember.parse(member.format()) == member
    assert str(member) == member.format()


def test_due_members_keep_the_stored_format() -> None:
    assert DueMember(DueKind.TTS, "tts_1", 3).format() == "tts:tts_1:3"
    assert DueMember(DueKind.VIDEO, "vid_1").format() == "vid:vid_1:0"
    assert DueMember(DueKind.JOB, "job_1").format() == "job:job_1:0"
    assert DueMember.parse("img:img_1:2") == DueMember(DueKind.IMAGES, "img_1", 2)


@given(st.text(max_size=30))
def test_anything_else_is_not_a_due_member(text: str) -> None:
    try:
        member = DueMember.parse(text)
    except ValueError:
        return
    assert member.format() == text


def test_an_unknown_kind_or_a_missing_group_is_refused() -> None:
    for text in ("xyz:tts_1:0", "tts:tts_1", "tts::0", "tts:tts_1:-1", "tts:tts_1:x", "tts:tts_1:01", ""):
        try:
            DueMember.parse(text)
        except ValueError:
            continue
        raise AssertionError(f"{text!r} parsed")
