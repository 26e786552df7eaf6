"""The video step on its own (``POST /video/render``): the service drives the Express render for Flask."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from strangler_bridge.contracts.callbacks import CallbackState, CallbackUrl
from strangler_bridge.contracts.common import BatchStatus, JsonObject, Progress
from strangler_bridge.contracts.jobs import VideoOptions


class RenderSegmentIn(BaseModel):
    """One segment: its time span and where the video service fetches its audio and picture."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(..., ge=0, le=100_000)
    start_s: float = Field(..., ge=0)
    end_s: float = Field(..., ge=0)
    audio_url: str = Field(..., pattern=r"^https?://", max_length=4000)
    image_url: str = Field(..., pattern=r"^https?://", max_length=4000)
    text: str | None = Field(None, max_length=20_000)

    @field_validator("end_s")
    @classmethod
    def _not_before_start(cls, end_s: float, info: ValidationInfo) -> float:
        # The video service's contract refuses it too: caught here, it is a 422 instead of a render that cannot start.
        if end_s < info.data.get("start_s", 0.0):
            raise ValueError("must not be before start_s")
        return end_s


class VideoRenderCreate(BaseModel):
    """``POST /video/render`` body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "segments": [
                        {
                            "index": 0,
                            "start_s": 0.0,
                            "end_s": 2.4,
                            "audio_url": "https://legacy.example/media/vid-42/audio/0.wav",
                            "image_url": "https://legacy.example/media/vid-42/images/0.png",
                            "text": "Once upon a time.",
                        }
                    ],
                    "options": {"width": 1280, "height": 720, "fps": 25},
                    "video_id": "vid-42",
                }
            ]
        },
    )

    segments: list[RenderSegmentIn] = Field(..., min_length=1)
    options: VideoOptions = Field(default_factory=VideoOptions)
    video_id: str | None = Field(None, max_length=200)
    metadata: JsonObject = Field(default_factory=dict)
    callback_url: CallbackUrl = None

    @model_validator(mode="after")
    def _unique(self) -> VideoRenderCreate:
        if len({s.index for s in self.segments}) != len(self.segments):
            raise ValueError("segments: indexes must be unique")
        return self


class VideoRenderStatus(BaseModel):
    """``GET /video/render/{id}`` body."""

    id: str
    status: BatchStatus
    video_id: str | None = None
    created_at: datetime
    updated_at: datetime
    progress: Progress
    video_url: str | None = Field(None, description="Path on the service to download the video from.")
    size_bytes: int | None = None
    error: str | None = None
    attempts: int = 0
    version: int = 0
    metadata: JsonObject = Field(default_factory=dict)
    callback: CallbackState | None = Field(None, description="Delivery of the completion webhook, with callback_url.")
