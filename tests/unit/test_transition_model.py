"""A model-based test of the batch and job transitions (issue 14, "Prove it").

Hypothesis drives the pure transitions of :mod:`fastapi_app.store.batch` and :mod:`fastapi_app.store.job`
through arbitrary interleavings of what workers, providers and clients do: claims and submissions, lapsed
claims, deliveries (duplicate, late, partial, differing), failure reports, unusable outputs, deadlines,
reconciles, cancels and retries. After every step it checks the invariants that make every job end with a
reason and nothing be paid twice:

- no group uses more than its attempts since it was created or retried;
- every failed or cancelled item, batch and job states a reason (and a failed one its code);
- every provider id ever recorded stays on its group (current or previous): a late result is recognised;
- a completed item keeps the artifact it first got (nothing applied twice, no winner overwritten);
- an unfinished batch has unfinished groups, each in the due index (the reconciler comes back to it);
- a completed batch has every artifact, and a completed job every step and every artifact.

``STRANGLER_MODEL_EXAMPLES`` raises the number of runs (docs/RELIABILITY.md has the longer run).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fastapi_app.store.batch import Batch, FailureCode, GroupStatus, Kind, new_batch
from fastapi_app.store.batch_transitions import (
    Claim,
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
from fastapi_app.store.docstore import Effects
from fastapi_app.store.job import JobRecord, cancel_job, fail_step, finish_step, retry_job, start_step
from strangler_bridge.contracts.common import BatchStatus, ItemStatus
from strangler_bridge.contracts.jobs import StepName
from strangler_bridge.keys import DueMember

pytestmark = pytest.mark.unit

MAX_ATTEMPTS = 3
LEASE_S = 30.0
DEADLINE_S = 600.0
EXAMPLES = int(os.environ.get("STRANGLER_MODEL_EXAMPLES", "60"))
KIND_OF_STEP: dict[StepName, Kind] = {StepName.TTS: "tts", StepName.IMAGEGEN: "img", StepName.VIDEO: "vid"}


class PipelineModel(RuleBasedStateMachine):
    """One pipeline job whose steps' batches are driven by arbitrary worker, provider and client events."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.job = JobRecord(id="job_model", request={})
        self.batches: dict[StepName, Batch] = {}
        self.claims: list[tuple[StepName, Claim]] = []
        self.due: set[DueMember] = set()
        self.recorded_ids: dict[tuple[StepName, int], set[str]] = {}
        self.first_artifact: dict[tuple[StepName, int], str] = {}
        self.deliveries = 0

    # --- helpers -----------------------------------------------------------------------------------
    def _apply(self, effects: Effects) -> None:
        """The due index as DocStore keeps it: additions, then removals."""
        self.due |= set(effects.due)
        self.due -= effects.undue

    def _open_batches(self) -> list[StepName]:
        return [name for name, batch in self.batches.items() if not batch.status.terminal]

    def _pick(self, data: st.DataObject, names: list[StepName]) -> tuple[StepName, Batch, int]:
        name = data.draw(st.sampled_from(names))
        batch = self.batches[name]
        return name, batch, data.draw(st.integers(0, len(batch.groups) - 1))

    def _result(self, name: StepName, index: int, provider_id: str | None) -> ItemResult:
        self.deliveries += 1  # each delivery its own artifact key, as delivery_tag gives in the service
        key = f"{KIND_OF_STEP[name]}/b/{index}-{self.deliveries}.bin"
        return ItemResult(
            index=index, artifact=key, content_type="x/y", size_bytes=self.deliveries, provider_id=provider_id
        )

    # --- the job's driver (what orchestrator.advance does, over the pure transitions) ------------------
    @rule(sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3))
    def advance(self, sizes: list[int]) -> None:
        """Run the job's current step: create its batch, or follow its batch's end."""
        if self.job.status.terminal or (step := self.job.current()) is None:
            return
        if step.name is StepName.SEGMENTS:
            start_step(self.job, step.name, now=self.now)
            finish_step(self.job, step.name, now=self.now)
            return
        batch = self.batches.get(step.name)
        if batch is None:
            kind = KIND_OF_STEP[step.name]
            items = 1 if kind == "vid" else sum(sizes)
            group = 1 if kind != "tts" else max(sizes)
            batch = new_batch(
                f"{kind}_b", kind, list(range(items)), group, {}, video_id=None, deadline_s=DEADLINE_S, now=self.now
            )
            self.batches[step.name] = batch
            self.due |= {batch.due(g.no) for g in batch.groups}
        if step.status is ItemStatus.PENDING:
            start_step(self.job, step.name, now=self.now, batch_id=batch.id)
        if batch.status is BatchStatus.COMPLETED:
            finish_step(self.job, step.name, now=self.now)
        elif batch.status is BatchStatus.FAILED:
            fail_step(self.job, step.name, batch.error or "", now=self.now)

    # --- workers -----------------------------------------------------------------------------------
    @precondition(lambda self: self._open_batches())
    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        """A worker (or the reconciler) claims a group to submit or recover it."""
        name, batch, no = self._pick(data, self._open_batches())
        ids = iter(f"task-{self.deliveries}-{n}" for n in range(1_000_000))
        new_id = (lambda: next(ids)) if batch.kind != "tts" else None
        effects, claim = claim_group(
            batch, no, now=self.now, lease_s=LEASE_S, max_attempts=MAX_ATTEMPTS, new_provider_id=new_id
        )
        self._apply(effects)
        if claim is not None:
            self.claims.append((name, claim))
            if claim.provider_id:
                self.recorded_ids.setdefault((name, no), set()).add(claim.provider_id)

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), sent=st.booleans())
    def finish_call(self, data: st.DataObject, sent: bool) -> None:
        """A claimed call ends: the provider took it (its id recorded), or it never got through."""
        name, claim = self.claims.pop(data.draw(st.integers(0, len(self.claims) - 1)))
        batch = self.batches[name]
        if sent:
            provider_id = claim.provider_id or f"rp-{name.value}-{claim.no}-{claim.attempt}"
            effects, _ = record_submission(batch, claim, provider_id, now=self.now, reconcile_after_s=LEASE_S)
            self.recorded_ids.setdefault((name, claim.no), set()).add(provider_id)
        else:
            effects, _ = release_claim(batch, claim, "HTTP 503", now=self.now, max_submit_errors=4)
        self._apply(effects)

    @rule(seconds=st.sampled_from([1.0, LEASE_S + 1, DEADLINE_S / 2]))
    def time_passes(self, seconds: float) -> None:
        """Time passes: claims lapse, deadlines come."""
        self.now += seconds

    @precondition(lambda self: self._open_batches())
    @rule(data=st.data())
    def reconcile(self, data: st.DataObject) -> None:
        """The reconciler looks at an overdue batch: past its deadline, it fails."""
        name = data.draw(st.sampled_from(self._open_batches()))
        effects, _ = expire_batch(self.batches[name], now=self.now)
        self._apply(effects)

    # --- providers ---------------------------------------------------------------------------------
    @precondition(lambda self: self.batches)
    @rule(data=st.data(), keep=st.lists(st.booleans(), min_size=3, max_size=9))
    def deliver(self, data: st.DataObject, keep: list[bool]) -> None:
        """An output arrives for a group: whole or partial, duplicate, late, differing from an earlier one."""
        name, batch, no = self._pick(data, list(self.batches))
        group = batch.group(no)
        provider_id = group.provider_id or (group.previous_ids[-1] if group.previous_ids else None)
        indexes = [index for position, index in enumerate(group.indexes) if keep[position % len(keep)]]
        results = [self._result(name, index, provider_id) for index in indexes]
        effects, _ = complete_group(batch, no, results, max_attempts=MAX_ATTEMPTS, now=self.now)
        self._apply(effects)

    @precondition(lambda self: self.batches)
    @rule(data=st.data(), unusable=st.booleans(), keep=st.booleans())
    def report_failure(self, data: st.DataObject, unusable: bool, keep: bool) -> None:
        """The provider reports a failure of some attempt, or its output cannot be used."""
        _name, batch, no = self._pick(data, list(self.batches))
        attempt = data.draw(st.integers(0, max(batch.group(no).attempt, 0)))
        if unusable:
            effects, _ = reject_group(batch, no, "unusable output", FailureCode.UNUSABLE_OUTPUT, attempt=attempt)
        else:
            effects, _ = fail_attempt(
                batch,
                no,
                attempt,
                "provider FAILED",
                max_attempts=MAX_ATTEMPTS,
                retry_at=self.now,
                keep_submission=keep,
            )
        self._apply(effects)

    # --- clients -----------------------------------------------------------------------------------
    @rule()
    def cancel(self) -> None:
        """The client cancels the job: its running step's batch is cancelled too."""
        _, running = cancel_job(self.job, now=self.now)
        if running is not None and running.name in self.batches:
            effects, _ = cancel_batch(self.batches[running.name])
            self._apply(effects)

    @rule()
    def retry(self) -> None:
        """The client retries the job: every unfinished step's batch resumes (what pipeline.service.retry does)."""
        _, step = retry_job(self.job)
        if step is None:
            return
        for name, batch in self.batches.items():
            if self.job.step(name).status is not ItemStatus.COMPLETED:
                effects, _ = retry_failed(batch, now=self.now)
                self._apply(effects)

    # --- invariants --------------------------------------------------------------------------------
    @invariant()
    def attempts_are_bounded(self) -> None:
        for batch in self.batches.values():
            for group in batch.groups:
                assert group.attempts_used <= MAX_ATTEMPTS, group

    @invariant()
    def every_ending_states_its_reason(self) -> None:
        for batch in self.batches.values():
            for item in batch.items:
                if item.status in (ItemStatus.FAILED, ItemStatus.CANCELLED):
                    assert item.error, item
                if item.status is ItemStatus.FAILED:
                    assert item.error_code is not None, item
            if batch.status is BatchStatus.FAILED:
                assert batch.error and batch.error_code is not None, batch
            if batch.status is BatchStatus.CANCELLED:
                assert batch.error, batch
        if self.job.status in (BatchStatus.FAILED, BatchStatus.CANCELLED):
            assert self.job.error, self.job

    @invariant()
    def recorded_provider_ids_are_kept(self) -> None:
        for (name, no), ids in self.recorded_ids.items():
            group = self.batches[name].group(no)
            known = {group.provider_id, *group.previous_ids}
            assert ids <= known, (ids, group)

    @invariant()
    def nothing_is_applied_twice(self) -> None:
        for name, batch in self.batches.items():
            for item in batch.items:
                if item.artifact is None:
                    continue
                first = self.first_artifact.setdefault((name, item.index), item.artifact)
                assert item.artifact == first and item.status is ItemStatus.COMPLETED, item

    @invariant()
    def unfinished_work_is_due(self) -> None:
        for batch in self.batches.values():
            if batch.status.terminal:
                continue
            assert not all(group.status.terminal for group in batch.groups), batch  # running, nothing to do
            for group in batch.groups:
                if not group.status.terminal:
                    assert batch.due(group.no) in self.due, group

    @invariant()
    def completed_means_every_artifact(self) -> None:
        for batch in self.batches.values():
            if batch.status is BatchStatus.COMPLETED:
                assert all(item.artifact and item.status is ItemStatus.COMPLETED for item in batch.items), batch
                assert all(group.status is GroupStatus.COMPLETED for group in batch.groups), batch
        if self.job.status is BatchStatus.COMPLETED:
            assert all(step.status is ItemStatus.COMPLETED for step in self.job.steps)
            for name in KIND_OF_STEP:
                assert self.batches[name].status is BatchStatus.COMPLETED

    def teardown(self) -> None:
        """Nothing to release: the model lives in memory."""


PipelineModel.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestPipelineModel = PipelineModel.TestCase


def test_the_model_reaches_every_ending() -> None:
    """The model is not vacuous: a plain run of it completes a job (so the invariants above can be reached)."""
    model = PipelineModel()
    for _ in range(len(model.job.steps)):
        model.advance([2, 1])
        for name, batch in model.batches.items():
            for group in batch.groups:
                if group.status.terminal:
                    continue
                _, claim = claim_group(batch, group.no, now=model.now, lease_s=LEASE_S, max_attempts=MAX_ATTEMPTS)
                assert claim is not None
                record_submission(batch, claim, f"id-{group.no}", now=model.now, reconcile_after_s=LEASE_S)
                results = [model._result(name, index, None) for index in group.indexes]
                complete_group(batch, group.no, results, max_attempts=MAX_ATTEMPTS, now=model.now)
        model.advance([2, 1])
    assert model.job.status is BatchStatus.COMPLETED
    model.completed_means_every_artifact()
