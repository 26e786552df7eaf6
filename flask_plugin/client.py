"""``BridgeClient``: the legacy app's typed httpx client of the service's batch API.

A generic core (create with an idempotency key, long-poll until terminal under one deadline, stream a
result file to disk) serves every kind of batch; each kind is a :class:`BatchRoute` plus a few typed
methods. Only TTS exists today; ImageGen and pipeline jobs add a route and their wrappers.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from tenacity import Retrying

from strangler_bridge.contracts.common import BatchStatus
from strangler_bridge.contracts.tts import TtsBatchCreate, TtsBatchStatus, TtsChunkResult
from strangler_bridge.errors import DeadlineExceeded, ServiceError
from strangler_bridge.http import NO_RETRY, Operation, _RetryableStatus
from strangler_bridge.service_client import ServiceClient, parsed, read_model, service_error

#: The service caps ``?wait=`` at this many seconds.
MAX_WAIT_S = 30
_BLOCK = 64 * 1024


class BatchLike(Protocol):
    """What the generic core reads from any batch status model."""

    id: str
    status: BatchStatus
    version: int


S = TypeVar("S", bound=BatchLike)


@dataclass(frozen=True)
class BatchRoute(Generic[S]):
    """Where one kind of batch lives on the service and how its status parses."""

    step: str
    path: str
    parse: Callable[[bytes], S]

    def url(self, batch_id: str) -> str:
        """The status URL of one batch (the id is quoted: it comes from the network)."""
        return f"{self.path}/{quote(batch_id, safe='')}"


TTS = BatchRoute("tts", "/tts/batch", TtsBatchStatus.model_validate_json)


class Deadline:
    """An overall time budget, shared by every call of one step."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._end - self._clock())

    def check(self, what: str) -> None:
        """Raise :class:`DeadlineExceeded` if the budget is spent."""
        if self.remaining() <= 0:
            raise DeadlineExceeded(f"{what} did not finish within {self.seconds:g} s")


class BatchFailed(ServiceError):
    """The service ran the batch and it ended ``failed`` or ``cancelled``; ``status`` holds the details."""

    code = "batch_failed"

    def __init__(self, status: BatchLike, message: str) -> None:
        super().__init__(message, status_code=200, service_code=f"batch_{status.status.value}")
        self.status = status


def idempotency_key(step: str, video_id: str | None, body: bytes) -> str:
    """A key that names one piece of work: the step, the video and a hash of the exact request body."""
    video = re.sub(r"[^A-Za-z0-9._-]", "_", video_id or "-")[:64]
    return f"{step}:{video}:{hashlib.sha256(body).hexdigest()[:32]}"


class BridgeClient(ServiceClient):
    """Create batches on the service, wait for them, and fetch their files.

    Errors: :class:`ServiceError` for 4xx (with the service's ``service_code``, message and field),
    :class:`ServiceUnavailable` for transport errors and 5xx after retries, :class:`DeadlineExceeded` when
    waiting outlives the deadline, :class:`BatchFailed` when a batch ends failed or cancelled.
    """

    # --- TTS (phase 1) --------------------------------------------------------------------------------

    def create_tts_batch(self, batch: TtsBatchCreate, *, idempotency_key: str | None = None) -> TtsBatchStatus:
        """``POST /tts/batch``; retried safely, since the same key and body always name the same batch."""
        return self.create(TTS, batch, batch.video_id, idempotency_key)

    def get_tts_batch(self, batch_id: str, *, wait_s: int = 0, since: int | None = None) -> TtsBatchStatus:
        """``GET /tts/batch/{id}``, optionally long-polling up to ``wait_s`` seconds for a version after ``since``."""
        return self.get(TTS, batch_id, wait_s=wait_s, since=since)

    def wait_tts_batch(self, batch_id: str, deadline: Deadline | float, *, since: int | None = None) -> TtsBatchStatus:
        """Long-poll until the batch is terminal; :class:`DeadlineExceeded` if the deadline passes first."""
        return self.wait(TTS, batch_id, deadline, since=since)

    def run_tts_batch(
        self, batch: TtsBatchCreate, deadline: Deadline | float, *, idempotency_key: str | None = None
    ) -> TtsBatchStatus:
        """Create a batch and wait for it; returns the completed status or raises :class:`BatchFailed`."""
        return self.run_batch(TTS, batch, batch.video_id, deadline, idempotency_key=idempotency_key)

    def download_audio(
        self, chunk: TtsChunkResult, dest: Path | str | IO[bytes], *, deadline: Deadline | None = None
    ) -> int:
        """Stream one completed chunk's audio to a file path or a binary file object; returns the byte count."""
        if not chunk.audio_url:
            raise ServiceError(
                f"chunk {chunk.index} has no audio (status {chunk.status.value})",
                status_code=200,
                service_code="no_audio",
            )
        return self.download(chunk.audio_url, dest, deadline=deadline)

    def download_tts_audio(
        self,
        status: TtsBatchStatus,
        directory: Path | str,
        *,
        filename: str = "chunk_{index:04d}.{ext}",
        deadline: Deadline | None = None,
    ) -> dict[int, Path]:
        """Download every chunk of a completed batch into ``directory``; ``{index: path}`` in index order."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[int, Path] = {}
        for chunk in sorted(status.chunks, key=lambda c: c.index):
            path = folder / filename.format(index=chunk.index, ext=status.format.value)
            self.download_audio(chunk, path, deadline=deadline)
            paths[chunk.index] = path
        return paths

    # --- the generic core: any batch kind -------------------------------------------------------------

    def create(self, route: BatchRoute[S], body: BaseModel, video_id: str | None, key: str | None = None) -> S:
        """``POST`` a batch with an ``Idempotency-Key`` (derived from step, video and body unless given)."""
        content = body.model_dump_json().encode()
        headers = {"Idempotency-Key": key or idempotency_key(route.step, video_id, content)}
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
        """Long-poll until the batch is terminal or the deadline passes (:class:`DeadlineExceeded`)."""
        budget = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
        return self.run(self._wait(route, batch_id, budget, since))

    def _wait(self, route: BatchRoute[S], batch_id: str, deadline: Deadline, since: int | None) -> Operation[S]:
        while True:
            deadline.check(f"{route.step} batch {batch_id}")
            wait_s = max(1, math.ceil(deadline.remaining()))
            status = read_model((yield self._status_request(route, batch_id, wait_s, since)), route.parse)
            if status.status.terminal:
                return status
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
        budget = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
        status = self.create(route, body, video_id, idempotency_key)
        if not status.status.terminal:
            status = self.wait(route, status.id, budget, since=status.version)
        if status.status is not BatchStatus.COMPLETED:
            detail = getattr(status, "error", None) or "no reason given"
            raise BatchFailed(status, f"{route.step} batch {status.id} ended {status.status.value}: {detail}")
        return status

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
            for attempt in Retrying(**policy._kwargs()):
                with attempt:
                    if start is not None:
                        dest.seek(start)
                        dest.truncate()
                    return self._stream(url, dest, deadline)
        except _RetryableStatus as exc:
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
        response = self._http.send(self.request("GET", url), stream=True)
        try:
            if response.status_code in self.policy.statuses:
                response.read()
                raise _RetryableStatus(response)
            if response.is_error:
                response.read()
                raise service_error(response)
            size = 0
            for block in response.iter_bytes(_BLOCK):
                sink.write(block)
                size += len(block)
            return size
        finally:
            response.close()
