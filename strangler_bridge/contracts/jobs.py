"""Phase 3 contracts: whole pipeline jobs (``tts -> segments -> imagegen -> video``)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from strangler_bridge.contracts.callbacks import CallbackState, CallbackUrl
from strangler_bridge.contracts.common import (
    BatchStatus,
    CostSaved,
    ItemStatus,
    JsonObject,
    Progress,
    ReuseChoice,
    ReusedCount,
    assign_indexes,
)
from strangler_bridge.contracts.images import (
    MAX_PROMPT_CHARS,
    MIN_PROMPT_CHARS,
    ImageFormat,
    _dimension,
    check_styled_prompts,
)
from strangler_bridge.contracts.tts import MAX_TEXT_CHARS
from strangler_bridge.providers.runware.models import AIR_PATTERN, MAX_SEED


class StepName(str, Enum):
    """The pipeline's steps, in order."""

    TTS = "tts"
    SEGMENTS = "segments"
    IMAGEGEN = "imagegen"
    VIDEO = "video"


STEP_ORDER = (StepName.TTS, StepName.SEGMENTS, StepName.IMAGEGEN, StepName.VIDEO)


class JobChunk(BaseModel):
    """One chunk of the script: narrated text and, optionally, the prompt of its picture."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    index: int | None = Field(None, ge=0, le=100_000)
    voice: str | None = Field(None, min_length=1, max_length=100)
    image_prompt: str | None = Field(
        None, min_length=MIN_PROMPT_CHARS, max_length=MAX_PROMPT_CHARS, description="Defaults to the text."
    )


class ImageOptions(BaseModel):
    """How the pictures are made."""

    model_config = ConfigDict(extra="forbid")

    width: int = 1024
    height: int = 576
    model: str | None = Field(None, pattern=AIR_PATTERN, description="Runware AIR id.")
    format: ImageFormat = ImageFormat.PNG
    seed: int | None = Field(
        None, ge=1, le=MAX_SEED, description="One seed for every picture: the same prompt then makes the same image."
    )

    _dimensions = field_validator("width", "height")(_dimension)


class VideoOptions(BaseModel):
    """How the video is rendered."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(1280, ge=16, le=7680)
    height: int = Field(720, ge=16, le=4320)
    fps: int = Field(25, ge=1, le=120)


class JobCreate(BaseModel):
    """``POST /jobs`` body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "chunks": [
                        {"text": "The lighthouse keeper woke before dawn.", "image_prompt": "a lighthouse at dawn"},
                        {"text": "A storm was coming."},
                    ],
                    "voice": "narrator",
                    "image_style": "watercolour",
                    "video_id": "vid-42",
                }
            ]
        },
    )

    chunks: list[JobChunk] = Field(..., min_length=1)
    voice: str = Field("default", min_length=1, max_length=100)
    image_style: str | None = Field(None, max_length=500)
    images: ImageOptions = Field(default_factory=ImageOptions)
    video: VideoOptions | None = Field(
        default_factory=VideoOptions,
        description="How the video is rendered; null: no render, the job ends once its images are made.",
    )
    video_id: str | None = Field(None, max_length=200)
    metadata: JsonObject = Field(default_factory=dict)
    callback_url: CallbackUrl = None
    reuse: ReuseChoice = True

    @field_validator("image_style")
    @classmethod
    def _style_fits(cls, style: str | None, info: ValidationInfo) -> str | None:
        # Prompts taken from the text are shortened to fit; a prompt the client wrote is never cut.
        chunks: list[JobChunk] = info.data.get("chunks", [])
        given = {f"chunks.{n}.image_prompt": c.image_prompt for n, c in enumerate(chunks) if c.image_prompt}
        return check_styled_prompts(style, given)

    @model_validator(mode="after")
    def _indexes(self) -> JobCreate:
        assign_indexes(self.chunks, "chunks")
        return self


class StepStatus(BaseModel):
    """One step of a job."""

    name: StepName
    status: ItemStatus = ItemStatus.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    progress: Progress = Field(default_factory=Progress)
    batch_id: str | None = None
    provider_ids: list[str] = Field(default_factory=list)
    cost: float | None = None
    error: str | None = None
    reused: ReusedCount = 0
    cost_saved: CostSaved = None


class JobFile(BaseModel):
    """One chunk's audio or one image of a job, with a link once the file exists."""

    index: int
    status: ItemStatus
    url: str | None = Field(None, description="Signed, expiring path on the service; no token needed.")
    attempts: int = Field(0, description="Provider submissions of the work that made it (more than 1: retried).")
    error: str | None = None


class JobFiles(BaseModel):
    """``GET /jobs/{id}/files``: signed links to what the job has produced so far."""

    id: str
    segments: str | None = Field(None, description="Signed path of segments.json, once stored.")
    video: str | None = Field(None, description="Signed path of the video, once rendered.")
    audio: list[JobFile] = Field(default_factory=list, description="One per chunk, in chunk order.")
    images: list[JobFile] = Field(default_factory=list, description="One per chunk, in chunk order.")


class JobStatus(BaseModel):
    """``GET /jobs/{id}`` body."""

    id: str
    status: BatchStatus
    video_id: str | None = None
    created_at: datetime
    updated_at: datetime
    current_step: StepName | None = None
    steps: list[StepStatus]
    progress: Progress = Field(description="Steps done, failed and total.")
    segments_url: str | None = None
    video_url: str | None = None
    cost_total: float | None = None
    version: int = 0
    error: str | None = None
    metadata: JsonObject = Field(default_factory=dict)
    callback: CallbackState | None = Field(None, description="Delivery of the completion webhook, with callback_url.")
    reused: ReusedCount = 0
    cost_saved: CostSaved = None
