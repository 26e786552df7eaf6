"""Client of a RunPod serverless (queue-based) endpoint: run, runsync, status, cancel, retry, health, purge-queue.

Every operation is written once as a sans-I/O generator (:class:`RunPodOperations`) and run by
:class:`RunPodClient` (sync, for RQ workers) or :class:`AsyncRunPodClient` (async). Each call has a timeout;
429, 5xx and transport errors are retried with backoff and jitter (over HTTP and HTTPS alike); other 4xx
fail at once with RunPod's message. ``/run`` and ``/runsync`` are paid submits: after a request may have
been sent (a read timeout) they are not resent, and the error says the outcome is unknown.

The runpod SDK's local test API (``python handler.py --rp_serve_api``) is recognised by its job ids and
adapted to without any setting: its ``/status`` is POST only and runs the job inside that call, and it
sends no webhook worth waiting for (docs/simulators/runpod.md, "what differs").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from strangler_bridge.errors import (
    ConfigError,
    InvalidInput,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderPaymentRequired,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.http import UNSENT_ERRORS, Operation, RetryPolicy, adrive, drive
from strangler_bridge.providers.runpod_models import (
    PROVIDER,
    RunPodHealth,
    RunPodHealthJobs,
    RunPodHealthWorkers,
    RunPodJob,
    RunPodPolicy,
    RunPodPurge,
    RunPodStatus,
    is_local_test_job,
)
from strangler_bridge.providers.runpod_tts import TtsChunkOutput, parse_tts_output, tts_input
from strangler_bridge.settings import Settings

__all__ = [
    "LOCAL_STATUS_TIMEOUT_S",
    "AsyncRunPodClient",
    "RunPodClient",
    "RunPodHealth",
    "RunPodHealthJobs",
    "RunPodHealthWorkers",
    "RunPodJob",
    "RunPodOperations",
    "RunPodPolicy",
    "RunPodPurge",
    "RunPodStatus",
    "TtsChunkOutput",
    "is_local_test_job",
    "parse_tts_output",
    "tts_input",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: How long ``/runsync`` holds the connection when no ``wait`` is given (RunPod's default).
RUNSYNC_DEFAULT_WAIT_MS = 90_000
_MESSAGE_LIMIT = 500
#: The SDK's local test API runs a job inside the status call that asks for it, so that call may last as long
#: as a job may run: RunPod's default execution timeout.
LOCAL_STATUS_TIMEOUT_S = 600.0
#: What the SDK's local test API answers (HTTP 200, status FAILED) for a job it does not know, or no longer
#: knows: it forgets a job once a status call has run it.
_LOCAL_UNKNOWN_JOB = "Job ID not found"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One operation ready to drive: its generator, whether it is a paid submit, and its name for errors."""

    name: str
    operation: Operation[T]
    submit: bool = False

    def transport_error(self, exc: httpx.TransportError) -> Exception:
        """The error raised when the transport failed on every try."""
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.submit and not isinstance(exc, UNSENT_ERRORS):
            detail += " (the request may have reached RunPod: the job's outcome is unknown)"
        return ProviderUnavailable(f"{self.name}: {detail}", provider=PROVIDER)


