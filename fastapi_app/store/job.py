"""The stored pipeline job and its transitions (pure functions, applied atomically by DocStore.update)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from fastapi_app.store.docstore import Announced, Effects, EndingRecord
from strangler_bridge.contracts.callbacks import CallbackObject
from strangler_bridge.contracts.common import BatchStatus, ItemStatus
from strangler_bridge.contracts.jobs import STEP_ORDER, StepName
from strangler_bridge.keys import DueKind, DueMember


class StepRecord(BaseModel):
    """One step's bookkeeping."""

    name: StepName
    status: ItemStatus = ItemStatus.PENDING
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    batch_id: str | None = None
    provider_ids: list[str] = Field(default_factory=list)
    cost: float | None = None
    error: str | None = None


class JobRecord(EndingRecord):
    """A pipeline job."""

    steps: list[StepRecord] = Field(default_factory=lambda: [StepRecord(name=name) for name in STEP_ORDER])
    segments_key: str | None = None

    def announced(self) -> Announced:
        """A job's status path, its video once completed with one, and the cost of its steps."""
        costs = [step.cost for step in self.steps if step.cost is not None]
        rendered = self.status is BatchStatus.COMPLETED and self.step(StepName.VIDEO).batch_id is not None
        return Announced(
            CallbackObject.JOB,
            f"/jobs/{self.id}",
            f"/jobs/{self.id}/video" if rendered else None,
            round(sum(costs), 6) if costs else None,
        )

    def step(self, name: StepName) -> StepRecord:
        """The record of one step."""
        return next(step for step in self.steps if step.name is name)

    def current(self) -> StepRecord | None:
        """The first step that is not completed (``None`` once all are)."""
        return next((step for step in self.steps if step.status is not ItemStatus.COMPLETED), None)


def job_due(job: JobRecord) -> DueMember:
    """The due-index entry of a job: its safety net, should the event that moves it on be lost."""
    return DueMember(DueKind.JOB, job.id)


def start_step(job: JobRecord, name: StepName, *, now: float, batch_id: str | None = None) -> tuple[Effects, bool]:
    """Mark a step running (once per attempt). Returns whether this call started it."""
    step = job.step(name)
    if job.status.terminal or step.status is not ItemStatus.PENDING:
        return Effects(changed=False), False
    step.status = ItemStatus.SUBMITTED
    step.attempts += 1
    step.started_at = now
    step.finished_at = None
    step.error = None
    if batch_id is not None:
        step.batch_id = batch_id
    job.status = BatchStatus.RUNNING
    return Effects(), True


def finish_step(
    job: JobRecord, name: StepName, *, now: float, cost: float | None = None, provider_ids: list[str] | None = None
) -> tuple[Effects, bool]:
    """Mark a step completed; the job completes with its last step. Returns whether this call did it."""
    step = job.step(name)
    if job.status.terminal or step.status is ItemStatus.COMPLETED:
        return Effects(changed=False), False
    step.status = ItemStatus.COMPLETED
    step.finished_at = now
    step.cost = cost
    step.provider_ids = provider_ids or step.provider_ids
    effects = Effects()
    if job.current() is None:
        job.status = BatchStatus.COMPLETED
        effects.undue.add(job_due(job))
    return effects, True


def fail_step(job: JobRecord, name: StepName, reason: str, *, now: float) -> tuple[Effects, bool]:
    """A step failed for good: the job stops with the step's reason (it can be retried)."""
    step = job.step(name)
    if job.status.terminal:
        return Effects(changed=False), False
    step.status = ItemStatus.FAILED
    step.finished_at = now
    step.error = reason
    job.status = BatchStatus.FAILED
    job.error = f"{name.value}: {reason}"
    return Effects(undue={job_due(job)}), True


def cancel_job(job: JobRecord, *, now: float) -> tuple[Effects, StepRecord | None]:
    """Stop the job; returns the step that was running, whose provider work should be cancelled."""
    if job.status.terminal:
        return Effects(changed=False), None
    running = job.current()
    for step in job.steps:
        if step.status is not ItemStatus.COMPLETED:
            step.status = ItemStatus.CANCELLED
            step.finished_at = step.finished_at or now
    job.status = BatchStatus.CANCELLED
    job.error = "cancelled"
    return Effects(undue={job_due(job)}), running


def retry_job(job: JobRecord) -> tuple[Effects, StepRecord | None]:
    """Resume a failed or cancelled job from its first unfinished step; everything done is kept."""
    if job.status not in (BatchStatus.FAILED, BatchStatus.CANCELLED):
        return Effects(changed=False), None
    for step in job.steps:
        if step.status is not ItemStatus.COMPLETED:
            step.status = ItemStatus.PENDING
            step.error = None
    job.status = BatchStatus.RUNNING
    job.error = None
    return Effects(), job.current()
