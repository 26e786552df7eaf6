"""Phase 2 contracts: image batches."""

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
from strangler_bridge.providers.runware.models import AIR_PATTERN, MAX_SEED

#: Runware's prompt length limits (positivePrompt and negativePrompt), with the batch style appended.
MIN_PROMPT_CHARS, MAX_PROMPT_CHARS = 2, 3000


class ImageFormat(str, Enum):
    """Output image format (Runware's ``outputFormat``)."""

    PNG = "PNG"
    JPG = "JPG"
    WEBP = "WEBP"

    @property
    def content_type(self) -> str:
        """The MIME type served for this format."""
        return {"PNG": "image/png", "JPG": "image/jpeg", "WEBP": "image/webp"}[self.value]

    @property
    def extension(self) -> str:
        """File extension."""
        return self.value.lower()


def styled(prompt: str, style: str | None) -> str:
    """The prompt sent to the provider: ``prompt`` plus the style, if any."""
    return f"{prompt}, {style}" if style else prompt


def check_styled_prompts(style: str | None, prompts: dict[str, str]) -> str | None:
    """Refuse a style that makes any of ``prompts`` (field name -> prompt) longer than Runware takes."""
    for name, prompt in prompts.items():
        length = len(styled(prompt, style))
        if length > MAX_PROMPT_CHARS:
            raise ValueError(
                f"with this style the prompt of {name} is {length} characters; Runware takes at most {MAX_PROMPT_CHARS}"
            )
    return style


def _dimension(value: int) -> int:
    if not 128 <= value <= 2048 or value % 64:
        raise ValueError("must be between 128 and 2048 and a multiple of 64")
    return value


class ImageIn(BaseModel):
    """One image to generate (one segment's picture)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=MIN_PROMPT_CHARS, max_length=MAX_PROMPT_CHARS)
    index: int | None = Field(None, ge=0, le=100_000, description="Position in the script; defaults to order.")
    negative_prompt: str | None = Field(None, min_length=MIN_PROMPT_CHARS, max_length=MAX_PROMPT_CHARS)
    seed: int | None = Field(None, ge=1, le=MAX_SEED, description="Runware's range: 1 to 2^63 - 1.")


class ImageBatchCreate(BaseModel):
    """``POST /imagegen/batch`` body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "images": [{"prompt": "a lighthouse at dawn"}, {"prompt": "a storm over the sea"}],
                    "width": 1024,
                    "height": 576,
                    "style": "watercolour",
                    "video_id": "vid-42",
                }
            ]
        },
    )

    images: list[ImageIn] = Field(..., min_length=1)
    width: int = 1024
    height: int = 1024
    model: str | None = Field(None, pattern=AIR_PATTERN, description="Runware AIR id.")
    style: str | None = Field(None, max_length=500, description="Appended to every prompt.")
    format: ImageFormat = ImageFormat.PNG
    video_id: str | None = Field(None, max_length=200)
    metadata: JsonObject = Field(default_factory=dict)
    callback_url: CallbackUrl = None
    reuse: ReuseChoice = True

    _dimensions = field_validator("width", "height")(_dimension)

    @field_validator("style")
    @classmethod
    def _style_fits(cls, style: str | None, info: ValidationInfo) -> str | None:
        images: list[ImageIn] = info.data.get("images", [])
        return check_styled_prompts(style, {f"images.{n}": image.prompt for n, image in enumerate(images)})

    @model_validator(mode="after")
    def _indexes(self) -> ImageBatchCreate:
        assign_indexes(self.images, "images")
        return self

    def prompt_for(self, image: ImageIn) -> str:
        """The prompt sent to the provider: the image's prompt plus the batch style."""
        return styled(image.prompt, self.style)


class ImageResult(BaseModel):
    """One image's state and, once completed, where to download it."""

    index: int
    status: ItemStatus
    image_url: str | None = Field(None, description="Path on the service to download the image from.")
    content_type: str | None = None
    size_bytes: int | None = None
    cost: float | None = None
    error: str | None = None
    provider_task_uuid: str | None = None
    attempts: int = 0
    reused: bool = Field(False, description="Completed from an identical image already made, without a Runware call.")


class ImageBatchStatus(BaseModel):
    """``GET /imagegen/batch/{id}`` body."""

    id: str
    status: BatchStatus
    video_id: str | None = None
    created_at: datetime
    updated_at: datetime
    progress: Progress
    images: list[ImageResult]
    cost_total: float | None = Field(None, description="Sum of the provider's reported cost (USD).")
    version: int = 0
    error: str | None = None
    metadata: JsonObject = Field(default_factory=dict)
    callback: CallbackState | None = Field(None, description="Delivery of the completion webhook, with callback_url.")
    reused: ReusedCount = 0
    cost_saved: CostSaved = None