class RunPodOperations:
    """Builds RunPod requests and reads the responses, free of any I/O."""

    def __init__(self, endpoint_url: str, api_key: str, *, timeout_s: float = 10.0) -> None:
        if not endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"STRANGLER_RUNPOD_ENDPOINT_URL must start with http:// or https://, got {endpoint_url!r}"
            )
        if not api_key:
            raise ConfigError("STRANGLER_RUNPOD_API_KEY is empty")
        self.endpoint_url = endpoint_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}

    def run(self, input: dict[str, Any], webhook: str | None, policy: RunPodPolicy | None) -> Call[RunPodJob]:
        """``POST /run``: queue a job."""
        request = self._request("POST", "/run", body=_job_body(input, webhook, policy))
        return Call("run", self._job(request, "run"), submit=True)

    def runsync(
        self, input: dict[str, Any], wait_ms: int | None, webhook: str | None, policy: RunPodPolicy | None
    ) -> Call[RunPodJob]:
        """``POST /runsync[?wait=]``: run a job and hold the connection until it ends or the wait runs out."""
        wait = RUNSYNC_DEFAULT_WAIT_MS if wait_ms is None else wait_ms
        request = self._request(
            "POST",
            "/runsync",
            body=_job_body(input, webhook, policy),
            params={"wait": wait_ms} if wait_ms is not None else None,
            read_timeout_s=self.timeout_s + wait / 1000,
        )
        return Call("runsync", self._job(request, "runsync"), submit=True)

    def status(self, job_id: str) -> Call[RunPodJob]:
        """``GET /status/{id}``; for a job of the SDK's local test API, ``POST``, waiting while it runs."""
        path = f"/status/{_job_path(job_id)}"
        if is_local_test_job(job_id):
            # The call runs the job, so it is sent once (as a paid submit is): a second call finds it gone.
            request = self._request("POST", path, read_timeout_s=LOCAL_STATUS_TIMEOUT_S)
            return Call("status", self._local_status(request, job_id), submit=True)
        return Call("status", self._job(self._request("GET", path), f"status {job_id}"))

    def cancel(self, job_id: str) -> Call[RunPodJob]:
        """``POST /cancel/{id}``."""
        return Call("cancel", self._job(self._request("POST", f"/cancel/{_job_path(job_id)}"), f"cancel {job_id}"))

    def retry(self, job_id: str) -> Call[RunPodJob]:
        """``POST /retry/{id}``: requeue a FAILED or TIMED_OUT job under the same id."""
        return Call("retry", self._job(self._request("POST", f"/retry/{_job_path(job_id)}"), f"retry {job_id}"))

    def health(self) -> Call[RunPodHealth]:
        """``GET /health``."""
        return Call("health", self._model(self._request("GET", "/health"), "health", RunPodHealth))

    def purge_queue(self) -> Call[RunPodPurge]:
        """``POST /purge-queue``: remove every queued job."""
        return Call("purge-queue", self._model(self._request("POST", "/purge-queue"), "purge-queue", RunPodPurge))

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        read_timeout_s: float | None = None,
    ) -> httpx.Request:
        # A request built outside a client carries no timeout unless it is given here.
        timeout = httpx.Timeout(self.timeout_s, read=read_timeout_s or self.timeout_s)
        return httpx.Request(
            method,
            self.endpoint_url + path,
            params=params,
            json=body,
            headers=self._headers,
            extensions={"timeout": timeout.as_dict()},
        )

    def _job(self, request: httpx.Request, what: str) -> Operation[RunPodJob]:
        response = yield request
        return RunPodJob.parse(_json(response, what))

    def _local_status(self, request: httpx.Request, job_id: str) -> Operation[RunPodJob]:
        job = yield from self._job(request, f"status {job_id}")
        if job.status is RunPodStatus.FAILED and job.error == _LOCAL_UNKNOWN_JOB:
            raise ProviderNotFound(
                f"status {job_id}: the runpod SDK's test API does not know the job (it forgets a job once its"
                " status was read, and all of them when it restarts)",
                provider=PROVIDER,
            )
        return job

    def _model(self, request: httpx.Request, what: str, model: type[M]) -> Operation[M]:
        response = yield request
        data = _json(response, what)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ProviderRejected(f"{what}: unexpected response {data!r:.200}: {exc}", provider=PROVIDER) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint_url!r})"


def _job_body(input: dict[str, Any], webhook: str | None, policy: RunPodPolicy | None) -> dict[str, Any]:
    body: dict[str, Any] = {"input": input}
    if webhook:
        body["webhook"] = webhook
    if policy is not None and (wire := policy.to_wire()):
        body["policy"] = wire
    return body


def _job_path(job_id: str) -> str:
    if not job_id or not isinstance(job_id, str):
        raise InvalidInput("RunPod job id must be a non-empty string", field="job_id")
    return quote(job_id, safe="")


