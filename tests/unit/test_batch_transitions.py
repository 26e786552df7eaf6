"""The batch record's transitions: atomic units of the phase 1/2 state machine, tested as plain functions."""

from __future__ import annotations

import pytest

from fastapi_app.store.batch import Batch, FailureCode, GroupStatus, new_batch
from fastapi_app.store.batch_transitions import (
    ItemResult,
    cancel_batch,
    claim_group,
    complete_group,
    expire_batch,
    fail_attempt,
    record_submission,
    reject_group,
    release_claim,
    retry_failed,
)
from strangler_bridge.contracts.common import BatchStatus, ItemStatus

pytestmark = pytest.mark.unit


def _batch(n: int = 5, size: int = 2) -> Batch:
    return new_batch("tts_0123456789abcdef", "tts", list(range(n)), size, {}, video_id="v1")


def _result(index: int) -> ItemResult:
    return ItemResult(
        index=index, artifact=f"tts/x/{index}.wav", content_type="audio/wav", size_bytes=10, duration_s=1.0
    )


def test_items_are_grouped_in_index_order() -> None:
    batch = new_batch("tts_0123456789abcdef", "tts", [4, 0, 3, 1, 2], 2, {}, video_id=None)
    assert [g.indexes for g in batch.groups] == [[0, 1], [2, 3], [4]]
    assert batch.item(3).group == 1


def test_claim_is_exclusive_until_the_lease_lapses() -> None:
    batch = _batch()
    effects, claim = claim_group(batch, 0, now=100.0, lease_s=30, max_attempts=3)
    assert claim is not None and claim.attempt == 1
    assert batch.status is BatchStatus.RUNNING
    assert list(effects.due.values()) == [130.0]
    assert claim_group(batch, 0, now=120.0, lease_s=30, max_attempts=3)[1] is None
    second = claim_group(batch, 0, now=131.0, lease_s=30, max_attempts=3)[1]
    assert second is not None and second.attempt == 2 and second.token != claim.token


def test_recorded_group_is_never_claimed_again() -> None:
    batch = _batch()
    _, claim = claim_group(batch, 0, now=100.0, lease_s=30, max_attempts=3)
    assert claim is not None
    record_submission(batch, claim, "rp-1", now=101.0, reconcile_after_s=30)
    assert batch.group(0).status is GroupStatus.SUBMITTED
    assert claim_group(batch, 0, now=10_000.0, lease_s=30, max_attempts=3)[1] is None


def test_webhook_before_the_submit_is_recorded_keeps_the_result() -> None:
    batch = _batch()
    _, claim = claim_group(batch, 0, now=100.0, lease_s=30, max_attempts=3)
    assert claim is not None
    complete_group(batch, 0, [_result(0), _result(1)], max_attempts=3, now=0.0)
    effects, held = record_submission(batch, claim, "rp-1", now=101.0, reconcile_after_s=30)
    assert held
    assert batch.group(0).status is GroupStatus.COMPLETED
    assert batch.group(0).provider_id == "rp-1"
    assert not effects.due


def test_second_delivery_changes_nothing() -> None:
    batch = _batch()
    complete_group(batch, 0, [_result(0), _result(1)], max_attempts=3, now=0.0)
    effects, applied = complete_group(batch, 0, [_result(0)], max_attempts=3, now=0.0)
    assert not applied and not effects.changed


