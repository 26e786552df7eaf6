"""Listings of recent jobs and batches (``GET /jobs``, ``GET /batches``) for operators and tools."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from strangler_bridge.contracts.callbacks import CallbackState
from strangler_bridge.contracts.common import BatchStatus, CostSaved, Progress


class RecentItem(BaseModel):
    """One line of ``GET /jobs`` or ``GET /batches``: enough to list and link, read the full status by id."""

    id: str
    kind: str = Field(description="job, tts, img or vid")
    status: BatchStatus
    video_id: str | None = None
    created_at: datetime
    updated_at: datetime
    progress: Progress
    error: str | None = None
    reused: int = Field(0, description="Batches: items completed from earlier identical work (a job's: its status).")
    cost_saved: CostSaved = None
    callback: CallbackState | None = Field(None, description="Delivery of the completion webhook, with callback_url.")


class RecentList(BaseModel):
    """Newest first."""

    items: list[RecentItem]
