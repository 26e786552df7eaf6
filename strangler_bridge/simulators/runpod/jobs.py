"""The simulator's records: one simulated RunPod job, the error a route answers with, and the counters."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from strangler_bridge.providers.runpod.models import RunPodStatus
from strangler_bridge.simulators.runpod.handlers import ABSENT

WEBHOOK_COUNTERS = (
    "attempts",
    "delivered",
    "failed_attempts",
    "gave_up",
    "lost",
    "duplicated",
    "held",
    "empty_bodies",
    "differing",
)


class SimError(Exception):
    """An HTTP error answer, in RunPod's body shape ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def fingerprint(value: Any) -> str:
    """sha256 of the canonical JSON of a job input: equal inputs, equal fingerprints."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(eq=False)
class SimJob:
    """One job and everything RunPod would show about it."""

    id: str
    input: Any
    webhook: str | None
    s3_config: Any
    sync: bool
    base_url: str
    endpoint_id: str
    execution_timeout_s: float
    fingerprint: str
    status: RunPodStatus = RunPodStatus.IN_QUEUE
    queued_at: float = 0.0
    ready_at: float = 0.0
    started_at: float | None = None
    delay_ms: int | None = None
    execution_ms: int | None = None
    output: Any = ABSENT
    error: str | None = None
    worker_id: str | None = None
    retries: int = 0
    task: asyncio.Task[None] | None = None
    ttl_timer: asyncio.TimerHandle | None = None
    retention_timer: asyncio.TimerHandle | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def status_object(self) -> dict[str, Any]:
        """The job as ``/status`` shows it: only the fields that apply to its state."""
        data: dict[str, Any] = {"id": self.id, "status": self.status.value}
        if self.delay_ms is not None:
            data["delayTime"] = self.delay_ms
        if self.execution_ms is not None:
            data["executionTime"] = self.execution_ms
        if self.output is not ABSENT:
            data["output"] = self.output
        if self.error is not None:
            data["error"] = self.error
        if self.worker_id is not None:
            data["workerId"] = self.worker_id
        if self.retries:
            data["retries"] = self.retries
        return data

    def webhook_payload(self) -> dict[str, Any]:
        """What RunPod POSTs to the webhook: the status object plus ``input`` and ``webhook``."""
        return {**self.status_object(), "input": self.input, "webhook": self.webhook}

    def worker_job(self) -> dict[str, Any]:
        """What the handler receives, as runpod.serverless passes it."""
        job: dict[str, Any] = {"id": self.id, "input": self.input}
        if self.s3_config is not None:
            job["s3Config"] = self.s3_config
        return job

    def cancel_timers(self) -> None:
        """Stop the TTL and retention timers."""
        for timer in (self.ttl_timer, self.retention_timer):
            if timer is not None:
                timer.cancel()


@dataclass
class Counters:
    """Everything the simulator was asked to do, so a test can prove nothing ran or was paid for twice."""

    requests: Counter[str] = field(default_factory=Counter)
    jobs_received: Counter[str] = field(default_factory=Counter)
    executions: Counter[str] = field(default_factory=Counter)
    executions_by_input: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)

    def clear(self) -> None:
        """Start counting from zero (in place: the webhook sender holds ``webhooks``)."""
        for counter in (
            self.requests,
            self.jobs_received,
            self.executions,
            self.executions_by_input,
            self.outcomes,
            self.events,
            self.webhooks,
        ):
            counter.clear()

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON, with the totals and maxima a test usually asserts on."""
        return {
            "requests": dict(self.requests),
            "jobs_received": dict(self.jobs_received),
            "jobs_received_total": sum(self.jobs_received.values()),
            "executions": dict(self.executions),
            "executions_total": sum(self.executions.values()),
            "executions_by_input": dict(self.executions_by_input),
            "max_executions_per_job": max(self.executions.values(), default=0),
            "max_executions_per_input": max(self.executions_by_input.values(), default=0),
            "outcomes": dict(self.outcomes),
            "retried": self.events["retried"],
            "purged": self.events["purged"],
            "responses_429": self.events["responses_429"],
            "injected_faults": self.events["injected_faults"],
            "partial_outputs": self.events["partial_outputs"],
            "chunks_received": self.events["chunks_received"],
            "webhooks": {name: self.webhooks[name] for name in WEBHOOK_COUNTERS},
        }