def test_missing_output_uses_the_remaining_attempts_for_only_that_item() -> None:
    batch = _batch(2, 2)
    for attempt in (1, 2):
        _, claim = claim_group(batch, 0, now=100.0 * attempt, lease_s=30, max_attempts=2)
        assert claim is not None and claim.indexes == ([0, 1] if attempt == 1 else [1])
        record_submission(batch, claim, f"rp-{attempt}", now=1.0, reconcile_after_s=30)
        effects, applied = complete_group(batch, 0, [_result(0)], max_attempts=2, now=5.0)
        assert applied  # each delivery counts its attempt
        if attempt == 1:
            assert batch.group(0).status is GroupStatus.PENDING and batch.item(1).status is ItemStatus.PENDING
            assert list(effects.due.values()) == [5.0]
    assert batch.item(0).status is ItemStatus.COMPLETED
    assert batch.item(1).status is ItemStatus.FAILED and batch.item(1).error_code is FailureCode.MISSING_OUTPUT
    assert batch.status is BatchStatus.FAILED
    assert batch.progress().failed == 1


def test_batch_completes_when_every_group_does() -> None:
    batch = _batch(3, 2)
    complete_group(batch, 0, [_result(0), _result(1)], max_attempts=3, now=0.0)
    assert batch.status is not BatchStatus.COMPLETED
    complete_group(batch, 1, [_result(2)], max_attempts=3, now=0.0)
    assert batch.status is BatchStatus.COMPLETED
    assert batch.progress().done == 3


def test_provider_failure_is_retried_then_final() -> None:
    batch = _batch(2, 2)
    for attempt in (1, 2):
        _, claim = claim_group(batch, 0, now=100.0 * attempt, lease_s=30, max_attempts=3)
        assert claim is not None and claim.attempt == attempt
        record_submission(batch, claim, f"rp-{attempt}", now=1.0, reconcile_after_s=30)
        _, again = fail_attempt(batch, 0, attempt, "RunPod FAILED: boom", max_attempts=2, retry_at=0)
        assert again is (attempt == 1)
    assert batch.group(0).status is GroupStatus.FAILED
    assert batch.item(0).error == "RunPod FAILED: boom"
    assert batch.status is BatchStatus.FAILED
    assert batch.group(0).previous_ids == ["rp-1", "rp-2"]
    assert batch.error_code is FailureCode.PROVIDER_FAILED


def test_a_repeated_failure_report_counts_once() -> None:
    batch = _batch(2, 2)
    _, claim = claim_group(batch, 0, now=100.0, lease_s=30, max_attempts=3)
    assert claim is not None
    record_submission(batch, claim, "rp-1", now=101.0, reconcile_after_s=30)
    assert fail_attempt(batch, 0, 1, "RunPod FAILED", max_attempts=2, retry_at=0)[1]
    effects, again = fail_attempt(batch, 0, 1, "RunPod FAILED", max_attempts=2, retry_at=0)
    assert not again and not effects.changed
    assert batch.group(0).failures == 1
    assert batch.group(0).status is GroupStatus.PENDING


def test_failure_of_an_older_attempt_is_ignored() -> None:
    batch = _batch(2, 2)
    claim_group(batch, 0, now=100.0, lease_s=30, max_attempts=3)
    claim_group(batch, 0, now=200.0, lease_s=30, max_attempts=3)
    effects, again = fail_attempt(batch, 0, 1, "late failure", max_attempts=3, retry_at=0)
    assert not again and not effects.changed
    assert batch.group(0).status is GroupStatus.SUBMITTING


def test_unsent_submission_goes_back_to_pending_without_using_an_attempt() -> None:
    batch = _batch(2, 2)
    _, claim = claim_group(batch, 0, now=100.0, lease_s=30, max_attempts=3)
    assert claim is not None
    effects, again = release_claim(batch, claim, "HTTP 503", now=100.0, max_submit_errors=3)
    assert again
    assert batch.group(0).status is GroupStatus.PENDING and batch.group(0).attempt == 0
    assert list(effects.due.values()) == [102.0]  # backs off 2 ** (failures so far) seconds


def test_repeated_unsent_submissions_back_off_then_fail() -> None:
    batch = _batch(2, 2)
    delays = []
    for round_no in range(3):
        _, claim = claim_group(batch, 0, now=1000.0 * (round_no + 1), lease_s=30, max_attempts=3)
        assert claim is not None
        effects, again = release_claim(batch, claim, "HTTP 429", now=0.0, max_submit_errors=3)
        delays.extend(effects.due.values())
    assert delays == [2.0, 4.0]
    assert not again
    assert batch.group(0).status is GroupStatus.FAILED
    assert "after 3 tries" in (batch.item(0).error or "")


