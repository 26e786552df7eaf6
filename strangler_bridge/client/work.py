"""The generic core of ``BridgeClient``: any kind of work the service runs (TTS batches, image batches, video
renders, pipeline jobs) is created, long-polled and downloaded the same way.

Each kind is a :class:`BatchRoute` (where it lives and how its status parses); :class:`BatchClient` knows how
to create one with an idempotency key, long-poll it until terminal under one deadline, post an action to
it (``retry``, ``cancel``) and stream its result files to disk. ``strangler_bridge.client.bridge`` adds the
typed methods.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from tenacity import Retrying

from strangler_bridge.client.service import ServiceClient, parsed, read_model, service_error
from strangler_bridge.client.wakeups import CallbackWait
from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.errors import DeadlineExceeded, ServiceError, StepStalled
from strangler_bridge.fetch import Meter, write_capped
from strangler_bridge.http import NO_RETRY, Operation, RetryableStatus

#: When the sender of a create stops waiting for it (Unix time); see ``fastapi_app.api.client_deadline``.
GIVE_UP_HEADER = "X-Strangler-Give-Up-At"
#: The service caps ``?wait=`` at this many seconds (30 for every kind is safe).
MAX_WAIT_S = 30
_BLOCK = 64 * 1024


class BatchLike(Protocol):
    """What the generic core reads from any status model."""

    id: str
    status: BatchStatus
    version: int


S = TypeVar("S", bound=BatchLike)


@dataclass(frozen=True)
class BatchRoute(Generic[S]):
    """Where one kind of work lives on the service and how its status parses.

    ``step`` names the work in idempotency keys, ``label`` in messages (``"image batch"``, ``"job"``).
    """

    step: str
    path: str
    parse: Callable[[bytes], S]
    label: str = "batch"

    def url(self, batch_id: str) -> str:
        """The status URL of one item (the id is quoted: it comes from the network)."""
        return f"{self.path}/{quote(batch_id, safe='')}"


class Deadline:
    """An overall time budget, shared by every call of one step.

    With ``stall_s``, waiting also gives up early (:class:`StepStalled`) once the work has shown no progress
    (:func:`progress_mark`) for that long. ``started`` lists the batches and jobs created under this budget, so
    whoever gives up on the step can cancel them; :meth:`abandon` ends the wait at the next check.
    """

    def __init__(
        self, seconds: float, clock: Callable[[], float] = time.monotonic, *, stall_s: float | None = None
    ) -> None:
        self.seconds = seconds
        self.stall_s = stall_s
        self.started: list[tuple[BatchRoute[Any], str]] = []
        self._clock = clock
        self._end = clock() + seconds
        self._mark: object = None
        self._moved_at = clock()
        self._abandoned: str | None = None

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._end - self._clock())

    def check(self, what: str) -> None:
        """Raise :class:`DeadlineExceeded` if the budget is spent (or the step was abandoned)."""
        if self._abandoned is not None:
            raise DeadlineExceeded(f"{what} was abandoned: {self._abandoned}")
        if self.remaining() <= 0:
            raise DeadlineExceeded(f"{what} did not finish within {self.seconds:g} s")

    def track(self, route: BatchRoute[Any], work_id: str) -> None:
        """Note a batch or job created for this step."""
        self.started.append((route, work_id))

    def abandon(self, reason: str) -> None:
        """Make the next :meth:`check` fail with ``reason`` (another thread gave up on this step)."""
        self._abandoned = reason

    def progressed(self, mark: object) -> None:
        """Note the work's progress as last seen; a change restarts the stall clock."""
        if self._mark is not None and mark != self._mark:
            self._moved_at = self._clock()
        self._mark = mark

    def check_stall(self, what: str) -> None:
        """Raise :class:`StepStalled` if the work showed no progress for ``stall_s``."""
        if self.stall_s is not None and self._clock() - self._moved_at >= self.stall_s:
            raise StepStalled(f"{what} made no progress for {self.stall_s:g} s")

    def poll_s(self) -> float:
        """How long the next long-poll may wait: until the deadline or, with ``stall_s``, until a stall."""
        left = self.remaining()
        if self.stall_s is not None:
            left = min(left, self.stall_s - (self._clock() - self._moved_at))
        return max(0.0, left)


def progress_mark(status: BatchLike) -> tuple[Any, ...]:
    """What counts as progress: the status, the items done and failed, and for a job each step's as well."""
    parts: list[Any] = [status.status, _counts(getattr(status, "progress", None))]
    for step in getattr(status, "steps", None) or ():
        parts.append((step.status, _counts(step.progress)))
    return tuple(parts)


def _counts(progress: Any) -> tuple[int, int] | None:
    return None if progress is None else (progress.done, progress.failed)


class BatchFailed(ServiceError):
    """The service ran the work and it ended ``failed`` or ``cancelled``; ``status`` holds the details."""

    code = "batch_failed"

    def __init__(self, status: BatchLike, message: str) -> None:
        super().__init__(message, status_code=200, service_code=f"batch_{status.status.value}")
        self.status = status


