"""All configuration in one pydantic-settings class.

Every field is read from ``STRANGLER_<NAME>`` in the environment; the Flask half passes the same
names from ``app.config`` (see :meth:`Settings.from_mapping`). Missing or malformed values raise
:class:`~strangler_bridge.errors.ConfigError` naming the variable, never a pydantic traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, AnyUrl, Field, SecretStr, TypeAdapter, UrlConstraints, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from strangler_bridge.callbacks import check_secret
from strangler_bridge.contracts.flags import Phase, PhaseFlag
from strangler_bridge.errors import ConfigError

ENV_PREFIX = "STRANGLER_"
#: What the service calls; production refuses to start the API or a worker without them.
PROVIDER_SETTINGS = ("runpod_endpoint_url", "runpod_api_key", "runware_api_key", "video_url")

CommaList = Annotated[list[str], NoDecode]
SecretList = Annotated[list[SecretStr], NoDecode]
FloatList = Annotated[list[float], NoDecode]
#: The default retry delays of a completion webhook: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27.6 hours in
#: all, the schedule Standard Webhooks' reference implementation uses).
CALLBACK_RETRY_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
#: What redis-py's ``from_url`` accepts (the embedded Redis is a ``unix://`` socket).
RedisUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["redis", "rediss", "unix"])]
ArtifactsUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["file", "s3"])]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _url_check(kind: Any, example: str) -> Any:
    """A validator that parses a URL setting (keeping it a plain string) and names an example when it fails."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        try:
            TypeAdapter(kind).validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{value!r} is not a valid URL ({exc.errors()[0]['msg']}), e.g. {example}") from None
        return value

    return check


