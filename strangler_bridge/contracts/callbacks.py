"""Completion webhooks: what the service POSTs to a request's ``callback_url`` when its record ends.

The body is a Standard Webhooks event (``type``, ``timestamp``, ``data``); ``data`` summarises the record, and its
``status_url`` (a path on the service, read with the API token) gives the whole status. A record that ends
again later (a job retried after failing) sends a new event with a new ``webhook-id``.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, BaseModel, Field

from strangler_bridge.contracts.common import BatchStatus

MAX_CALLBACK_URL = 2048


def _check_callback_url(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an absolute http or https URL")
    return url


#: A request's ``callback_url``: where the service POSTs the record's status once it ends.
CallbackUrl = Annotated[
    str | None,
    Field(
        max_length=MAX_CALLBACK_URL,
        description="http(s) URL the service POSTs a signed completion webhook to (Standard Webhooks) once the "
        "record ends: completed, failed or cancelled.",
    ),
    AfterValidator(_check_callback_url),
]


class CallbackObject(str, Enum):
    """What kind of record an event is about."""

    JOB = "job"
    TTS_BATCH = "tts_batch"
    IMAGE_BATCH = "image_batch"
    VIDEO_RENDER = "video_render"


class CallbackData(BaseModel):
    """The record's status when it ended."""

    id: str
    object: CallbackObject
    status: BatchStatus
    version: int = Field(description="The record's version when it ended.")
    video_id: str | None = None
    error: str | None = None
    status_url: str = Field(description="Path on the service of the record's whole status (needs the API token).")
    video_url: str | None = Field(None, description="Path of the video, for a completed job or render.")
    cost_total: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="The request's metadata, unchanged.")


class CallbackEvent(BaseModel):
    """The body of a completion webhook: ``type`` is ``<object>.<status>``, e.g. ``job.completed``."""

    type: str
    timestamp: datetime
    data: CallbackData


class DeliveryStatus(str, Enum):
    """Where the delivery of a record's completion webhook stands."""

    PENDING = "pending"  # not yet answered with a 2xx; retried on the schedule
    DELIVERED = "delivered"
    FAILED = "failed"  # the schedule ran out, or the URL is refused


class CallbackState(BaseModel):
    """The delivery of a record's latest completion webhook, as the status response shows it."""

    webhook_id: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