def idempotency_key(step: str, video_id: str | None, body: bytes) -> str:
    """A key that names one piece of work: the step, the video and a hash of the exact request body."""
    video = re.sub(r"[^A-Za-z0-9._-]", "_", video_id or "-")[:64]
    return f"{step}:{video}:{hashlib.sha256(body).hexdigest()[:32]}"


def give_up_at(timeout_s: float) -> str:
    """The ``X-Strangler-Give-Up-At`` value of a try sent now that waits at most ``timeout_s`` for its answer."""
    return f"{time.time() + timeout_s:.3f}"


def as_deadline(deadline: Deadline | float) -> Deadline:
    """``deadline`` itself, or a new one of that many seconds."""
    return deadline if isinstance(deadline, Deadline) else Deadline(deadline)


class BatchClient(ServiceClient):
    """The service client's calls that work for every :class:`BatchRoute`."""

    #: Largest file downloaded from the service (as ``STRANGLER_MAX_VIDEO_BYTES``, the largest it stores).
    max_download_bytes: int = 2_000_000_000

    def create(self, route: BatchRoute[S], body: BaseModel, video_id: str | None, key: str | None = None) -> S:
        """``POST`` the work with an ``Idempotency-Key`` (derived from step, video and body unless given).

        Retried safely: the same key and body always name the same work on the service.
        """
        content = body.model_dump_json().encode()
        headers = {"Idempotency-Key": key or idempotency_key(route.step, video_id, content)}
        if video_id:
            headers["X-Video-Id"] = video_id  # the service's log lines (API and workers) carry it
        # When this client stops waiting: a paused or swamped API that reads the request later refuses it instead
        # of creating work nobody waits for (``fastapi_app.api.client_deadline``; restamped on each try).
        headers[GIVE_UP_HEADER] = give_up_at(self.timeout_s)
        return self.call("POST", route.path, route.parse, content=content, headers=headers)

    def get(self, route: BatchRoute[S], batch_id: str, *, wait_s: int = 0, since: int | None = None) -> S:
        """One status read, long-polling up to ``wait_s`` (capped at :data:`MAX_WAIT_S`) seconds."""
        return self.run(parsed(self._status_request(route, batch_id, wait_s, since), route.parse))

    def _status_request(self, route: BatchRoute[S], batch_id: str, wait_s: int, since: int | None) -> httpx.Request:
        wait_s = max(0, min(MAX_WAIT_S, wait_s))
        params = {"wait": wait_s} if since is None else {"wait": wait_s, "since": since}
        # The read timeout must outlast the server-side wait.
        return self.request("GET", route.url(batch_id), params=params, timeout=self.timeout_s + wait_s)

    def wait(self, route: BatchRoute[S], batch_id: str, deadline: Deadline | float, *, since: int | None = None) -> S:
        """Long-poll until the work is terminal or the deadline passes (:class:`DeadlineExceeded`)."""
        return self.run(self._wait(route, batch_id, as_deadline(deadline), since))

    def _wait(self, route: BatchRoute[S], batch_id: str, deadline: Deadline, since: int | None) -> Operation[S]:
        what = f"{route.label} {batch_id}"
        while True:
            deadline.check(what)
            deadline.check_stall(what)
            wait_s = max(1, math.ceil(deadline.poll_s()))
            status = read_model((yield self._status_request(route, batch_id, wait_s, since)), route.parse)
            if status.status.terminal:
                return status
            deadline.progressed(progress_mark(status))
            since = status.version

    def run_batch(
        self,
        route: BatchRoute[S],
        body: BaseModel,
        video_id: str | None,
        deadline: Deadline | float,
        *,
        idempotency_key: str | None = None,
    ) -> S:
        """Create, then wait until terminal; the completed status, or :class:`BatchFailed`."""
        budget = as_deadline(deadline)
        status = self.create(route, body, video_id, idempotency_key)
        budget.track(route, status.id)
        return self.finish(route, status, budget)

    def finish(
        self, route: BatchRoute[S], status: S, deadline: Deadline | float, *, callback: CallbackWait | None = None
    ) -> S:
        """Wait for ``status`` to be terminal (unless it is); the completed status, or :class:`BatchFailed`.

        With ``callback`` (the work was created with its ``callback_url``), wait for the completion webhook
        (:meth:`await_callback`) instead of long-polling.
        """
        if not status.status.terminal:
            budget = as_deadline(deadline)
            budget.progressed(progress_mark(status))
            if callback is None:
                status = self.wait(route, status.id, budget, since=status.version)
            else:
                status = self.await_callback(route, status.id, budget, callback)
        if status.status is not BatchStatus.COMPLETED:
            detail = getattr(status, "error", None) or "no reason given"
            raise BatchFailed(status, f"{route.label} {status.id} ended {status.status.value}: {detail}")
        return status

    def await_callback(self, route: BatchRoute[S], batch_id: str, deadline: Deadline, callback: CallbackWait) -> S:
        """Sleep until this process receives the work's completion webhook, then read its status; until terminal.

        The status is also read every ``callback.check_every_s`` seconds (the webhook may reach another process,
        or be late), and the deadline and stall rules hold as in :meth:`wait`: progress seen in those reads
        restarts the stall clock, and no sleep outlasts the deadline or a stall.
        """
        what = f"{route.label} {batch_id}"
        with callback.wakeups.watch(batch_id) as woken:
            while True:
                deadline.check(what)
                deadline.check_stall(what)
                woken.wait(min(callback.check_every_s, deadline.poll_s()))
                # Cleared before the read: a webhook that arrives during the read wakes the next sleep at once.
                woken.clear()
                status = self.get(route, batch_id)
                if status.status.terminal:
                    return status
                deadline.progressed(progress_mark(status))

    def action(self, route: BatchRoute[S], batch_id: str, name: str) -> S:
        """``POST {path}/{id}/{name}`` (``retry``, ``cancel``): the new status.

        Not idempotent on the service (a second ``retry`` is a 409), so only failures that prove the request
        never arrived are retried.
        """
        url = f"{route.url(batch_id)}/{quote(name, safe='')}"
        return self.call("POST", url, route.parse, policy=self.policy.for_submit())

    # --- files ----------------------------------------------------------------------------------------

    def download_files(
        self,
        files: Iterable[tuple[int, str | None, str]],
        directory: Path | str,
        name: Callable[[int], str],
        *,
        what: str = "item",
        deadline: Deadline | None = None,
    ) -> dict[int, Path]:
        """Download ``(index, url, status)`` items into ``directory`` as ``name(index)``; ``{index: path}`` in order.

        A missing URL (the item is not completed) is a :class:`ServiceError` naming the item and its status.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[int, Path] = {}
        for index, url, status in sorted(files, key=lambda item: item[0]):
            path = folder / name(index)
            self.download(require_url(url, f"{what} {index} (status {status})"), path, deadline=deadline)
            paths[index] = path
        return paths

    def download(self, url: str, dest: Path | str | IO[bytes], *, deadline: Deadline | None = None) -> int:
        """Stream ``GET url`` into ``dest`` with the client's retry policy; returns the byte count.

        A path is written through a temporary file in the same directory and renamed into place, so it
        never holds a partial file. A file object is rewound between tries when it is seekable (else it
        gets one try only).
        """
        if isinstance(dest, (str, os.PathLike)):
            return self._download_to_path(url, Path(dest), deadline)
        start = dest.tell() if dest.seekable() else None
        policy = self.policy if start is not None else NO_RETRY
        try:
            for attempt in Retrying(**policy.tenacity_kwargs()):
                with attempt:
                    if start is not None:
                        dest.seek(start)
                        dest.truncate()
                    return self._stream(url, dest, deadline)
        except RetryableStatus as exc:
            raise service_error(exc.response) from None
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _download_to_path(self, url: str, path: Path, deadline: Deadline | None) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A hidden sibling, created like any other file (so the umask applies), renamed into place when complete.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            with tmp.open("xb") as handle:
                size = self.download(url, handle, deadline=deadline)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size

    def _stream(self, url: str, sink: IO[bytes], deadline: Deadline | None) -> int:
        if deadline is not None:
            deadline.check(f"download of {url}")
        response = self._follow_to_store(url, self._http.send(self.request("GET", url), stream=True))
        try:
            if response.status_code in self.policy.statuses:
                response.read()
                raise RetryableStatus(response)
            if response.is_error:
                response.read()
                raise service_error(response)
            # The service's files pass the same size rule as provider outputs.
            return write_capped(response.iter_bytes(_BLOCK), sink, Meter(self.max_download_bytes))
        finally:
            response.close()

    def _follow_to_store(self, url: str, response: httpx.Response) -> httpx.Response:
        """The response to download from: the service's own redirect (to its object store) followed once.

        A service with an S3 store answers downloads with a 307 to a presigned URL. Only a redirect from the
        service's origin is followed, one hop, and httpx sends no bearer token to the other origin; a second
        redirect, or one from elsewhere, is an error (never an empty file). Provider downloads
        (``strangler_bridge.fetch``) still follow none.
        """
        if not response.is_redirect:
            return response
        response.close()
        if response.next_request is None or not self.is_own(url):
            raise ServiceError(
                f"download of {url} answered a redirect: not followed",
                status_code=response.status_code,
                service_code="redirect",
            )
        followed = self._http.send(response.next_request, stream=True)
        if followed.is_redirect:
            followed.close()
            raise ServiceError(
                f"download of {url} was redirected twice", status_code=followed.status_code, service_code="redirect"
            )
        return followed


def require_url(url: str | None, what: str) -> str:
    """``url``, or a :class:`ServiceError` saying that ``what`` has no file yet."""
    if not url:
        raise ServiceError(f"{what} has no file on the service", status_code=200, service_code="no_file")
    return url