def test_rejection_fails_the_group_with_the_reason() -> None:
    batch = _batch(2, 2)
    reject_group(batch, 0, "runpod HTTP 400: bad input")
    assert batch.item(1).error == "runpod HTTP 400: bad input"
    assert batch.status is BatchStatus.FAILED


def test_cancel_reports_running_provider_jobs() -> None:
    batch = _batch(4, 2)
    _, claim = claim_group(batch, 0, now=1.0, lease_s=30, max_attempts=3)
    assert claim is not None
    record_submission(batch, claim, "rp-1", now=1.0, reconcile_after_s=30)
    _, running = cancel_batch(batch)
    assert running == ["rp-1"]
    assert batch.status is BatchStatus.CANCELLED
    assert {item.status for item in batch.items} == {ItemStatus.CANCELLED}
    assert cancel_batch(batch)[1] == []


def test_lapsed_claims_and_recoveries_count_as_attempts_and_end_the_group() -> None:
    batch = _batch(2, 2)
    for attempt in (1, 2, 3):  # each claim lapses (a recovery that found nothing usable, a worker that died)
        _, claim = claim_group(batch, 0, now=100.0 * attempt, lease_s=30, max_attempts=3)
        assert claim is not None and claim.attempt == attempt and claim.recover is (attempt > 1)
    effects, claim = claim_group(batch, 0, now=1000.0, lease_s=30, max_attempts=3)
    assert claim is None
    assert batch.group(0).status is GroupStatus.FAILED and batch.group(0).attempt == 3
    assert batch.item(0).error_code is FailureCode.ATTEMPTS_EXHAUSTED and "after 3 attempts" in (batch.error or "")
    assert effects.undue


def test_unusable_output_fails_at_once_with_its_reason() -> None:
    batch = _batch(2, 2)
    _, claim = claim_group(batch, 0, now=1.0, lease_s=30, max_attempts=3)
    assert claim is not None
    reject_group(batch, 0, "unusable output: refusing to fetch", FailureCode.UNUSABLE_OUTPUT, attempt=claim.attempt)
    assert batch.status is BatchStatus.FAILED and batch.error_code is FailureCode.UNUSABLE_OUTPUT
    assert batch.group(0).attempt == 1 and batch.group(0).provider_id is None


def test_unusable_output_of_an_older_attempt_is_ignored() -> None:
    batch = _batch(2, 2)
    claim_group(batch, 0, now=1.0, lease_s=30, max_attempts=3)
    claim_group(batch, 0, now=100.0, lease_s=30, max_attempts=3)
    effects, _ = reject_group(batch, 0, "late", FailureCode.UNUSABLE_OUTPUT, attempt=1)
    assert not effects.changed and batch.group(0).status is GroupStatus.SUBMITTING


def test_a_fetch_that_failed_for_now_keeps_the_submission_for_recovery() -> None:
    batch = _batch(1, 1)
    _, claim = claim_group(batch, 0, now=1.0, lease_s=30, max_attempts=3, new_provider_id=lambda: "task-1")
    assert claim is not None
    fail_attempt(batch, 0, 1, "not fetched", max_attempts=3, retry_at=2.0, keep_submission=True)
    _, again = claim_group(batch, 0, now=3.0, lease_s=30, max_attempts=3, new_provider_id=lambda: "task-2")
    assert again is not None and again.provider_id == "task-1" and again.recover


