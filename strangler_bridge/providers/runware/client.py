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

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

import httpx

from strangler_bridge.errors import ConfigError, InvalidInput, ProviderRejected, ProviderUnavailable
from strangler_bridge.fetch import Download
from strangler_bridge.http import RETRY_STATUSES, UNSENT_ERRORS, Operation, RetryPolicy
from strangler_bridge.providers.base import AsyncRunner, Call, Flow, H, ProviderBase, Sleep, SyncRunner, provider_method
from strangler_bridge.providers.runware.models import (
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
    "RunwareOperations",
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


class RunwareOperations(ProviderBase[H]):
    """Runware's calls and its never-pay-twice flow, free of any I/O; the clients mix in a runner."""

    provider = PROVIDER
    label = "Runware"

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        recovery: RecoveryPolicy | None = None,
        http: H | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("STRANGLER_RUNWARE_API_KEY is empty: set it to your Runware API key")
        self.url = url
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        # Only the timing of a caller's policy is used: the retried statuses are always Runware's transient ones.
        timing = retry or RetryPolicy()
        self._download_retry = replace(timing, statuses=RETRY_STATUSES)
        self._recovery = recovery or RecoveryPolicy()
        super().__init__(retry=replace(timing, statuses=RUNWARE_RETRY_STATUSES), http=http, timeout=self._timeout)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
        """A client for ``STRANGLER_RUNWARE_URL`` / ``STRANGLER_RUNWARE_API_KEY`` (``ConfigError`` if the key is unset).

        The timeout is ``STRANGLER_HTTP_TIMEOUT_S`` unless ``timeout_s`` is given.
        """
        kwargs.setdefault("timeout_s", settings.http_timeout_s)
        return cls(settings.runware_url, settings.secret("runware_api_key"), **kwargs)

    # --- operations (sans-I/O) ---------------------------------------------------------------------------------

    def _request(self, method: str, url: str, body: list[dict[str, Any]] | None = None) -> httpx.Request:
        # The key goes on Runware's endpoint only (never to image hosts), and our timeout applies even on an
        # injected httpx client.
        headers = {"Authorization": f"Bearer {self._api_key}"} if body is not None else {}
        return httpx.Request(method, url, json=body, headers=headers, extensions={"timeout": self._timeout.as_dict()})

    @provider_method
    def infer(self, tasks: Sequence[ImageTask]) -> Call[InferenceOutcome]:
        """Submit tasks (paid) and return what Runware answered.

        Task errors come back in ``errors`` (partial success) unless every task failed on a 4xx, which raises;
        401/403, 402, 429 and 5xx answers raise their errors (see the module docstring). A failure that may have
        reached Runware is not resent: :class:`ProviderUnavailable` from a transport failure means the outcome is
        unknown (:meth:`infer_or_recover` resolves it).
        """
        return self.call("infer", self._infer_gen(check_batch(tasks)), submit=True)

    def _infer_gen(self, tasks: list[ImageTask]) -> Operation[InferenceOutcome]:
        response = yield self._request("POST", self.url, [task.to_wire() for task in tasks])
        return read_outcome(response, [task.task_uuid for task in tasks], poll=False)

    @provider_method
    def get_response(self, task_uuid: str) -> Call[InferenceOutcome]:
        """Ask Runware what became of a task (``getResponse``): cumulative results, errors, or still processing."""
        if not is_uuid4(task_uuid):
            raise InvalidInput(f"task_uuid must be a UUID version 4, not {task_uuid!r}", field="task_uuid")
        return self.call("getResponse", self._get_response_gen(task_uuid))

    def _get_response_gen(self, task_uuid: str) -> Operation[InferenceOutcome]:
        response = yield self._request("POST", self.url, [{"taskType": "getResponse", "taskUUID": task_uuid}])
        return read_outcome(response, [], poll=True)

    @provider_method
    def authenticate(self) -> Call[None]:
        """Send Runware's authentication task alone; raises the error a wrong URL or key gives (nothing is paid)."""
        return self.call("authentication", self._authenticate_gen())

    def _authenticate_gen(self) -> Operation[None]:
        response = yield self._request("POST", self.url, [{"taskType": "authentication", "apiKey": self._api_key}])
        read_outcome(response, [], poll=False)

    def download_of(self, url: str, *, max_bytes: int = 20_000_000, allow_hosts: Sequence[str] = ()) -> Download:
        """A result's ``imageURL`` as a download under the one fetch path's rules (:mod:`strangler_bridge.fetch`: no
        redirects, size cap, a public or allowed address that is the one connected to); no credentials go to it."""
        return Download(url, allow_hosts, max_bytes, retry=self._download_retry)

    # --- never pay twice ---------------------------------------------------------------------------------------

    @provider_method
    def infer_or_recover(self, task: ImageTask, *, maybe_sent: bool = False) -> Flow[InferenceOutcome]:
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
        checked = check_batch([task])[0]
        uuid = checked.task_uuid
        exists = False  # Runware answered conflictTaskUUID: it has this task, whatever getResponse says
        submits = 0
        ask_first = maybe_sent
        while True:
            if not ask_first:
                submits += 1
                try:
                    outcome: InferenceOutcome = yield self.call("infer", self._infer_gen([checked]), submit=True)
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

    def _poll_flow(self, task: ImageTask, exists: bool) -> Flow[InferenceOutcome | None]:
        """Poll getResponse for a task; ``None`` when Runware does not know it (so it may be submitted)."""
        policy = self._recovery
        deadline = time.monotonic() + policy.timeout_s
        delay = policy.initial_s
        wants_images = _wants_images(task)
        while True:
            outcome: InferenceOutcome = yield self.call("getResponse", self._get_response_gen(task.task_uuid))
            error = outcome.error_for(task.task_uuid)
            if error is not None and error.code in NOT_FOUND_CODES and not outcome.results_for(task.task_uuid):
                return outcome if exists else None
            done = outcome.is_finished(task.task_uuid)
            if done or not wants_images or time.monotonic() + delay > deadline:
                return outcome
            yield Sleep(delay)
            delay = min(delay * policy.factor, policy.max_s)


class RunwareClient(SyncRunner, RunwareOperations[httpx.Client]):
    """Synchronous Runware client (RQ workers, scripts). Use as a context manager or call :meth:`close`."""

    def download(self, url: str, *, max_bytes: int = 20_000_000, allow_hosts: Sequence[str] = ()) -> bytes:
        """Fetch a result's ``imageURL`` (see :meth:`RunwareOperations.download_of`)."""
        sink = io.BytesIO()
        self.download_of(url, max_bytes=max_bytes, allow_hosts=allow_hosts).into(self.http, sink)
        return sink.getvalue()


class AsyncRunwareClient(AsyncRunner, RunwareOperations[httpx.AsyncClient]):
    """The asyncio twin of :class:`RunwareClient` (same calls, same recovery flow)."""

    async def download(self, url: str, *, max_bytes: int = 20_000_000, allow_hosts: Sequence[str] = ()) -> bytes:
        """See :meth:`RunwareClient.download`."""
        sink = io.BytesIO()
        await self.download_of(url, max_bytes=max_bytes, allow_hosts=allow_hosts).ainto(self.http, sink)
        return sink.getvalue()


# --- helpers -------------------------------------------------------------------------------------------------------


def _wants_images(task: ImageTask) -> bool:
    """Sync-delivery callers wait for the images; for async or webhook tasks, knowing the task is enough."""
    return task.delivery_method == "sync" and task.webhook_url is None


def _outcome_unknown(exc: ProviderUnavailable) -> bool:
    """Whether a failed submit may have reached Runware (a transport failure other than 'never connected')."""
    cause = exc.__cause__
    return isinstance(cause, httpx.TransportError) and not isinstance(cause, UNSENT_ERRORS)
