"""Phase 1 contracts: TTS batches."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from strangler_bridge.contracts.callbacks import CallbackState, CallbackUrl
from strangler_bridge.contracts.common import (
    BatchStatus,
    CostSaved,
    ItemStatus,
    JsonObject,
    Progress,
    ReusedCount,
    assign_indexes,
)

MAX_TEXT_CHARS = 20_000


class AudioFormat(str, Enum):
    """Audio container the TTS handler is asked for."""

    WAV = "wav"
    MP3 = "mp3"
    OGG = "ogg"
    FLAC = "flac"

    @property
    def content_type(self) -> str:
        """The MIME type served for this format."""
        return {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac"}[self.value]


class TtsChunkIn(BaseModel):
    """One text chunk to synthesise."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    index: int | None = Field(None, ge=0, le=100_000, description="Position in the script; defaults to order.")
    voice: str | None = Field(None, min_length=1, max_length=100, description="Overrides the batch voice.")


class TtsBatchCreate(BaseModel):
    """``POST /tts/batch`` body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "chunks": [{"text": "Once upon a time."}, {"text": "The end."}],
                    "voice": "narrator",
                    "format": "wav",
                    "video_id": "vid-42",
                    "metadata": {"script": "intro"},
                }
            ]
        },
    )

    chunks: list[TtsChunkIn] = Field(..., min_length=1)
    voice: str = Field("default", min_length=1, max_length=100)
    format: AudioFormat = AudioFormat.WAV
    video_id: str | None = Field(None, max_length=200, description="The legacy app's video id, for correlation.")
    metadata: JsonObject = Field(default_factory=dict, description="Free JSON, returned unchanged.")
    callback_url: CallbackUrl = None
    reuse: bool = Field(True, description="false: synthesise every chunk anew, even if identical audio exists.")

    @model_validator(mode="after")
    def _indexes(self) -> TtsBatchCreate:
        assign_indexes(self.chunks, "chunks")
        return self

    def indexed(self) -> list[tuple[int, TtsChunkIn]]:
        """``(index, chunk)`` pairs in index order."""
        return sorted(((chunk.index or 0, chunk) for chunk in self.chunks), key=lambda pair: pair[0])


class TtsChunkResult(BaseModel):
    """One chunk's state and, once completed, its audio."""

    index: int
    status: ItemStatus
    voice: str
    duration_s: float | None = None
    audio_url: str | None = Field(None, description="Path on the service to download the audio from.")
    content_type: str | None = None
    size_bytes: int | None = None
    error: str | None = None
    provider_job_id: str | None = None
    attempts: int = 0
    cost: float | None = Field(None, description="This chunk's share of its RunPod job's cost (USD), if priced.")
    reused: bool = Field(False, description="Completed from identical audio already made, without a RunPod call.")


class TtsBatchStatus(BaseModel):
    """``GET /tts/batch/{id}`` body."""

    id: str
    status: BatchStatus
    video_id: str | None = None
    format: AudioFormat = AudioFormat.WAV
    created_at: datetime
    updated_at: datetime
    progress: Progress
    chunks: list[TtsChunkResult]
    version: int = Field(0, description="Grows on every change; pass it as `since` when long-polling.")
    error: str | None = None
    metadata: JsonObject = Field(default_factory=dict)
    callback: CallbackState | None = Field(None, description="Delivery of the completion webhook, with callback_url.")
    cost_total: float | None = Field(None, description="Sum of the chunks' RunPod cost (USD), if priced.")
    reused: ReusedCount = 0
    cost_saved: CostSaved = None
