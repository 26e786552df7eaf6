"""Runware REST client (image generation), sync and async, written once as sans-I/O operations.

Every call is a ``POST`` of a JSON array of tasks to one endpoint (``STRANGLER_RUNWARE_URL``) with
``Authorization: Bearer <STRANGLER_RUNWARE_API_KEY>``. Answers are ``{"data": [...]}`` and/or
``{"errors": [...]}``; errors are scoped to the task that failed, so a request with several tasks can
partly succeed. HTTP statuses map onto the error tree (:mod:`strangler_bridge.errors`):

====================  ===============================================================
400 (and other 4xx)   :class:`ProviderRejected` (only when every task failed)
401 / 403             :class:`ProviderAuthError`
402                   :class:`ProviderPaymentRequired`
404                   :class:`ProviderNotFound`
429                   :class:`ProviderRateLimited` (after retries)
5xx, transport        :class:`ProviderUnavailable` (after retries)
====================  ===============================================================

Only 429, 503, 504 and transport errors are retried (backoff with jitter); a paid submit is never resent
after a failure that may have reached Runware. :meth:`RunwareClient.infer_or_recover` resolves such an
unknown outcome without paying twice.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import httpx

from strangler_bridge.errors import (
    ConfigError,
    InvalidInput,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.fetch import afetch_into, fetch_into
from strangler_bridge.http import RETRY_STATUSES, UNSENT_ERRORS, Operation, RetryPolicy, adrive, drive
from strangler_bridge.providers.runware_models import (
    CONFLICT_CODE,
    NOT_FOUND_CODES,
    PROVIDER,
    ImageResult,
    ImageTask,
    InferenceOutcome,
    TaskError,
    check_batch,
    is_uuid4,
    parse_webhook_payload,
    read_outcome,
)
from strangler_bridge.settings import Settings

__all__ = [
    "RUNWARE_RETRY_STATUSES",
    "AsyncRunwareClient",
    "ImageResult",
    "ImageTask",
    "InferenceOutcome",
    "RecoveryPolicy",
    "RunwareClient",
    "TaskError",
    "parse_webhook_payload",
]

#: The statuses Runware documents as transient (queue capacity, temporary capacity, queue wait exceeded).
RUNWARE_RETRY_STATUSES = frozenset({429, 503, 504})


@dataclass(frozen=True)
class RecoveryPolicy:
    """How :meth:`RunwareClient.infer_or_recover` polls ``getResponse`` for a task Runware already has."""

    initial_s: float = 1.0
    factor: float = 1.5
    max_s: float = 10.0
    #: Polling stops after this long; the outcome is then returned with the task still in ``processing``.
    timeout_s: float = 300.0
    #: Most submissions of the same taskUUID (each one only after Runware said it does not know the task).
    max_submits: int = 3


@dataclass(frozen=True)
class _Call:
    operation: Operation[InferenceOutcome]
    policy: RetryPolicy


@dataclass(frozen=True)
class _Sleep:
    seconds: float


#: A multi-request procedure written once: yields calls (answered with an outcome, or with an error thrown
#: in) and sleeps; the sync and async clients each run it with their own driver.
_Flow = Generator[_Call | _Sleep, Any, InferenceOutcome]


class _RunwareBase:
    """What both clients share: configuration, the operations and the recovery flow."""

    def __init__(
        self, url: str, api_key: str, *, timeout_s: float, retry: RetryPolicy | None, recovery: RecoveryPolicy | None
    ) -> None:
        if not api_key:
            raise ConfigError("STRANGLER_RUNWARE_API_KEY is empty: set it to your Runware API key")
        self.url = url
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        # Only the timing of a caller's policy is used: the retried statuses are always Runware's transient ones.
        base = retry or RetryPolicy()
        self._retry = replace(base, statuses=RUNWARE_RETRY_STATUSES)
        self._download_retry = replace(base, statuses=RETRY_STATUSES)
        self._recovery = recovery or RecoveryPolicy()

    # --- operations (sans-I/O) ---------------------------------------------------------------------------------

    def _request(self, method: str, url: str, body: list[dict[str, Any]] | None = None) -> httpx.Request:
        # The key goes on Runware's endpoint only (never to image hosts), and our timeout applies even on an
        # injected httpx client.
        headers = {"Authorization": f"Bearer {self._api_key}"} if body is not None else {}
        return httpx.Request(method, url, json=body, headers=headers, extensions={"timeout": self._timeout.as_dict()})

    def _infer_operation(self, tasks: Sequence[ImageTask]) -> Operation[InferenceOutcome]:
        checked = check_batch(tasks)
        return self._infer_gen(checked)

    def _infer_gen(self, tasks: list[ImageTask]) -> Operation[InferenceOutcome]:
        response = yield self._request("POST", self.url, [task.to_wire() for task in tasks])
        return read_outcome(response, [task.task_uuid for task in tasks], poll=False)

    def _get_response_operation(self, task_uuid: str) -> Operation[InferenceOutcome]:
        if not is_uuid4(task_uuid):
            raise InvalidInput(f"task_uuid must be a UUID version 4, not {task_uuid!r}", field="task_uuid")
        return self._get_response_gen(task_uuid)

    def _get_response_gen(self, task_uuid: str) -> Operation[InferenceOutcome]:
        response = yield self._request("POST", self.url, [{"taskType": "getResponse", "taskUUID": task_uuid}])
        return read_outcome(response, [], poll=True)

    def _authenticate_operation(self) -> Operation[None]:
        # The documented authentication task alone: it proves the URL and the key, and costs nothing.
        response = yield self._request("POST", self.url, [{"taskType": "authentication", "apiKey": self._api_key}])
        read_outcome(response, [], poll=False)

    # --- never pay twice ---------------------------------------------------------------------------------------

    def _recover_flow(self, task: ImageTask, maybe_sent: bool) -> _Flow:
        """Submit ``task`` once, resolving an unknown outcome through ``getResponse`` (see ``infer_or_recover``)."""
        checked = check_batch([task])[0]
        uuid = checked.task_uuid
        exists = False  # Runware answered conflictTaskUUID: it has this task, whatever getResponse says
        submits = 0
        ask_first = maybe_sent
        while True:
            if not ask_first:
                submits += 1
                try:
                    outcome: InferenceOutcome = yield _Call(self._infer_gen([checked]), self._retry.for_submit())
                except ProviderRejected as exc:
                    if exc.provider_code != CONFLICT_CODE:
                        raise
                    exists = True
                except ProviderUnavailable as exc:
                    if not _outcome_unknown(exc):
                        raise
                else:
                    conflict = outcome.error_for(uuid)
                    finished = outcome.is_finished(uuid) or not _wants_images(checked)
                    if finished and (conflict is None or conflict.code != CONFLICT_CODE):
                        return outcome
                    exists = True  # it conflicted, or a sync answer came back without the images yet
            ask_first = False
            known = yield from self._poll_flow(checked, exists)
            if known is not None:
                return known
            if submits >= self._recovery.max_submits:
                raise ProviderUnavailable(
                    f"task {uuid}: outcome still unknown after {submits} submissions", provider=PROVIDER
                )

    def _poll_flow(self, task: ImageTask, exists: bool) -> Generator[_Call | _Sleep, Any, InferenceOutcome | None]:
        """Poll getResponse for a task; ``None`` when Runware does not know it (so it may be submitted)."""
        policy = self._recovery
        deadline = time.monotonic() + policy.timeout_s
        delay = policy.initial_s
        wants_images = _wants_images(task)
        while True:
            outcome: InferenceOutcome = yield _Call(self._get_response_gen(task.task_uuid), self._retry)
            error = outcome.error_for(task.task_uuid)
            if error is not None and error.code in NOT_FOUND_CODES and not outcome.results_for(task.task_uuid):
                return outcome if exists else None
            done = outcome.is_finished(task.task_uuid)
            if done or not wants_images or time.monotonic() + delay > deadline:
                return outcome
            yield _Sleep(delay)
            delay = min(delay * policy.factor, policy.max_s)


class RunwareClient(_RunwareBase):
    """Synchronous Runware client (RQ workers, scripts). Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        recovery: RecoveryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout_s=timeout_s, retry=retry, recovery=recovery)
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=self._timeout)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> RunwareClient:
        """A client for ``STRANGLER_RUNWARE_URL`` / ``STRANGLER_RUNWARE_API_KEY`` (``ConfigError`` if the key is unset).

        The timeout is ``STRANGLER_HTTP_TIMEOUT_S`` unless ``timeout_s`` is given.
        """
        kwargs.setdefault("timeout_s", settings.http_timeout_s)
        return cls(settings.runware_url, settings.secret("runware_api_key"), **kwargs)

    def infer(self, tasks: Sequence[ImageTask]) -> InferenceOutcome:
        """Submit tasks (paid) and return what Runware answered.

        Task errors come back in ``errors`` (partial success) unless every task failed on a 4xx, which raises;
        401/403, 402, 429 and 5xx answers raise their errors (see the module docstring). A failure that may have
        reached Runware is not resent: :class:`ProviderUnavailable` from a transport failure means the outcome is
        unknown (:meth:`infer_or_recover` resolves it).
        """
        return drive(self._infer_operation(tasks), self._http, self._retry.for_submit(), _transport_error)

    def authenticate(self) -> None:
        """Send Runware's authentication task alone; raises the error a wrong URL or key gives (nothing is paid)."""
        drive(self._authenticate_operation(), self._http, self._retry, _transport_error)

    def get_response(self, task_uuid: str) -> InferenceOutcome:
        """Ask Runware what became of a task (``getResponse``): cumulative results, errors, or still processing."""
        return drive(self._get_response_operation(task_uuid), self._http, self._retry, _transport_error)

    def infer_or_recover(self, task: ImageTask, *, maybe_sent: bool = False) -> InferenceOutcome:
        """Submit one task and never pay for it twice.

        1. Submit it (unless ``maybe_sent``: an earlier attempt, e.g. by a worker that crashed, may have sent it).
        2. If the outcome is unknown (read timeout, connection dropped after sending), Runware answers
           ``conflictTaskUUID`` (it already has the task) or a sync answer lacks the images (still processing),
           ask ``getResponse`` for the same taskUUID.
        3. If Runware knows the task, poll ``getResponse`` with backoff until it succeeded or failed (for
           async or webhook tasks, knowing it is enough), bounded by ``RecoveryPolicy.timeout_s``; on the
           deadline the outcome is returned with the task still in ``processing``.
        4. Only if Runware does not know the task (``taskFailedOrNotFound``), submit it again with the SAME
           taskUUID, at most ``RecoveryPolicy.max_submits`` times in all.

        Raises :class:`ProviderUnavailable` when Runware cannot be reached even for ``getResponse``: call again
        later with ``maybe_sent=True``.
        """
        return self._run(self._recover_flow(task, maybe_sent))

    def download(self, url: str, *, max_bytes: int = 20_000_000, allow_hosts: Sequence[str] = ()) -> bytes:
        """Fetch a result's ``imageURL`` through the one fetch path (:mod:`strangler_bridge.fetch`: no redirects,
        size cap, a public or allowed address that is the one connected to); no credentials go to the image host."""
        sink = io.BytesIO()
        fetch_into(self._http, url, sink, allow_hosts=allow_hosts, max_bytes=max_bytes, retry=self._download_retry)
        return sink.getvalue()

    def _run(self, flow: _Flow) -> InferenceOutcome:
        reply: Any = None
        error: ProviderError | None = None
        while True:
            try:
                step = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                result: InferenceOutcome = done.value
                return result
            reply, error = None, None
            if isinstance(step, _Sleep):
                time.sleep(step.seconds)
                continue
            try:
                reply = drive(step.operation, self._http, step.policy, _transport_error)
            except ProviderError as exc:
                error = exc

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> RunwareClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncRunwareClient(_RunwareBase):
    """The asyncio twin of :class:`RunwareClient` (same operations, same recovery flow)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        recovery: RecoveryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout_s=timeout_s, retry=retry, recovery=recovery)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=self._timeout)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AsyncRunwareClient:
        """See :meth:`RunwareClient.from_settings`."""
        kwargs.setdefault("timeout_s", settings.http_timeout_s)
        return cls(settings.runware_url, settings.secret("runware_api_key"), **kwargs)

    async def infer(self, tasks: Sequence[ImageTask]) -> InferenceOutcome:
        """See :meth:`RunwareClient.infer`."""
        return await adrive(self._infer_operation(tasks), self._http, self._retry.for_submit(), _transport_error)

    async def authenticate(self) -> None:
        """See :meth:`RunwareClient.authenticate`."""
        await adrive(self._authenticate_operation(), self._http, self._retry, _transport_error)

    async def get_response(self, task_uuid: str) -> InferenceOutcome:
        """See :meth:`RunwareClient.get_response`."""
        return await adrive(self._get_response_operation(task_uuid), self._http, self._retry, _transport_error)

    async def infer_or_recover(self, task: ImageTask, *, maybe_sent: bool = False) -> InferenceOutcome:
        """See :meth:`RunwareClient.infer_or_recover` (the same flow)."""
        return await self._run(self._recover_flow(task, maybe_sent))

    async def download(self, url: str, *, max_bytes: int = 20_000_000, allow_hosts: Sequence[str] = ()) -> bytes:
        """See :meth:`RunwareClient.download`."""
        sink = io.BytesIO()
        await afetch_into(
            self._http, url, sink, allow_hosts=allow_hosts, max_bytes=max_bytes, retry=self._download_retry
        )
        return sink.getvalue()

    async def _run(self, flow: _Flow) -> InferenceOutcome:
        reply: Any = None
        error: ProviderError | None = None
        while True:
            try:
                step = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                result: InferenceOutcome = done.value
                return result
            reply, error = None, None
            if isinstance(step, _Sleep):
                await asyncio.sleep(step.seconds)
                continue
            try:
                reply = await adrive(step.operation, self._http, step.policy, _transport_error)
            except ProviderError as exc:
                error = exc

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncRunwareClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# --- helpers -------------------------------------------------------------------------------------------------------


def _wants_images(task: ImageTask) -> bool:
    """Sync-delivery callers wait for the images; for async or webhook tasks, knowing the task is enough."""
    return task.delivery_method == "sync" and task.webhook_url is None


def _transport_error(exc: httpx.TransportError) -> ProviderUnavailable:
    return ProviderUnavailable(f"could not reach Runware: {type(exc).__name__}: {exc}", provider=PROVIDER)


def _outcome_unknown(exc: ProviderUnavailable) -> bool:
    """Whether a failed submit may have reached Runware (a transport failure other than 'never connected')."""
    cause = exc.__cause__
    return isinstance(cause, httpx.TransportError) and not isinstance(cause, UNSENT_ERRORS)
