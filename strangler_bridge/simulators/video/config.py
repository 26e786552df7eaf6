"""The video simulator's knobs: set from CLI options at start and changed at runtime with ``PATCH /_sim/config``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _ordered_pair(value: tuple[float, float] | None, name: str) -> tuple[float, float] | None:
    if value is not None and not 0 <= value[0] <= value[1]:
        raise ValueError(f"{name} must be [low, high] with 0 <= low <= high")
    return value


class VideoSimConfig(BaseModel):
    """Every knob of the video service simulator, with defaults that behave like a healthy service."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- latency and failures ---------------------------------------------------------------------
    latency_s: float | tuple[float, float] = Field(
        0.0, description="Extra render latency in seconds: a number, or [min, max] drawn uniformly per render."
    )
    response_delay_s: float = Field(
        0.0, ge=0, description="Hold back each API answer (not /_sim) this long, after the request was handled."
    )
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of renders that end 'failed'.")
    fail_first_renders: int = Field(0, ge=0, description="The first N renders executed fail.")
    inject_next: int = Field(0, ge=0, description="The next N API requests are answered with inject_status.")
    inject_status: int = Field(503, ge=400, le=599, description="Status of injected failures (429, 500, 503...).")
    # --- downtime ---------------------------------------------------------------------------------
    down: bool = Field(False, description="Answer 503 to everything but /_sim/* while true.")
    down_window_s: tuple[float, float] | None = Field(
        None, description="[a, b]: down from a to b seconds after this knob was set (at start or by PATCH)."
    )
    # --- rendering --------------------------------------------------------------------------------
    force_placeholder: bool = Field(False, description="Write the labelled placeholder even if ffmpeg is available.")
    redirect_downloads: bool = Field(
        False, description="The video route answers 302 to the file's own address (?direct=true) instead of the file."
    )
    concurrency: int = Field(2, ge=1, le=64, description="Renders encoding at once; the rest stay 'queued'.")
    render_timeout_s: float = Field(300.0, gt=0, description="Timeout of one ffmpeg run.")
    max_segments: int = Field(300, ge=1, le=2000, description="Most segments in one render (more is a 422).")
    # --- fetching the segments' audio and images ----------------------------------------------------
    fetch_timeout_s: float = Field(30.0, gt=0, description="Timeout of each asset download.")
    fetch_headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every asset download (e.g. an Authorization header)."
    )
    max_asset_bytes: int = Field(200_000_000, gt=0, description="Largest audio or image file accepted.")
    # --- callbacks --------------------------------------------------------------------------------
    callback_lost_rate: float = Field(0.0, ge=0, le=1, description="Share of callbacks silently never sent.")
    callback_duplicate_rate: float = Field(0.0, ge=0, le=1, description="Share of callbacks delivered twice.")
    callback_attempts: int = Field(3, ge=1, le=10, description="POSTs per callback before giving up (non-2xx).")
    callback_backoff_s: float = Field(0.2, ge=0, le=30, description="First wait between callback attempts (doubles).")
    # --- auth, addressing, randomness ---------------------------------------------------------------
    token: str | None = Field(None, description="If set, /renders routes need 'Authorization: Bearer <token>'.")
    public_url: str | None = Field(None, description="Base of the video_url it reports (default: the request's).")
    seed: int | None = Field(None, description="Seed of every random choice (latency, failures, callback faults).")
    work_dir: Path | None = Field(None, description="Where inputs and videos are kept (default: a temp dir).")

    @field_validator("latency_s")
    @classmethod
    def _latency(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        if isinstance(value, tuple):
            return _ordered_pair(value, "latency_s") or value
        if value < 0:
            raise ValueError("latency_s must be >= 0")
        return value

    @field_validator("down_window_s")
    @classmethod
    def _window(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        return _ordered_pair(value, "down_window_s")


def parse_range(text: str) -> float | tuple[float, float]:
    """``"0.5"`` -> 0.5 and ``"0.2,1.0"`` -> (0.2, 1.0), for CLI options."""
    parts = [float(part) for part in text.split(",")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"expected a number or 'low,high', got {text!r}")