class Settings(BaseSettings):
    """Settings shared by the service, its workers, the CLI and the Flask extension."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    env: Literal["dev", "production"] = Field(
        "dev", description="`production`: the API and workers also refuse to start without the provider settings."
    )
    # --- state and queues -------------------------------------------------------------------------
    redis_url: str | None = Field(None, description="Redis for state, queues and flags, e.g. redis://127.0.0.1:6379/0.")
    redis_prefix: str = Field("sb", description="Prefix of every Redis key the service writes.")
    record_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="Seconds finished records are kept.")
    artifacts_dir: Path = Field(Path("artifacts"), description="Directory of the local artifact store.")
    artifacts_url: str | None = Field(
        None,
        description="Where artifacts live: `file:///path` or `s3://bucket/prefix` (unset: STRANGLER_ARTIFACTS_DIR).",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, R2, ...); unset: AWS. Credentials: the AWS chain."
    )
    s3_public_endpoint_url: str | None = Field(
        None, description="Endpoint named in presigned URLs, when clients reach the store elsewhere (unset: the same)."
    )
    artifacts_sweep_s: float = Field(
        3600.0,
        ge=0,
        description="How often one worker removes artifacts no record names any more (0: never, e.g. with an S3 "
        "lifecycle rule).",
    )
    artifacts_delivery: Literal["redirect", "proxy"] = Field(
        "redirect",
        description="With S3: `redirect` sends downloads and the video service to presigned URLs; `proxy` streams "
        "them through the API.",
    )
    # --- the service's own HTTP surface -----------------------------------------------------------
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL at which providers reach the service's webhooks."
    )
    api_tokens: SecretList = Field(
        default_factory=list,
        description="Comma-separated bearer tokens the API accepts (rotation: list both).",
    )
    webhook_secret: SecretStr | None = Field(None, description="HMAC key signing webhook URLs.")
    webhook_token_ttl_s: int = Field(2 * 24 * 3600, gt=0, description="Lifetime of a signed webhook URL.")
    max_body_bytes: int = Field(2_000_000, gt=0, description="Largest request body the API reads.")
    max_chunks: int = Field(500, gt=0, description="Most chunks (or images) in one batch.")
    max_text_chars: int = Field(5000, gt=0, description="Longest text of one chunk or prompt.")
    # --- RunPod (phase 1) -------------------------------------------------------------------------
    runpod_endpoint_url: str | None = Field(
        None, description="RunPod endpoint base URL, e.g. https://api.runpod.ai/v2/<endpoint-id>."
    )
    runpod_api_key: SecretStr | None = Field(None, description="RunPod API key (sent as a Bearer token).")
    tts_group_size: int = Field(5, gt=0, description="Chunks sent to RunPod in one job.")
    runpod_s3_upload: bool = Field(
        False,
        description="With an S3 store: send RunPod the bucket and its keys (s3Config), so a handler may upload its "
        "audio there and return `audio_key` instead of base64.",
    )
    # --- Runware (phase 2) ------------------------------------------------------------------------
    runware_url: str = Field("https://api.runware.ai/v1", description="Runware REST endpoint.")
    runware_api_key: SecretStr | None = Field(None, description="Runware API key.")
    runware_concurrency: int = Field(4, gt=0, description="Cluster-wide limit of in-flight Runware tasks.")
    runware_model: str = Field("runware:100@1", description="Default Runware model (AIR id).")
    runware_lease_s: float = Field(
        15.0, gt=0, description="Lease of a limiter slot; a killed worker's slots free up after this."
    )
    # --- reuse and cost ---------------------------------------------------------------------------
    reuse: bool = Field(
        True,
        description="Reuse audio and images already made from identical input instead of paying again "
        "(`false`: every item goes to its provider).",
    )
    runpod_usd_per_s: float | None = Field(
        None,
        ge=0,
        description="Price of one second of the RunPod endpoint's worker (USD), to record TTS cost "
        "from each job's executionTime.",
    )
    # --- video service (phase 3) ------------------------------------------------------------------
    video_url: str | None = Field(None, description="Base URL of the Express video service.")
    segments_builder: str | None = Field(
        None, description="`module:function` building segments.json from TTS durations (default: one per chunk)."
    )
    # --- provider calls and reconciliation --------------------------------------------------------
    http_timeout_s: float = Field(10.0, gt=0, description="Timeout of each outbound HTTP call.")
    provider_attempts: int = Field(
        3, gt=0, description="Attempts per item (submissions and recoveries of its result) before it fails."
    )
    reconcile_after_s: float = Field(
        30.0, gt=0, description="Seconds after a submission before the provider is polled for it."
    )
    reconcile_interval_s: float = Field(1.0, gt=0, description="How often workers look for due work.")
    tts_deadline_s: float = Field(
        1800.0, gt=0, description="Seconds a TTS batch may take (from creation or retry) before it fails."
    )
    imagegen_deadline_s: float = Field(
        1800.0, gt=0, description="Seconds an image batch may take (from creation or retry) before it fails."
    )
    video_deadline_s: float = Field(
        3600.0, gt=0, description="Seconds a video render may take (from creation or retry) before it fails."
    )
    fetch_allow_hosts: CommaList = Field(
        default_factory=list,
        description="Hosts provider output URLs may point at even when private or loopback (`*`: any).",
    )
    # --- completion webhooks (callback_url) ---------------------------------------------------------
    callback_secret: SecretList = Field(
        default_factory=list,
        description="Standard Webhooks secrets (whsec_...) signing completion webhooks; during a rotation list the "
        "new and the old one (each attempt is signed with both). Unset: requests with callback_url are refused.",
    )
    callback_allow_hosts: CommaList = Field(
        default_factory=list,
        description="Hosts a callback_url may name even when private or loopback (`*`: any).",
    )
    callback_retry_s: FloatList = Field(
        default_factory=lambda: list(CALLBACK_RETRY_S),
        description="Delays (seconds, each jittered by 20%) before the retries of a completion webhook; once they "
        "are used up the delivery fails.",
    )
    callback_timeout_s: float = Field(10.0, gt=0, description="Seconds a callback receiver has to answer.")
    callback_concurrency: int = Field(8, gt=0, description="Completion webhooks each worker delivers at once.")
    max_fetch_bytes: int = Field(100_000_000, gt=0, description="Largest audio or image file downloaded.")
    max_video_bytes: int = Field(2_000_000_000, gt=0, description="Largest video downloaded from the video service.")
    max_webhook_bytes: int = Field(25_000_000, gt=0, description="Largest webhook body the API reads.")
    # --- the Flask half ---------------------------------------------------------------------------
    service_url: str | None = Field(None, description="Base URL of the strangler-bridge service (Flask side).")
    service_token: SecretStr | None = Field(None, description="Bearer token the Flask side sends.")
    service_timeout_s: float = Field(600.0, gt=0, description="Overall deadline of one step on the service.")
    service_stall_s: float = Field(
        120.0, gt=0, description="The Flask side gives up on a step whose work shows no progress for this long."
    )
    service_request_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of each call from the Flask side to the service (a long-poll adds its wait)."
    )
    breaker_failures: int = Field(
        3, gt=0, description="Consecutive failed calls to the service (per phase) that open the Flask side's breaker."
    )
    breaker_cooldown_s: float = Field(
        30.0, gt=0, description="Seconds an open breaker sends a phase straight to the legacy code before a trial call."
    )
    events_buffer: int = Field(
        10_000, gt=0, description="Events the Flask side keeps while the service is unreachable (oldest dropped first)."
    )
    jobs_wait: Literal["poll", "callback"] = Field(
        "poll",
        description="How the Flask side waits for a job: `poll` (long-poll the service) or `callback` (sleep until "
        "the completion webhook reaches STRANGLER_CALLBACK_RECEIVER_URL, checking the job now and then).",
    )
    callback_receiver_url: str | None = Field(
        None, description="Public URL of the Flask blueprint's callbacks route, sent as callback_url in callback mode."
    )
    flags_cache_s: float = Field(5.0, ge=0, description="Seconds the Flask side caches the service's flags.")
    shadow_timeout_s: float = Field(120.0, gt=0, description="Deadline of the background shadow call.")
    flags: dict[Phase, PhaseFlag] = Field(
        default_factory=dict,
        description='Static phase flags (JSON), e.g. {"tts": {"mode": "fastapi", "percent": 10}}.',
    )

    _split_lists = field_validator(
        "api_tokens", "fetch_allow_hosts", "callback_secret", "callback_allow_hosts", "callback_retry_s", mode="before"
    )(_split_commas)

    @field_validator("callback_secret")
    @classmethod
    def _callback_secrets(cls, values: list[SecretStr]) -> list[SecretStr]:
        for value in values:
            check_secret(value.get_secret_value())
        return values

    @field_validator("callback_retry_s")
    @classmethod
    def _retry_delays(cls, values: list[float]) -> list[float]:
        if any(delay < 0 for delay in values):
            raise ValueError("retry delays are seconds, 0 or more")
        return values

    _redis_url = field_validator("redis_url")(_url_check(RedisUrl, "redis://127.0.0.1:6379/0"))
    _artifacts_url = field_validator("artifacts_url")(_url_check(ArtifactsUrl, "s3://bucket/prefix"))
    _http_urls = field_validator(
        "public_url",
        "runpod_endpoint_url",
        "runware_url",
        "video_url",
        "service_url",
        "s3_endpoint_url",
        "s3_public_endpoint_url",
        "callback_receiver_url",
    )(_url_check(AnyHttpUrl, "http://127.0.0.1:8000"))

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read the environment (plus ``overrides``), turning validation errors into :class:`ConfigError`."""
        try:
            settings = cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
        return settings

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], **overrides: Any) -> Settings:
        """Settings from ``STRANGLER_*`` keys of a mapping (Flask's ``app.config``), then the environment."""
        values = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in mapping.items()
            if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in cls.model_fields
        }
        values.update(overrides)
        return cls.load(**values)

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigError` naming every listed setting that is unset or empty."""
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            lines = [f"{env_name(name)}: {Settings.model_fields[name].description}" for name in missing]
            raise ConfigError("missing required setting(s):\n  " + "\n  ".join(lines))

    def require_for(self, process: Literal["api", "worker"]) -> None:
        """Raise :class:`ConfigError` naming every setting ``process`` needs and lacks, all at once.

        Both need Redis and the webhook secret (workers sign webhook and asset URLs); only the API checks
        bearer tokens. In production both also need every provider setting, so a deployment missing one stops
        at start-up instead of failing its first job; in dev those fail at first use, naming the variable.
        """
        needed = ["redis_url", "webhook_secret", *(["api_tokens"] if process == "api" else [])]
        if self.env == "production":
            needed.extend(PROVIDER_SETTINGS)
        self.require(*needed)

    def secret(self, name: str) -> str:
        """The plain value of a secret setting, or a :class:`ConfigError` if it is unset."""
        value = getattr(self, name)
        if value is None:
            self.require(name)
        assert isinstance(value, SecretStr)
        return value.get_secret_value()

    def public_link(self, path: str) -> str:
        """The absolute URL of ``path`` (starting with ``/``) on the service as providers reach it."""
        return f"{self.public_url.rstrip('/')}{path}"

    def to_env(self) -> dict[str, str]:
        """Every setting that differs from its default as ``STRANGLER_*`` variables (to start child processes)."""
        env: dict[str, str] = {}
        for name, info in Settings.model_fields.items():
            value = getattr(self, name)
            if value == info.get_default(call_default_factory=True):
                continue
            env[env_name(name)] = _env_value(value)
        return env

    def callback_secrets(self) -> list[str]:
        """The completion-webhook signing secrets as plain strings (empty: callbacks are off)."""
        return [secret.get_secret_value() for secret in self.callback_secret]

    def token_values(self) -> list[str]:
        """The accepted API tokens as plain strings."""
        return [token.get_secret_value() for token in self.api_tokens]


def env_name(field: str) -> str:
    """The environment variable (and Flask config key) of a settings field."""
    return ENV_PREFIX + field.upper()


def settings_table() -> Iterable[tuple[str, str, str]]:
    """``(variable, default, description)`` for every setting, for docs and ``--help``."""
    for name, info in Settings.model_fields.items():
        value = None if info.is_required() else info.get_default(call_default_factory=True)
        default = "" if value in (None, [], {}) else _env_value(value)
        yield env_name(name), default, info.description or ""


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(_env_value(item) for item in value)
    if isinstance(value, dict):
        return json.dumps({str(getattr(k, "value", k)): v.model_dump(mode="json") for k, v in value.items()})
    return str(value)


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = error["loc"][0] if error["loc"] else ""
        name = env_name(str(loc)) if loc else "settings"
        lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    if len(lines) == 1:
        return f"invalid setting {lines[0]}"
    return "invalid settings:\n  " + "\n  ".join(lines)
