"""An in-memory stand-in for the service's HTTP API, for unit tests of a legacy app's wiring.

``FakeService`` answers the routes ``BridgeClient`` uses (TTS batches, image batches, video renders, pipeline
jobs, their files, flags, readiness) with the real contracts, as an :class:`httpx.MockTransport` handler: no
server, no Redis. Use :meth:`FakeService.client` for a ready client, or route a mocking library (respx) to
:meth:`FakeService.handle`. Knobs script failures, slow work and a gate that holds requests until a test
releases them. Its files are real enough to compare: WAV audio of the right length, PNG images of the asked
size, MP4 files whose header carries the video's duration. Integration and e2e tests use the real service.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from strangler_bridge.audio import tone_wav
from strangler_bridge.callbacks import signed_headers
from strangler_bridge.client.bridge import BridgeClient
from strangler_bridge.contracts.callbacks import CallbackData, CallbackEvent, CallbackObject
from strangler_bridge.contracts.common import BatchStatus, ItemStatus, Progress
from strangler_bridge.contracts.flags import FlagSet, Phase, PhaseFlag
from strangler_bridge.contracts.images import ImageBatchCreate, ImageBatchStatus, ImageResult
from strangler_bridge.contracts.jobs import STEP_ORDER, JobCreate, JobStatus, StepStatus
from strangler_bridge.contracts.tts import TtsBatchCreate, TtsBatchStatus, TtsChunkResult
from strangler_bridge.contracts.video import VideoRenderCreate, VideoRenderStatus
from strangler_bridge.flags import default_flags
from strangler_bridge.http import RetryPolicy

FAST_RETRIES = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.002, jitter_s=0.0)


@dataclass(frozen=True)
class _Kind:
    """One kind of work the fake serves: its id prefix, its collection path, its create model, its webhooks' object."""

    prefix: str
    path: str
    create: type[BaseModel]
    callback: CallbackObject


