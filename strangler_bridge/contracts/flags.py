"""Wire models of the per-phase feature flags."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Phase(str, Enum):
    """A pipeline phase that can be moved to the service on its own."""

    TTS = "tts"
    IMAGEGEN = "imagegen"
    VIDEO = "video"
    JOBS = "jobs"


class FlagMode(str, Enum):
    """Who answers for a phase: the legacy code, the legacy code with the service in the shadow, or the service."""

    LEGACY = "legacy"
    SHADOW = "shadow"
    FASTAPI = "fastapi"


class PhaseFlag(BaseModel):
    """How one phase is routed."""

    model_config = ConfigDict(extra="forbid")

    mode: FlagMode = FlagMode.LEGACY
    percent: int = Field(100, ge=0, le=100, description="Share of videos (by stable hash) that get `mode`.")
    allow: list[str] = Field(default_factory=list, description="Video ids that always get `mode`.")
    fallback: bool = Field(True, description="On a service failure, run the legacy code instead of failing.")


class FlagSet(BaseModel):
    """Every phase's flag, as served by ``GET /flags``."""

    flags: dict[Phase, PhaseFlag]
    version: int = 0
