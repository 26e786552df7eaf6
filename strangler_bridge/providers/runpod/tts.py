"""The TTS handler contract spoken over RunPod (DESIGN.md section 5), shared by the service and the simulator.

Input:  ``{"chunks": [{"index", "text", "voice"}], "format"}``
Output: ``{"chunks": [{"index", "audio_base64" | "audio_url" | "audio_key", "duration_s"}]}``

With an ``s3Config`` in the job (``STRANGLER_RUNPOD_S3_UPLOAD``), a handler may upload each chunk to that bucket
below ``s3Config.objectPath`` and return the object's name as ``audio_key``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from strangler_bridge.errors import ProviderRejected

PROVIDER = "runpod"


def tts_input(chunks: list[tuple[int, str, str]], fmt: str) -> dict[str, Any]:
    """The job input for ``(index, text, voice)`` chunks in audio format ``fmt``."""
    return {
        "chunks": [{"index": index, "text": text, "voice": voice} for index, text, voice in chunks],
        "format": fmt,
    }


class TtsChunkOutput(BaseModel):
    """One synthesised chunk in a handler's output: inline base64 audio or a URL to fetch it from."""

    model_config = ConfigDict(extra="ignore")

    index: int = Field(..., ge=0)
    audio_base64: str | None = None
    audio_url: str | None = None
    #: The object the handler uploaded to our bucket (``s3Config``), a name below the path it was given.
    audio_key: str | None = Field(None, max_length=1024)
    duration_s: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _has_audio(self) -> TtsChunkOutput:
        if not self.audio_base64 and not self.audio_url and not self.audio_key:
            raise ValueError("a chunk needs audio_base64, audio_url or audio_key")
        return self


def parse_tts_output(output: Any) -> list[TtsChunkOutput]:
    """The chunks of a handler's output ``{"chunks": [...]}``, in index order.

    Raises :class:`ProviderRejected` naming what is wrong (not an object, no ``chunks`` list, a chunk
    without an index or audio, a repeated index).
    """
    if not isinstance(output, dict) or not isinstance(output.get("chunks"), list):
        shape = type(output).__name__ if not isinstance(output, dict) else f"object with keys {sorted(output)}"
        raise ProviderRejected(f'TTS output must be an object with a "chunks" list, got {shape}', provider=PROVIDER)
    parsed: list[TtsChunkOutput] = []
    for position, chunk in enumerate(output["chunks"]):
        try:
            parsed.append(TtsChunkOutput.model_validate(chunk))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'chunk'}: {e['msg']}" for e in exc.errors())
            raise ProviderRejected(f"TTS output chunks[{position}] is invalid: {problems}", provider=PROVIDER) from None
    indexes = [chunk.index for chunk in parsed]
    if len(set(indexes)) != len(indexes):
        raise ProviderRejected(f"TTS output repeats a chunk index: {indexes}", provider=PROVIDER)
    return sorted(parsed, key=lambda chunk: chunk.index)
