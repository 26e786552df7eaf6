"""The wire models both halves speak: the published contract of the service."""

from strangler_bridge.contracts.common import BatchStatus, ErrorInfo, ErrorResponse, ItemStatus, Progress
from strangler_bridge.contracts.flags import FlagMode, FlagSet, Phase, PhaseFlag
from strangler_bridge.contracts.tts import (
    AudioFormat,
    TtsBatchCreate,
    TtsBatchStatus,
    TtsChunkIn,
    TtsChunkResult,
)

__all__ = [
    "AudioFormat",
    "BatchStatus",
    "ErrorInfo",
    "ErrorResponse",
    "FlagMode",
    "FlagSet",
    "ItemStatus",
    "Phase",
    "PhaseFlag",
    "Progress",
    "TtsBatchCreate",
    "TtsBatchStatus",
    "TtsChunkIn",
    "TtsChunkResult",
]
