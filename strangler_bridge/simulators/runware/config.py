"""Knobs of the Runware simulator: one pydantic model, set at start (CLI, ``create_app``) and changed at run time
over ``PATCH /_sim/config``. The defaults behave like a healthy Runware account with no faults; tests turn faults
on and shrink delays.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Seconds: a fixed value, or ``[min, max]`` for a uniform random value per use.
Duration = float | tuple[float, float]
#: Statuses ``inject_statuses`` may answer with (each maps to a Runware error code in the app).
INJECTABLE_STATUSES = frozenset({400, 401, 402, 403, 404, 429, 500, 502, 503, 504})


def sample(rng: random.Random, duration: Duration) -> float:
    """A value of ``duration`` in seconds: itself, or uniform in ``[min, max]``."""
    return rng.uniform(*duration) if isinstance(duration, tuple) else duration


def parse_duration(text: str) -> Duration:
    """``"1.5"`` -> 1.5; ``"0.5,2"`` or ``"0.5-2"`` -> (0.5, 2.0) (for command-line options)."""
    for separator in (",", "-"):
        if separator in text:
            low, high = text.split(separator, 1)
            return _check_duration((float(low), float(high)))
    return _check_duration(float(text))


def _check_duration(value: Duration) -> Duration:
    low, high = value if isinstance(value, tuple) else (value, value)
    if low < 0 or high < low:
        raise ValueError(f"a duration is seconds >= 0, or [min, max] with 0 <= min <= max; got {value!r}")
    return value


class RunwareSimConfig(BaseModel):
    """Every knob of the Runware simulator (all faults off by default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- the account ----------------------------------------------------------------------------------------------
    api_key: str | None = Field(None, description="The key clients must send; None: any non-empty key.")
    seed: int | None = Field(None, description="Seed of every random choice (latency, faults, seeds, image ids).")
    cost_per_image: float = Field(0.0013, ge=0, description="USD charged per generated image (reported as cost).")
    public_url: str | None = Field(None, description="Base of imageURL; default: the URL the request was sent to.")
    image_max_side: int = Field(
        512, ge=16, le=2048, description="Images are drawn at the requested size scaled down to this longest side."
    )
    redirect_image_urls: bool = Field(
        False, description="An imageURL answers 302 to its own address (?direct=true) instead of the image."
    )
    # --- execution ------------------------------------------------------------------------------------------------
    latency_s: Duration = Field(0.0, description="Time each task takes: seconds or [min, max].")
    failure_rate: float = Field(0.0, ge=0, le=1, description="Probability that a task fails when it runs.")
    fail_next_tasks: int = Field(0, ge=0, description="The next N tasks that run fail (deterministic failures).")
    failure_code: str = Field("timeoutProvider", description="Error code of a failed task (e.g. inferenceError).")
    concurrency_cap: int | None = Field(
        None, ge=1, description="Account-wide cap of in-flight inference requests; over it: 429. None: no cap."
    )
    # --- injected HTTP faults -------------------------------------------------------------------------------------
    rate_limit_burst: int = Field(0, ge=0, description="The next N requests get 429.")
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="Probability that a request gets 429.")
    server_error_rate: float = Field(0.0, ge=0, le=1, description="Probability that a request gets 503.")
    inject_statuses: list[int] = Field(
        default_factory=list, description="Statuses answered to the next requests, one each, in order."
    )
    drop_next_responses: int = Field(0, ge=0, description="The next N inference requests lose their answer.")
    drop_mode: Literal["close", "hang", "lose"] = Field(
        "close",
        description="close: run and charge, then cut the connection; hang: run and charge, then hold the answer "
        "until the client gives up; lose: cut the connection before anything is recorded.",
    )
    drop_hang_s: float = Field(30.0, ge=0, description="Longest a 'hang' drop holds the answer.")
    # --- webhooks -------------------------------------------------------------------------------------------------
    webhook_wrap_data: bool = Field(False, description='POST {"data": [item]} instead of the flat item.')
    webhook_attempts: int = Field(8, ge=1, description="Delivery attempts per webhook before giving up.")
    webhook_initial_s: float = Field(0.25, ge=0, description="First retry delay; doubles after each failure.")
    webhook_max_s: float = Field(8.0, ge=0, description="Longest retry delay (before jitter).")
    webhook_timeout_s: float = Field(5.0, gt=0, description="An answer slower than this is a failed attempt.")

    _durations = field_validator("latency_s")(_check_duration)

    @field_validator("inject_statuses")
    @classmethod
    def _injectable(cls, value: list[int]) -> list[int]:
        bad = [status for status in value if status not in INJECTABLE_STATUSES]
        if bad:
            raise ValueError(f"injected statuses must be among {sorted(INJECTABLE_STATUSES)}, got {bad}")
        return value

    def merged(self, patch: dict[str, Any]) -> RunwareSimConfig:
        """A new, validated config with ``patch`` applied."""
        return RunwareSimConfig.model_validate({**dict(self), **patch})
