"""Wire models of RunPod's serverless endpoint API: job status objects, policies, health and purge results.

Field names are snake_case in Python and RunPod's camelCase on the wire (``delayTime`` ...); both are
accepted when parsing, and :meth:`RunPodPolicy.to_wire` / :meth:`RunPodJob.to_wire` give the wire form.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from strangler_bridge.errors import ProviderRejected

PROVIDER = "runpod"
#: Job ids issued by the runpod SDK's local test API (``python handler.py --rp_serve_api``); RunPod's own
#: are a UUID with a data-centre suffix (``...-u1``), or ``sync-...``.
LOCAL_TEST_API_PREFIX = "test-"


def is_local_test_job(job_id: str) -> bool:
    """Whether ``job_id`` was issued by the runpod SDK's local test API, which runs a job only inside the
    ``POST /status`` call that asks for it and sends no webhook before that (docs/simulators/runpod.md)."""
    return job_id.startswith(LOCAL_TEST_API_PREFIX)


class RunPodStatus(str, Enum):
    """A RunPod job state; the values are the wire strings."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def terminal(self) -> bool:
        """Whether the job will not change any more (all four end states, not only COMPLETED)."""
        return self in _TERMINAL


_TERMINAL = frozenset({RunPodStatus.COMPLETED, RunPodStatus.FAILED, RunPodStatus.CANCELLED, RunPodStatus.TIMED_OUT})


class _Wire(BaseModel):
    """Accepts snake_case names and camelCase aliases; keeps unknown wire fields."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    def to_wire(self) -> dict[str, Any]:
        """The JSON object RunPod sends or expects (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RunPodPolicy(_Wire):
    """The per-job ``policy`` of ``/run`` and ``/runsync``; times in milliseconds."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    execution_timeout_ms: int | None = Field(None, alias="executionTimeout", gt=0)
    low_priority: bool | None = Field(None, alias="lowPriority")
    ttl_ms: int | None = Field(None, alias="ttl", gt=0)


class RunPodJob(_Wire):
    """RunPod's job status object, as returned by ``/run``, ``/runsync``, ``/status``, ``/cancel``, ``/retry``
    and as POSTed to a webhook (which adds ``input`` and ``webhook``, kept as extra fields)."""

    id: str = Field(..., min_length=1)
    status: RunPodStatus
    delay_time_ms: int | None = Field(None, alias="delayTime")
    execution_time_ms: int | None = Field(None, alias="executionTime")
    output: Any = None
    error: str | None = None
    worker_id: str | None = Field(None, alias="workerId")
    retries: int | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _running_is_in_progress(cls, value: Any) -> Any:
        # RunPod documents a RUNNING state that no SDK checks for; it means the same as IN_PROGRESS.
        return RunPodStatus.IN_PROGRESS if value == "RUNNING" else value

    @field_validator("error", mode="before")
    @classmethod
    def _error_as_text(cls, value: Any) -> Any:
        # The error is documented as a string; a worker that returned a non-string error is kept as JSON text.
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)

    @classmethod
    def parse(cls, data: Any) -> RunPodJob:
        """Validate a status object; :class:`ProviderRejected` (provider ``runpod``) if it is malformed."""
        if not isinstance(data, dict):
            raise ProviderRejected(
                f"expected a job status object, got {type(data).__name__}: {_preview(data)}", provider=PROVIDER
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _malformed(exc, data) from None

    @classmethod
    def parse_json(cls, raw: bytes) -> RunPodJob:
        """:meth:`parse` for JSON text (a webhook body): validated as it is decoded, about four times faster
        than decoding first on a 40 KB body."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise _malformed(exc, raw) from None

    @property
    def input(self) -> Any:
        """The job's input when the object carries it (webhook payloads do), else ``None``."""
        return (self.model_extra or {}).get("input")

    @property
    def has_output(self) -> bool:
        """Whether the job carries an output; a COMPLETED job may have none (empty handler result, a
        result too large to post, a non-aggregated stream)."""
        return self.output is not None and self.output not in ({}, [], "")

    def error_detail(self) -> dict[str, Any] | str | None:
        """The error, JSON-decoded when it holds a JSON object (what a raised handler exception produces)."""
        if self.error is None:
            return None
        try:
            decoded = json.loads(self.error)
        except ValueError:
            return self.error
        return decoded if isinstance(decoded, dict) else self.error

    def error_message(self) -> str | None:
        """A one-line human message for the error (the exception's type and message when it is JSON)."""
        detail = self.error_detail()
        if isinstance(detail, dict):
            message = str(detail.get("error_message") or detail.get("error") or self.error)
            kind = detail.get("error_type")
            return f"{kind}: {message}" if kind else message
        return detail


class RunPodHealthJobs(_Wire):
    """Job counters of ``/health``."""

    completed: int = 0
    failed: int = 0
    in_progress: int = Field(0, alias="inProgress")
    in_queue: int = Field(0, alias="inQueue")
    retried: int = 0


class RunPodHealthWorkers(_Wire):
    """Worker counters of ``/health``; RunPod may add states, which are kept as extra fields."""

    idle: int = 0
    running: int = 0
    initializing: int = 0
    ready: int = 0
    throttled: int = 0
    unhealthy: int = 0


class RunPodHealth(_Wire):
    """``GET /health``: job and worker counters of the endpoint."""

    jobs: RunPodHealthJobs = Field(default_factory=RunPodHealthJobs)
    workers: RunPodHealthWorkers = Field(default_factory=RunPodHealthWorkers)


class RunPodPurge(_Wire):
    """``POST /purge-queue``: how many queued jobs were removed (``status`` is lower-case ``completed``)."""

    removed: int
    status: str


def _malformed(exc: ValidationError, data: Any) -> ProviderRejected:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'object'}: {e['msg']}" for e in exc.errors())
    return ProviderRejected(f"malformed job status object ({problems}): {_preview(data)}", provider=PROVIDER)


def _preview(data: Any, limit: int = 200) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + "..."
