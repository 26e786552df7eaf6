"""What the Runware simulator remembers: tasks, images and counters (read at ``GET /_sim/counters``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    """What the simulator was asked to do; enough for a test to prove "no task paid twice" and "never more than N
    concurrent"."""

    requests_received: int = 0  # with some work: an authentication task alone counts in ``authentications``
    first_request_at: float | None = None  # epoch seconds of the first of them (a test of the segments gate)
    authentications: int = 0
    tasks_received: int = 0
    tasks_rejected: int = 0
    tasks_executed: int = 0
    tasks_failed: int = 0
    images_generated: int = 0
    cost_total: float = 0.0
    executed_by_task: Counter[str] = field(default_factory=Counter)
    rate_limited_cap: int = 0
    rate_limited_injected: int = 0
    injected_statuses: Counter[int] = field(default_factory=Counter)
    dropped_responses: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    get_response_calls: int = 0
    image_redirects: int = 0
    webhook_attempts: int = 0
    webhooks_delivered: int = 0
    webhooks_failed: int = 0

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON (``tasks_executed_max_per_task`` > 1 would mean a task was paid twice)."""
        return {
            "requests_received": self.requests_received,
            "first_request_at": self.first_request_at,
            "authentications": self.authentications,
            "tasks_received": self.tasks_received,
            "tasks_rejected": self.tasks_rejected,
            "tasks_executed": self.tasks_executed,
            "tasks_failed": self.tasks_failed,
            "tasks_executed_max_per_task": max(self.executed_by_task.values(), default=0),
            "executed_by_task": dict(self.executed_by_task),
            "images_generated": self.images_generated,
            "cost_total": round(self.cost_total, 10),
            "rate_limited": {
                "cap": self.rate_limited_cap,
                "injected": self.rate_limited_injected,
                "total": self.rate_limited_cap + self.rate_limited_injected,
            },
            "injected_statuses": {str(status): n for status, n in sorted(self.injected_statuses.items())},
            "dropped_responses": dict(self.dropped_responses),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "get_response_calls": self.get_response_calls,
            "image_redirects": self.image_redirects,
            "webhooks": {
                "attempts": self.webhook_attempts,
                "delivered": self.webhooks_delivered,
                "failed": self.webhooks_failed,
            },
        }


@dataclass
class TaskRecord:
    """One accepted ``imageInference`` task and what became of it (kept so getResponse can answer for it)."""

    task: dict[str, Any]
    base_url: str
    items: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def task_uuid(self) -> str:
        """The task's taskUUID."""
        return str(self.task["taskUUID"])

    @property
    def waits_for_answer(self) -> bool:
        """Whether the submit call returns the results (sync delivery without a webhook) rather than an ack."""
        return self.task.get("deliveryMethod", "sync") == "sync" and not self.task.get("webhookURL")


@dataclass(frozen=True)
class ImageRecord:
    """What is needed to draw a generated image again when its URL is fetched."""

    prompt: str
    seed: int
    width: int
    height: int
    output_format: str