def _json(response: httpx.Response, what: str) -> Any:
    """The response's JSON body, or the error its status means (with RunPod's message)."""
    if not response.is_success:
        raise _status_error(response, what)
    try:
        return response.json()
    except ValueError:
        preview = response.text[:200]
        raise ProviderRejected(
            f"{what}: response is not JSON: {preview!r}", provider=PROVIDER, status_code=response.status_code
        ) from None


def _status_error(response: httpx.Response, what: str) -> ProviderError:
    status = response.status_code
    kind: type[ProviderError]
    if status in (401, 403):
        kind = ProviderAuthError
    elif status == 404:
        kind = ProviderNotFound
    elif status == 429:
        kind = ProviderRateLimited
    elif status == 402:
        kind = ProviderPaymentRequired
    elif status >= 500 or status == 408:
        kind = ProviderUnavailable
    else:
        kind = ProviderRejected
    return kind(f"{what}: {_provider_message(response)}{_hint(status, what)}", provider=PROVIDER, status_code=status)


def _hint(status: int, what: str) -> str:
    """The setting to look at when an answer means the configuration is wrong (it ends up as a batch's reason)."""
    if status in (401, 403):
        return " (check STRANGLER_RUNPOD_API_KEY, or run `strangler-bridge doctor`)"
    if status in (404, 405) and what in ("run", "runsync", "health", "purge-queue"):
        # These name no job: the endpoint itself is not there.
        return (
            " (no RunPod endpoint at this URL: check STRANGLER_RUNPOD_ENDPOINT_URL, or run `strangler-bridge doctor`)"
        )
    return ""


def _provider_message(response: httpx.Response) -> str:
    """RunPod's own words for an error: ``error``/``message`` of a JSON body, else the text, else the reason."""
    message = ""
    try:
        body = response.json()
    except ValueError:
        message = response.text.strip()
    else:
        if isinstance(body, dict):
            found = next((body[key] for key in ("error", "message", "detail") if body.get(key)), body)
            message = found if isinstance(found, str) else str(found)
        else:
            message = str(body)
    message = message or response.reason_phrase or f"HTTP {response.status_code}"
    return message if len(message) <= _MESSAGE_LIMIT else message[:_MESSAGE_LIMIT] + "..."


class _Base:
    """Holds what both clients share: the operations and the retry policy."""

    def __init__(self, endpoint_url: str, api_key: str, timeout_s: float, retry: RetryPolicy | None) -> None:
        self.ops = RunPodOperations(endpoint_url, api_key, timeout_s=timeout_s)
        self.retry_policy = retry or RetryPolicy()
        #: Set once a job id showed that the endpoint is the runpod SDK's local test API.
        self.local_test_api = False

    def _webhook(self, webhook: str | None) -> str | None:
        # The test API posts only {"output": ...}, and only after our own status call ran the job: no use.
        return None if self.local_test_api else webhook

    def _seen(self, job: RunPodJob) -> RunPodJob:
        if is_local_test_job(job.id) and not self.local_test_api:
            self.local_test_api = True
            log.warning(
                "STRANGLER_RUNPOD_ENDPOINT_URL=%s is the runpod SDK's local test API (python handler.py"
                " --rp_serve_api): it sends no webhooks and runs a job only when asked for its status, so jobs"
                " are polled at once instead of waiting for a webhook",
                self.ops.endpoint_url,
            )
        return job

    def _policy(self, call: Call[Any]) -> RetryPolicy:
        return self.retry_policy.for_submit() if call.submit else self.retry_policy

    @classmethod
    def _settings_args(cls, settings: Settings) -> dict[str, Any]:
        settings.require("runpod_endpoint_url", "runpod_api_key")
        return {
            "endpoint_url": settings.runpod_endpoint_url,
            "api_key": settings.secret("runpod_api_key"),
            "timeout_s": settings.http_timeout_s,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ops.endpoint_url!r})"


