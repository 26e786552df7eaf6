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
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from strangler_bridge.errors import ConfigError, InvalidInput, ProviderNotFound, ProviderRejected
from strangler_bridge.http import Operation, RetryPolicy
from strangler_bridge.providers.base import AsyncRunner, Call, H, ProviderBase, SyncRunner, provider_method
from strangler_bridge.providers.runpod.models import (
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
from strangler_bridge.providers.runpod.tts import TtsChunkOutput, parse_tts_output, tts_input
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

M = TypeVar("M", bound=BaseModel)

#: How long ``/runsync`` holds the connection when no ``wait`` is given (RunPod's default).
RUNSYNC_DEFAULT_WAIT_MS = 90_000
#: The SDK's local test API runs a job inside the status call that asks for it, so that call may last as long
#: as a job may run: RunPod's default execution timeout.
LOCAL_STATUS_TIMEOUT_S = 600.0
#: What the SDK's local test API answers (HTTP 200, status FAILED) for a job it does not know, or no longer
#: knows: it forgets a job once a status call has run it.
_LOCAL_UNKNOWN_JOB = "Job ID not found"


class RunPodOperations(ProviderBase[H]):
    """Builds RunPod requests and reads the responses, free of any I/O; the clients mix in a runner."""

    provider = PROVIDER
    label = "RunPod"

    def __init__(
        self,
        endpoint_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        http: H | None = None,
    ) -> None:
        if not endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"STRANGLER_RUNPOD_ENDPOINT_URL must start with http:// or https://, got {endpoint_url!r}"
            )
        if not api_key:
            raise ConfigError("STRANGLER_RUNPOD_API_KEY is empty")
        self.endpoint_url = endpoint_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        #: Set once a job id showed that the endpoint is the runpod SDK's local test API.
        self.local_test_api = False
        super().__init__(retry=retry, http=http, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """A client for ``STRANGLER_RUNPOD_ENDPOINT_URL`` / ``STRANGLER_RUNPOD_API_KEY`` (ConfigError if unset)."""
        settings.require("runpod_endpoint_url", "runpod_api_key")
        return cls(
            settings.runpod_endpoint_url or "",
            settings.secret("runpod_api_key"),
            timeout_s=settings.http_timeout_s,
        )

    @provider_method
    def run(
        self,
        input: dict[str, Any],
        *,
        webhook: str | None = None,
        policy: RunPodPolicy | None = None,
        s3_config: dict[str, str] | None = None,
    ) -> Call[RunPodJob]:
        """Queue a job (``POST /run``); returns ``{"id", "status": "IN_QUEUE"}``.

        ``s3Config`` reaches the handler as ``job["s3Config"]`` (RunPod does not echo it).
        """
        body = self._job_body(input, webhook, policy)
        if s3_config:
            body["s3Config"] = s3_config
        request = self._request("POST", "/run", body=body)
        return self.call("run", self._submitted(request, "run"), submit=True)

    @provider_method
    def runsync(
        self,
        input: dict[str, Any],
        *,
        wait_ms: int | None = None,
        webhook: str | None = None,
        policy: RunPodPolicy | None = None,
    ) -> Call[RunPodJob]:
        """Run a job and wait (``POST /runsync[?wait=]``); the status may still be in flight if the wait ran out."""
        wait = RUNSYNC_DEFAULT_WAIT_MS if wait_ms is None else wait_ms
        request = self._request(
            "POST",
            "/runsync",
            body=self._job_body(input, webhook, policy),
            params={"wait": wait_ms} if wait_ms is not None else None,
            read_timeout_s=self.timeout_s + wait / 1000,
        )
        return self.call("runsync", self._submitted(request, "runsync"), submit=True)

    @provider_method
    def status(self, job_id: str) -> Call[RunPodJob]:
        """The job's status object (``GET /status/{id}``); :class:`ProviderNotFound` once it expired.

        For a job of the SDK's local test API it is a ``POST``, waiting while the job runs.
        """
        path = f"/status/{_job_path(job_id)}"
        if is_local_test_job(job_id):
            # The call runs the job, so it is sent once (as a paid submit is): a second call finds it gone.
            request = self._request("POST", path, read_timeout_s=LOCAL_STATUS_TIMEOUT_S)
            return self.call("status", self._local_status(request, job_id), submit=True)
        return self.call("status", self._job(self._request("GET", path), f"status {job_id}"))

    @provider_method
    def cancel(self, job_id: str) -> Call[RunPodJob]:
        """Cancel a queued or running job (``POST /cancel/{id}``)."""
        return self.call("cancel", self._job(self._request("POST", f"/cancel/{_job_path(job_id)}"), f"cancel {job_id}"))

    @provider_method
    def retry(self, job_id: str) -> Call[RunPodJob]:
        """Requeue a FAILED or TIMED_OUT job under the same id (``POST /retry/{id}``)."""
        return self.call("retry", self._job(self._request("POST", f"/retry/{_job_path(job_id)}"), f"retry {job_id}"))

    @provider_method
    def health(self) -> Call[RunPodHealth]:
        """The endpoint's job and worker counters (``GET /health``)."""
        return self.call("health", self._model(self._request("GET", "/health"), "health", RunPodHealth))

    @provider_method
    def purge_queue(self) -> Call[RunPodPurge]:
        """Remove every queued job; running jobs go on (``POST /purge-queue``)."""
        request = self._request("POST", "/purge-queue")
        return self.call("purge-queue", self._model(request, "purge-queue", RunPodPurge))

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

    def _job_body(self, input: dict[str, Any], webhook: str | None, policy: RunPodPolicy | None) -> dict[str, Any]:
        body: dict[str, Any] = {"input": input}
        # The test API posts only {"output": ...}, and only after our own status call ran the job: no use.
        if webhook and not self.local_test_api:
            body["webhook"] = webhook
        if policy is not None and (wire := policy.to_wire()):
            body["policy"] = wire
        return body

    def _job(self, request: httpx.Request, what: str) -> Operation[RunPodJob]:
        response = yield request
        return RunPodJob.parse(self._json(response, what))

    def _submitted(self, request: httpx.Request, what: str) -> Operation[RunPodJob]:
        job = yield from self._job(request, what)
        if is_local_test_job(job.id) and not self.local_test_api:
            self.local_test_api = True
            log.warning(
                "STRANGLER_RUNPOD_ENDPOINT_URL=%s is the runpod SDK's local test API (python handler.py"
                " --rp_serve_api): it sends no webhooks and runs a job only when asked for its status, so jobs"
                " are polled at once instead of waiting for a webhook",
                self.endpoint_url,
            )
        return job

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
        data = self._json(response, what)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ProviderRejected(f"{what}: unexpected response {data!r:.200}: {exc}", provider=PROVIDER) from None

    def _json(self, response: httpx.Response, what: str) -> Any:
        """The response's JSON body, or the error its status means (with RunPod's message)."""
        if not response.is_success:
            raise self.status_error(response, what, _hint(response.status_code, what))
        try:
            return response.json()
        except ValueError:
            preview = response.text[:200]
            raise ProviderRejected(
                f"{what}: response is not JSON: {preview!r}", provider=PROVIDER, status_code=response.status_code
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint_url!r})"


def _job_path(job_id: str) -> str:
    if not job_id or not isinstance(job_id, str):
        raise InvalidInput("RunPod job id must be a non-empty string", field="job_id")
    return quote(job_id, safe="")


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


class RunPodClient(SyncRunner, RunPodOperations[httpx.Client]):
    """Synchronous RunPod client (for RQ workers). Use as a context manager or call :meth:`close`."""


class AsyncRunPodClient(AsyncRunner, RunPodOperations[httpx.AsyncClient]):
    """Asynchronous RunPod client: the same methods as :class:`RunPodClient`, as coroutines."""
