"""Knobs of the RunPod simulator: one pydantic model, set at start (CLI, ``create_app``) and changed at run time
over ``PATCH /_sim/config``. Defaults are RunPod's documented values, so an untouched simulator behaves like
the real service; tests shrink the delays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from strangler_bridge.providers.runpod.models import RunPodStatus

#: RunPod operations, as named in rate limits, injected faults and counters.
Operation = Literal["run", "runsync", "status", "status-sync", "cancel", "retry", "purge-queue", "health"]
#: Seconds: a fixed value, or ``[min, max]`` for a uniform random value per use.
Duration = float | tuple[float, float]
#: A handler as runpod.serverless takes it: ``handler(job) -> result`` (sync, async or a generator).
Handler = Callable[[dict[str, Any]], Any]

WEEK_MS = 7 * 24 * 3600 * 1000
TERMINAL_STATES = [RunPodStatus.COMPLETED, RunPodStatus.FAILED, RunPodStatus.CANCELLED, RunPodStatus.TIMED_OUT]


def sample(rng: random.Random, duration: Duration) -> float:
    """A value of ``duration`` in seconds: itself, or uniform in ``[min, max]``."""
    if isinstance(duration, tuple):
        return rng.uniform(*duration)
    return duration


def _check_duration(value: Duration) -> Duration:
    low, high = value if isinstance(value, tuple) else (value, value)
    if low < 0 or high < low:
        raise ValueError(f"a duration is seconds >= 0, or [min, max] with 0 <= min <= max; got {value!r}")
    return value


def parse_duration(text: str) -> Duration:
    """``"1.5"`` -> 1.5, ``"0.5-2"`` or ``"0.5,2"`` -> (0.5, 2.0) (for command-line options)."""
    for separator in (",", "-"):
        if separator in text.strip().lstrip("-"):
            low, high = text.split(separator, 1)
            return _check_duration((float(low), float(high)))
    return _check_duration(float(text))


class _Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WebhookFaults(_Knobs):
    """How the simulator misdelivers webhooks (all off by default)."""

    lost_rate: float = Field(0.0, ge=0, le=1, description="Probability that a job's webhook is never sent.")
    duplicates: int = Field(0, ge=0, le=10, description="Extra copies of every webhook, each delivered on its own.")
    extra_delay_s: Duration = Field(0.0, description="Added before the first attempt: seconds or [min, max].")
    reorder: Literal["none", "reverse", "shuffle"] = Field(
        "none", description="Hold webhooks and release each batch in reverse or random order."
    )
    reorder_batch: int = Field(2, ge=2, description="How many held webhooks are released together.")
    empty_body_rate: float = Field(0.0, ge=0, le=1, description="Probability that a delivery has an empty body.")
    differing_duplicates: bool = Field(
        False,
        description="Each extra copy carries different audio (longer, with its own duration_s), as a re-run would.",
    )

    _durations = field_validator("extra_delay_s")(_check_duration)


class RunPodSimConfig(_Knobs):
    """Every knob of the RunPod simulator."""

    # --- the endpoint -------------------------------------------------------------------------------
    endpoint_id: str | None = Field(None, description="Only this endpoint id is served (404 otherwise); None: any.")
    api_key: str | None = Field(None, description="The key clients must send; None: any non-empty key.")
    seed: int | None = Field(None, description="Seed of the random choices (delays, failures, webhook faults).")
    # --- workers ------------------------------------------------------------------------------------
    workers: int = Field(4, ge=0, description="Jobs run at once; the rest stay IN_QUEUE (0 pauses the endpoint).")
    queue_delay_s: Duration = Field(0.0, description="Least time a job stays IN_QUEUE: seconds or [min, max].")
    execution_time_s: Duration = Field(0.2, description="Simulated GPU time before the handler runs.")
    failure_rate: float = Field(0.0, ge=0, le=1, description="Probability that an execution fails.")
    fail_first_executions: int = Field(0, ge=0, description="Each distinct input fails its first N executions.")
    # --- the handler --------------------------------------------------------------------------------
    handler: str | Handler | None = Field(
        None, description="A runpod.serverless handler, 'module:function' or 'path/file.py[:function]'; None: TTS."
    )
    output_mode: Literal["base64", "url", "s3"] = Field(
        "base64",
        description="How the built-in TTS returns audio (`s3`: uploaded with the job's s3Config, as `audio_key`; "
        "base64 when the job has none).",
    )
    lying_wav_header: bool = Field(
        False, description="The built-in TTS writes WAVs whose header claims ~4 GB of samples (a lying header)."
    )
    public_url: str | None = Field(None, description="Base of audio URLs; default: the URL the job was sent to.")
    aggregate_stream: bool = Field(True, description="A generator handler's output is the list of its yields.")
    max_output_bytes: int = Field(20_000_000, gt=0, description="Larger results complete with no output.")
    partial_outputs: int = Field(
        0, ge=0, description="The next N outputs of two or more chunks each lack their last chunk (a faulty handler)."
    )
    # --- RunPod's limits and policies ---------------------------------------------------------------
    max_run_bytes: int = Field(10_000_000, gt=0, description="Largest /run body (413 above).")
    max_runsync_bytes: int = Field(20_000_000, gt=0, description="Largest /runsync body (413 above).")
    runsync_wait_ms: int = Field(90_000, gt=0, description="How long /runsync holds without ?wait=.")
    runsync_wait_min_ms: int = Field(1000, gt=0, description="?wait= is clamped to at least this.")
    runsync_wait_max_ms: int = Field(300_000, gt=0, description="?wait= is clamped to at most this.")
    execution_timeout_ms: int = Field(600_000, gt=0, description="Endpoint execution timeout (policy overrides).")
    ttl_ms: int = Field(86_400_000, gt=0, description="Default job TTL from submission (policy overrides).")
    min_execution_timeout_ms: int = Field(5000, gt=0, description="Smallest policy.executionTimeout accepted.")
    min_ttl_ms: int = Field(10_000, gt=0, description="Smallest policy.ttl accepted.")
    ttl_expiry: Literal["delete", "timed_out"] = Field(
        "delete", description="At TTL a job is deleted (404) or, if unfinished, becomes TIMED_OUT."
    )
    execution_timeout_status: Literal["TIMED_OUT", "FAILED"] = Field(
        "TIMED_OUT", description="State of a job that ran past its execution timeout."
    )
    run_retention_s: float = Field(1800.0, gt=0, description="How long a finished /run job stays readable.")
    runsync_retention_s: float = Field(60.0, gt=0, description="How long a finished /runsync job stays readable.")
    # --- rate limits and injected HTTP faults -------------------------------------------------------
    rate_limits: dict[Operation, int] = Field(
        default_factory=dict, description='Requests per window per operation, e.g. {"run": 1000}; 429 above.'
    )
    rate_window_s: float = Field(10.0, gt=0, description="Sliding window of the rate limits.")
    http_faults: dict[Operation, list[int]] = Field(
        default_factory=dict,
        description='Statuses answered to the next requests, consumed in order, e.g. {"run": [503, 429]}.',
    )
    run_response_delay_s: float = Field(0.0, ge=0, description="Delay of the /run answer after the job exists.")
    # --- webhooks -----------------------------------------------------------------------------------
    webhook_states: list[RunPodStatus] = Field(
        default_factory=lambda: list(TERMINAL_STATES), description="Terminal states that fire the webhook."
    )
    webhook_retries: int = Field(2, ge=0, description="Attempts after a failed first one.")
    webhook_retry_delay_s: float = Field(10.0, ge=0, description="Delay between attempts.")
    webhook_timeout_s: float = Field(10.0, gt=0, description="An answer slower than this is a failed attempt.")
    webhook_strict_200: bool = Field(False, description="Only 200 is success (default: any 2xx).")
    webhook_faults: WebhookFaults = Field(default_factory=WebhookFaults)

    _durations = field_validator("queue_delay_s", "execution_time_s")(_check_duration)

    @field_validator("http_faults")
    @classmethod
    def _statuses(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        for statuses in value.values():
            if any(not 400 <= status <= 599 for status in statuses):
                raise ValueError(f"injected statuses must be 4xx or 5xx, got {statuses}")
        return value

    @field_validator("webhook_states")
    @classmethod
    def _terminal_only(cls, value: list[RunPodStatus]) -> list[RunPodStatus]:
        if any(not state.terminal for state in value):
            raise ValueError("webhooks fire only for terminal states")
        return value

    @field_serializer("api_key")
    def _masked(self, key: str | None) -> str | None:
        return None if key is None else "***"

    @field_serializer("handler")
    def _handler_name(self, handler: str | Handler | None) -> str | None:
        if handler is None or isinstance(handler, str):
            return handler
        return f"{getattr(handler, '__module__', '?')}:{getattr(handler, '__qualname__', repr(handler))}"

    def merged(self, patch: dict[str, Any]) -> RunPodSimConfig:
        """A new config with ``patch`` applied; nested objects and maps are merged one level deep."""
        values = dict(self)
        for key, new in patch.items():
            current = values.get(key)
            if isinstance(current, BaseModel) and isinstance(new, dict):
                values[key] = {**current.model_dump(), **new}
            elif isinstance(current, dict) and isinstance(new, dict):
                values[key] = {**current, **new}
            else:
                values[key] = new
        return RunPodSimConfig.model_validate(values)
