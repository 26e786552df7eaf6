"""The video service's wire models (the default contract of :mod:`strangler_bridge.providers.video.client`)."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from strangler_bridge.errors import ProviderError

PROVIDER = "video"
RENDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class RenderSegment(BaseModel):
    """One segment of the video: an image shown while its audio plays."""

    index: int = Field(..., ge=0)
    start_s: float = Field(..., ge=0)
    end_s: float = Field(..., ge=0)
    audio_url: str = Field(..., min_length=1)
    image_url: str = Field(..., min_length=1)
    text: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RenderSegment:
        if self.end_s < self.start_s:
            raise ValueError("end_s must not be before start_s")
        return self


class RenderOptions(BaseModel):
    """Output picture size, frame rate and container."""

    width: int = Field(1280, ge=16, le=7680)
    height: int = Field(720, ge=16, le=4320)
    fps: int = Field(25, ge=1, le=120)
    format: Literal["mp4"] = "mp4"


class RenderRequest(BaseModel):
    """``POST /renders`` body; ``render_id`` is the caller's idempotency key."""

    render_id: str = Field(..., pattern=RENDER_ID_PATTERN)
    segments: list[RenderSegment] = Field(..., min_length=1)
    options: RenderOptions = Field(default_factory=RenderOptions)
    callback_url: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_indexes(self) -> RenderRequest:
        if len({s.index for s in self.segments}) != len(self.segments):
            raise ValueError("segment indexes must be unique")
        return self


class RenderState(str, Enum):
    """Where a render is."""

    QUEUED = "queued"
    RENDERING = "rendering"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether nothing will change any more."""
        return self in (RenderState.COMPLETED, RenderState.FAILED, RenderState.CANCELLED)


class RenderStatus(BaseModel):
    """What the service says about one render (also the callback body)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: RenderState
    progress: float = Field(0.0, ge=0, le=1)
    video_url: str | None = None
    duration_s: float | None = None
    error: str | None = None
    placeholder: bool = False
    cost: float | None = Field(None, ge=0, description="What the render cost (USD), if the service reports it.")

    @classmethod
    def parse(cls, data: Any) -> RenderStatus:
        """Validate a status (or callback) body; a malformed one raises :class:`ProviderError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ProviderError(f"unexpected render status body: {exc.errors()[0]['msg']}", provider=PROVIDER) from None