_KINDS = (
    _Kind("tts", "/tts/batch", TtsBatchCreate, CallbackObject.TTS_BATCH),
    _Kind("img", "/imagegen/batch", ImageBatchCreate, CallbackObject.IMAGE_BATCH),
    _Kind("vr", "/video/render", VideoRenderCreate, CallbackObject.VIDEO_RENDER),
    _Kind("job", "/jobs", JobCreate, CallbackObject.JOB),
)
_ITEM = re.compile(r"^(?P<path>/.+)/(?P<id>(?:tts|img|vr|job)_[0-9a-f]+)(?:/(?P<action>retry|cancel))?$")


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def signed_callback(
    secrets_: Sequence[str], event: CallbackEvent, *, webhook_id: str | None = None, at: datetime | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a completion webhook as the service sends it, signed with ``secrets_``, to post
    to the app's receiver (``StranglerBridge.callback_path(app)``) in a test.

    ``webhook_id`` defaults to a new random one (give the same id again for a redelivery); ``at`` to now.
    """
    body = event.model_dump_json().encode()
    webhook_id = webhook_id or f"msg_{secrets.token_hex(12)}"
    headers = signed_headers(secrets_, webhook_id, body, at or datetime.now(timezone.utc))
    return body, {**headers, "content-type": "application/json"}


def png(width: int, height: int) -> bytes:
    """A valid grey PNG of ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + b"\x80" * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def mp4(seconds: float) -> bytes:
    """The boxes of an MP4 that say how long it is (``ftyp`` and ``moov/mvhd``), and no media."""

    def box(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", 8 + len(data)) + kind + data

    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = struct.pack(">4xIIII", 0, 0, 1000, round(seconds * 1000)) + struct.pack(">IH10x", 0x10000, 0x100)
    mvhd += matrix + bytes(24) + struct.pack(">I", 2)
    return box(b"ftyp", b"isom" + bytes(4) + b"isomiso2mp41") + box(b"moov", box(b"mvhd", mvhd))


@dataclass
class _Batch:
    kind: _Kind
    body: bytes
    request: Any
    status: Any
    polls: int = 0


@dataclass
class FakeService:
    """The service's API in memory. Every attribute is a knob a test may change."""

    base_url: str = "http://service.test"
    token: str = "test-token"  # noqa: S105 - the fake's own token, not a secret
    flags: FlagSet = field(default_factory=lambda: FlagSet(flags=default_flags(), version=1))
    #: Status reads a batch, render or job needs before it completes (0: it is complete when created).
    polls_to_complete: int = 0
    #: Make every batch, render and job end ``failed``.
    fail_batches: bool = False
    #: Audio seconds for a chunk's text (TTS chunks and job segments).
    duration_for: Callable[[str], float] = lambda text: round(0.02 * len(text), 3)
    #: Pixel size of an image asked for at ``(width, height)``.
    image_size_for: Callable[[int, int], tuple[int, int]] = lambda width, height: (width, height)
    #: Video seconds for segments that span this many seconds.
    video_seconds_for: Callable[[float], float] = lambda seconds: seconds
    #: When set, requests under ``gate_path`` wait for it (``entered`` is set first), so a test controls timing.
    gate: threading.Event | None = None
    gate_path: str = "/tts/"
    entered: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _scripted: list[tuple[str, str, Callable[[httpx.Request], httpx.Response]]] = field(default_factory=list)
    _batches: dict[str, _Batch] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)
    _files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- for tests --------------------------------------------------------------------------------

    def client(self, *, policy: RetryPolicy = FAST_RETRIES, timeout_s: float = 10.0) -> BridgeClient:
        """A :class:`BridgeClient` wired to this fake (with fast retries by default)."""
        transport = httpx.MockTransport(self.handle)
        return BridgeClient(self.base_url, self.token, timeout_s=timeout_s, policy=policy, transport=transport)

    def fail_next(self, method: str, path_prefix: str, status: int, *, times: int = 1, code: str = "") -> None:
        """Answer the next ``times`` matching requests with ``status`` and an error body."""
        code = code or ("service_unavailable" if status >= 500 else "invalid_input")
        for _ in range(times):
            self.script(method, path_prefix, lambda _r: _error(status, code, f"scripted {status}"))

    def script(self, method: str, path_prefix: str, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        """Answer the next matching request with ``respond(request)`` (raise an httpx error to fake the network)."""
        with self._lock:
            self._scripted.append((method.upper(), path_prefix, respond))

    def set_flag(self, phase: Phase | str, flag: PhaseFlag) -> None:
        """Change a flag as ``PUT /flags/{phase}`` would."""
        with self._lock:
            flags = dict(self.flags.flags)
            flags[Phase(phase)] = flag
            self.flags = FlagSet(flags=flags, version=self.flags.version + 1)

    def count(self, method: str, path_prefix: str) -> int:
        """How many requests matched ``method`` and ``path_prefix``."""
        with self._lock:
            return sum(1 for m, p in self.calls if m == method.upper() and p.startswith(path_prefix))

    def created(self, path: str) -> list[Any]:
        """The create requests (parsed models) of one kind, e.g. ``created("/jobs")``, in the order received."""
        with self._lock:
            return [batch.request for batch in self._batches.values() if batch.kind.path == path]

    def ids(self, path: str) -> list[str]:
        """The ids of the work of one kind, e.g. ``ids("/jobs")``, in the order created."""
        with self._lock:
            return [batch_id for batch_id, batch in self._batches.items() if batch.kind.path == path]

    def complete(self, work_id: str) -> Any:
        """Finish work now, as the service's workers would (``polls_to_complete`` holds it); a copy of its status."""
        with self._lock:
            batch = self._batches[work_id]
            if not batch.status.status.terminal:
                self._finish(batch)
            return batch.status.model_copy(deep=True)

    def callback_event(self, work_id: str) -> CallbackEvent:
        """The event of the completion webhook the service sends to the work's ``callback_url`` once it ended."""
        with self._lock:
            batch = self._batches[work_id]
            status = batch.status
            if not status.status.terminal:
                raise ValueError(f"{work_id} is {status.status.value}: a completion webhook comes once it ends")
            data = CallbackData(
                id=status.id,
                object=batch.kind.callback,
                status=status.status,
                version=status.version,
                video_id=status.video_id,
                error=status.error,
                status_url=f"{batch.kind.path}/{status.id}",
                video_url=getattr(status, "video_url", None),
                cost_total=getattr(status, "cost_total", None),
                metadata=status.metadata,
            )
        return CallbackEvent(type=f"{data.object.value}.{data.status.value}", timestamp=status.updated_at, data=data)

    # --- the API ------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The transport handler: one request in, one response out."""
        method, path = request.method, request.url.path
        with self._lock:
            self.calls.append((method, path))
            scripted = next((s for s in self._scripted if s[0] == method and path.startswith(s[1])), None)
            if scripted is not None:
                self._scripted.remove(scripted)
        if self.gate is not None and path.startswith(self.gate_path):
            self.entered.set()
            self.gate.wait(30)
        if scripted is not None:
            return scripted[2](request)
        if path in ("/healthz", "/readyz"):
            return httpx.Response(200, json={"status": "ok"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized", "invalid bearer token")
        return self._route(method, path, request)

    def _route(self, method: str, path: str, request: httpx.Request) -> httpx.Response:
        if method == "GET" and path == "/flags":
            return httpx.Response(200, content=self.flags.model_dump_json())
        if method == "PUT" and path.startswith("/flags/"):
            try:
                self.set_flag(path.removeprefix("/flags/"), PhaseFlag.model_validate_json(request.content))
            except (ValueError, ValidationError) as exc:
                return _error(422, "invalid_input", str(exc))
            return httpx.Response(200, content=self.flags.model_dump_json())
        if method == "POST" and any(kind.path == path for kind in _KINDS):
            return self._create(request)
        if method == "GET" and path in self._files:
            content, content_type = self._files[path]
            return httpx.Response(200, content=content, headers={"content-type": content_type})
        match = _ITEM.match(path)
        if match and match["action"] and method == "POST" and (match["path"] == "/jobs" or match["action"] == "cancel"):
            return self._action(match["id"], match["action"], idempotent=match["path"] != "/jobs")
        if match and not match["action"] and method == "GET":
            return self._status(match["id"])
        return _error(404, "not_found", f"no route or file {method} {path}")

    def _create(self, request: httpx.Request) -> httpx.Response:
        kind = next(k for k in _KINDS if k.path == request.url.path)
        try:
            body = kind.create.model_validate_json(request.content)
        except ValidationError as exc:
            return _error(422, "invalid_input", str(exc.errors()[0]["msg"]))
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key and key in self._keys:
                batch = self._batches[self._keys[key]]
                if batch.body != request.content:
                    return _error(409, "conflict", "Idempotency-Key reused with another body")
                return httpx.Response(200, content=batch.status.model_dump_json())
            batch_id = f"{kind.prefix}_" + hashlib.sha256(f"{len(self._batches)}:{key}".encode()).hexdigest()[:24]
            batch = _Batch(kind, request.content, body, _started(batch_id, body))
            self._batches[batch_id] = batch
            if key:
                self._keys[key] = batch_id
            if self.polls_to_complete <= 0:
                self._finish(batch)
            return httpx.Response(202, content=batch.status.model_dump_json())

    def _status(self, batch_id: str) -> httpx.Response:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return _error(404, "not_found", f"no such item {batch_id}")
            batch.polls += 1
            if not batch.status.status.terminal and batch.polls >= self.polls_to_complete:
                self._finish(batch)
            return httpx.Response(200, content=batch.status.model_dump_json())

    def _action(self, job_id: str, action: str, *, idempotent: bool = False) -> httpx.Response:
        """``retry`` or ``cancel`` a job; ``cancel`` a batch or render (idempotent: a finished one is answered)."""
        with self._lock:
            batch = self._batches.get(job_id)
            if batch is None:
                return _error(404, "not_found", f"no job {job_id}")
            status = batch.status
            if action == "retry" and status.status not in (BatchStatus.FAILED, BatchStatus.CANCELLED):
                return _error(409, "conflict", f"job {job_id} is {status.status.value}; it cannot be retried")
            if action == "cancel" and status.status.terminal:
                if idempotent:
                    return httpx.Response(200, content=status.model_dump_json())
                return _error(409, "conflict", f"job {job_id} is already {status.status.value}")
            status.status = BatchStatus.RUNNING if action == "retry" else BatchStatus.CANCELLED
            status.error = None
            batch.polls = 0
            _touch(status)
            if action == "retry" and self.polls_to_complete <= 0:
                self._finish(batch)
            return httpx.Response(200, content=status.model_dump_json())

    # --- how work finishes --------------------------------------------------------------------------

    def _finish(self, batch: _Batch) -> None:
        status, request = batch.status, batch.request
        if self.fail_batches:
            _fail(status, "scripted failure")
        elif isinstance(request, TtsBatchCreate):
            self._finish_tts(status, request)
        elif isinstance(request, ImageBatchCreate):
            self._finish_images(status, request)
        elif isinstance(request, VideoRenderCreate):
            seconds = self.video_seconds_for(max(s.end_s for s in request.segments))
            status.video_url = self._file(f"/video/render/{status.id}/video", mp4(seconds), "video/mp4")
            status.size_bytes = len(self._files[status.video_url][0])
            _complete(status, 1)
        else:
            self._finish_job(status, request)
        _touch(status)

    def _file(self, path: str, content: bytes, content_type: str) -> str:
        self._files[path] = (content, content_type)
        return path

    def _finish_tts(self, status: TtsBatchStatus, body: TtsBatchCreate) -> None:
        for (index, chunk_in), chunk in zip(body.indexed(), status.chunks, strict=True):
            duration = self.duration_for(chunk_in.text)
            audio = tone_wav(duration, sample_rate=8000)
            chunk.audio_url = self._file(f"/tts/batch/{status.id}/chunks/{index}/audio", audio, "audio/wav")
            chunk.status, chunk.duration_s, chunk.content_type = ItemStatus.COMPLETED, duration, "audio/wav"
        _complete(status, len(status.chunks))

    def _finish_images(self, status: ImageBatchStatus, body: ImageBatchCreate) -> None:
        content = png(*self.image_size_for(body.width, body.height))
        for image in status.images:
            image.image_url = self._file(f"/imagegen/batch/{status.id}/images/{image.index}", content, "image/png")
            image.status, image.content_type, image.size_bytes = ItemStatus.COMPLETED, "image/png", len(content)
        _complete(status, len(status.images))

    def _finish_job(self, status: JobStatus, body: JobCreate) -> None:
        segments, start = [], 0.0
        for chunk in sorted(body.chunks, key=lambda c: c.index or 0):
            duration = self.duration_for(chunk.text)
            prompt = chunk.image_prompt or chunk.text
            if body.image_style and not chunk.image_prompt:
                prompt = f"{prompt}, {body.image_style}"
            segment = {"index": chunk.index, "start_s": start, "end_s": start + duration, "duration_s": duration}
            segments.append({**segment, "text": chunk.text, "image_prompt": prompt})
            start += duration
        document = {"job_id": status.id, "total_duration_s": start, "segments": segments}
        status.segments_url = self._file(
            f"/jobs/{status.id}/segments.json", json.dumps(document).encode(), "application/json"
        )
        if body.video is not None:
            status.video_url = self._file(f"/jobs/{status.id}/video", mp4(self.video_seconds_for(start)), "video/mp4")
        for step in status.steps:
            step.status = ItemStatus.COMPLETED
        status.current_step = None
        _complete(status, len(status.steps))


def _started(batch_id: str, body: Any) -> Any:
    """The status of work just created: running, every item submitted (or every step pending)."""
    now = datetime.now(timezone.utc)
    common: dict[str, Any] = {
        "id": batch_id,
        "status": BatchStatus.RUNNING,
        "video_id": body.video_id,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    if isinstance(body, TtsBatchCreate):
        chunks = [
            TtsChunkResult(index=i, status=ItemStatus.SUBMITTED, voice=c.voice or body.voice) for i, c in body.indexed()
        ]
        return TtsBatchStatus(format=body.format, progress=Progress(total=len(chunks)), chunks=chunks, **common)
    if isinstance(body, ImageBatchCreate):
        images = [ImageResult(index=image.index or 0, status=ItemStatus.SUBMITTED) for image in body.images]
        return ImageBatchStatus(progress=Progress(total=len(images)), images=images, **common)
    if isinstance(body, VideoRenderCreate):
        return VideoRenderStatus(progress=Progress(total=1), **common)
    steps = [StepStatus(name=name) for name in STEP_ORDER]
    return JobStatus(current_step=STEP_ORDER[0], steps=steps, progress=Progress(total=len(steps)), **common)


def _items(status: Any) -> list[Any]:
    return list(getattr(status, "chunks", None) or getattr(status, "images", None) or [])


def _complete(status: Any, total: int) -> None:
    status.status, status.error = BatchStatus.COMPLETED, None
    status.progress = Progress(done=total, total=total)


def _fail(status: Any, reason: str) -> None:
    items = _items(status)
    for item in items:
        item.status, item.error = ItemStatus.FAILED, reason
    if isinstance(status, JobStatus):
        status.steps[0].status, status.steps[0].error = ItemStatus.FAILED, reason
    total = len(items) or status.progress.total
    status.status, status.error = BatchStatus.FAILED, reason
    status.progress = Progress(failed=len(items) or 1, total=total)


def _touch(status: Any) -> None:
    status.version += 1
    status.updated_at = datetime.now(timezone.utc)
