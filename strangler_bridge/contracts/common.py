"""Status values, progress and the error body shared by every contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, Field


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


#: A request's reuse choice: ``true`` reuses what identical input already made (an image only when its seed is
#: fixed), ``"prompt"`` also reuses unseeded images of the same prompt, ``false`` pays for every item.
ReuseChoice = Annotated[
    bool | Literal["prompt"],
    Field(
        description="true: reuse audio (and images with a fixed seed) already made from identical input, without "
        'a provider call; "prompt": reuse images of the same prompt even without a seed; false: every item is '
        "made anew."
    ),
]
#: How many items of a batch, step or job were completed from earlier identical work.
ReusedCount = Annotated[
    int, Field(description="Items completed from earlier identical work instead of a provider call.")
]
#: What those items cost when first made.
CostSaved = Annotated[
    float | None, Field(description="Provider cost (USD) the reused items had when first made: what reuse saved.")
]


class ErrorInfo(BaseModel):
    """A machine-readable code, a human message and, for bad input, the field at fault."""

    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """The one JSON shape of every error the service returns."""

    error: ErrorInfo


#: Limits of free-form JSON (``metadata``): deeper or larger values are a 422 naming the field, never a stack
#: overflow in a JSON encoder or a record too big to serve.
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 16_384


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests objects and arrays (a scalar is 0), found without recursion, so a hostile depth
    cannot exhaust the stack here; the walk stops once it passes :data:`MAX_JSON_DEPTH`."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending and deepest <= MAX_JSON_DEPTH:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def bounded_json(value: Any) -> Any:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` or over :data:`MAX_JSON_BYTES` once serialised."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    if len(json.dumps(value, default=str)) > MAX_JSON_BYTES:
        raise ValueError(f"is over {MAX_JSON_BYTES} bytes as JSON")
    return value


#: A free-form JSON object, bounded in depth and size.
JsonObject = Annotated[dict[str, Any], BeforeValidator(bounded_json)]


class Indexed(Protocol):
    """An input item with an optional position (a chunk, an image)."""

    index: int | None


def assign_indexes(items: Sequence[Indexed], field: str) -> None:
    """Check that indexes are given on every item or none, and unique; number them in order when absent."""
    given = [item.index for item in items if item.index is not None]
    if given and len(given) != len(items):
        raise ValueError(f"{field}: give an index on every item or on none")
    if len(set(given)) != len(given):
        raise ValueError(f"{field}: indexes must be unique")
    if not given:
        for position, item in enumerate(items):
            item.index = position


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_time(epoch: float) -> datetime:
    """Epoch seconds (as records store times) as the aware UTC datetime the contracts carry."""
    return datetime.fromtimestamp(epoch, timezone.utc)
