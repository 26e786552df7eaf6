"""Status values, progress and the error body shared by every contract."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class BatchStatus(str, Enum):
    """Status of a batch or a pipeline job."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether nothing will change any more."""
        return self in (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED)


class ItemStatus(str, Enum):
    """Status of one item: a chunk, an image or a pipeline step."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        """Whether the item is finished, well or badly."""
        return self in (ItemStatus.COMPLETED, ItemStatus.FAILED, ItemStatus.CANCELLED, ItemStatus.SKIPPED)


class Progress(BaseModel):
    """Counts a caller can draw a progress bar from."""

    done: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    total: int = Field(0, ge=0)


class ErrorInfo(BaseModel):
    """A machine-readable code, a human message and, for bad input, the field at fault."""

    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """The one JSON shape of every error the service returns."""

    error: ErrorInfo


JsonObject = dict[str, Any]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)