def test_a_result_after_cancel_is_kept_and_the_retry_submits_nothing_for_it() -> None:
    batch = _batch(4, 2)
    for no in (0, 1):
        _, claim = claim_group(batch, no, now=1.0, lease_s=30, max_attempts=3)
        assert claim is not None
        record_submission(batch, claim, f"rp-{no}", now=1.0, reconcile_after_s=30)
    cancel_batch(batch)
    effects, applied = complete_group(batch, 0, [_result(0), _result(1)], max_attempts=3, now=2.0)
    assert applied and effects.changed
    assert batch.status is BatchStatus.CANCELLED and batch.group(0).status is GroupStatus.COMPLETED
    assert batch.item(0).artifact == "tts/x/0.wav"
    _, again = retry_failed(batch, now=10.0)
    assert again == 1  # only group 1, which still has to ask RunPod about rp-1 first
    assert batch.group(1).provider_id == "rp-1"
    _, claim = claim_group(batch, 1, now=11.0, lease_s=30, max_attempts=3)
    assert claim is not None and claim.recover and claim.provider_id == "rp-1"


def test_retry_of_a_batch_whose_results_all_arrived_after_cancel_completes_it() -> None:
    batch = _batch(2, 2)
    _, claim = claim_group(batch, 0, now=1.0, lease_s=30, max_attempts=3)
    assert claim is not None
    record_submission(batch, claim, "rp-0", now=1.0, reconcile_after_s=30)
    cancel_batch(batch)
    complete_group(batch, 0, [_result(0), _result(1)], max_attempts=3, now=2.0)
    _, again = retry_failed(batch, now=3.0)
    assert again == 0 and batch.status is BatchStatus.COMPLETED


def test_retry_never_leaves_a_running_batch_with_nothing_to_submit() -> None:
    batch = _batch(2, 2)
    _, claim = claim_group(batch, 0, now=1.0, lease_s=30, max_attempts=1)
    assert claim is not None
    complete_group(batch, 0, [_result(0)], max_attempts=1, now=2.0)  # item 1 missing, no attempts left
    assert batch.status is BatchStatus.FAILED
    effects, again = retry_failed(batch, now=3.0)
    assert again == 1 and batch.status is BatchStatus.RUNNING
    assert batch.group(0).status is GroupStatus.PENDING and batch.group(0).attempts_used == 0
    assert batch.item(0).status is ItemStatus.COMPLETED and batch.item(1).status is ItemStatus.PENDING
    assert [member.format() for member in effects.due] == ["tts:tts_0123456789abcdef:0"]


def test_a_differing_second_delivery_never_replaces_the_recorded_result() -> None:
    batch = _batch(1, 1)
    first = _result(0).model_copy(update={"artifact": "tts/x/0-a.wav", "size_bytes": 10})
    second = _result(0).model_copy(update={"artifact": "tts/x/0-b.wav", "size_bytes": 99})
    complete_group(batch, 0, [first], max_attempts=3, now=1.0)
    _, applied = complete_group(batch, 0, [second], max_attempts=3, now=1.0)
    assert not applied and batch.item(0).artifact == "tts/x/0-a.wav" and batch.item(0).size_bytes == 10


def test_deadline_fails_every_open_group_and_keeps_provider_ids() -> None:
    batch = new_batch("tts_0123456789abcdef", "tts", [0, 1, 2], 2, {}, video_id=None, deadline_s=60.0, now=100.0)
    _, claim = claim_group(batch, 0, now=101.0, lease_s=30, max_attempts=3)
    assert claim is not None
    record_submission(batch, claim, "rp-0", now=101.0, reconcile_after_s=30)
    assert not expire_batch(batch, now=159.0)[1]
    effects, expired = expire_batch(batch, now=160.0)
    assert expired and batch.status is BatchStatus.FAILED and batch.error_code is FailureCode.DEADLINE
    assert "deadline of 60 s" in (batch.error or "") and batch.group(0).provider_id == "rp-0"
    assert len(effects.undue) == 2
    retry_failed(batch, now=500.0)
    assert batch.deadline_at == 560.0