class RunPodClient(_Base):
    """Synchronous RunPod client (for RQ workers). Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        endpoint_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(endpoint_url, api_key, timeout_s, retry)
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> RunPodClient:
        """A client for ``STRANGLER_RUNPOD_ENDPOINT_URL`` / ``STRANGLER_RUNPOD_API_KEY`` (ConfigError if unset)."""
        return cls(**cls._settings_args(settings))

    def _call(self, call: Call[T]) -> T:
        return drive(call.operation, self._http, self._policy(call), call.transport_error)

    def run(
        self, input: dict[str, Any], *, webhook: str | None = None, policy: RunPodPolicy | None = None
    ) -> RunPodJob:
        """Queue a job (``POST /run``); returns ``{"id", "status": "IN_QUEUE"}``."""
        return self._seen(self._call(self.ops.run(input, self._webhook(webhook), policy)))

    def runsync(
        self,
        input: dict[str, Any],
        *,
        wait_ms: int | None = None,
        webhook: str | None = None,
        policy: RunPodPolicy | None = None,
    ) -> RunPodJob:
        """Run a job and wait (``POST /runsync``); the status may still be in flight if the wait ran out."""
        return self._seen(self._call(self.ops.runsync(input, wait_ms, self._webhook(webhook), policy)))

    def status(self, job_id: str) -> RunPodJob:
        """The job's status object; :class:`ProviderNotFound` once it expired."""
        return self._call(self.ops.status(job_id))

    def cancel(self, job_id: str) -> RunPodJob:
        """Cancel a queued or running job."""
        return self._call(self.ops.cancel(job_id))

    def retry(self, job_id: str) -> RunPodJob:
        """Requeue a FAILED or TIMED_OUT job under the same id."""
        return self._call(self.ops.retry(job_id))

    def health(self) -> RunPodHealth:
        """The endpoint's job and worker counters."""
        return self._call(self.ops.health())

    def purge_queue(self) -> RunPodPurge:
        """Remove every queued job (running jobs go on)."""
        return self._call(self.ops.purge_queue())

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> RunPodClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncRunPodClient(_Base):
    """Asynchronous RunPod client: the same operations as :class:`RunPodClient`, as coroutines."""

    def __init__(
        self,
        endpoint_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(endpoint_url, api_key, timeout_s, retry)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncRunPodClient:
        """A client for ``STRANGLER_RUNPOD_ENDPOINT_URL`` / ``STRANGLER_RUNPOD_API_KEY`` (ConfigError if unset)."""
        return cls(**cls._settings_args(settings))

    async def _call(self, call: Call[T]) -> T:
        return await adrive(call.operation, self._http, self._policy(call), call.transport_error)

    async def run(
        self, input: dict[str, Any], *, webhook: str | None = None, policy: RunPodPolicy | None = None
    ) -> RunPodJob:
        """Queue a job (``POST /run``)."""
        return self._seen(await self._call(self.ops.run(input, self._webhook(webhook), policy)))

    async def runsync(
        self,
        input: dict[str, Any],
        *,
        wait_ms: int | None = None,
        webhook: str | None = None,
        policy: RunPodPolicy | None = None,
    ) -> RunPodJob:
        """Run a job and wait (``POST /runsync``)."""
        return self._seen(await self._call(self.ops.runsync(input, wait_ms, self._webhook(webhook), policy)))

    async def status(self, job_id: str) -> RunPodJob:
        """The job's status object."""
        return await self._call(self.ops.status(job_id))

    async def cancel(self, job_id: str) -> RunPodJob:
        """Cancel a queued or running job."""
        return await self._call(self.ops.cancel(job_id))

    async def retry(self, job_id: str) -> RunPodJob:
        """Requeue a FAILED or TIMED_OUT job under the same id."""
        return await self._call(self.ops.retry(job_id))

    async def health(self) -> RunPodHealth:
        """The endpoint's job and worker counters."""
        return await self._call(self.ops.health())

    async def purge_queue(self) -> RunPodPurge:
        """Remove every queued job."""
        return await self._call(self.ops.purge_queue())

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncRunPodClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
