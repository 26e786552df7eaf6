"""An in-memory stand-in for the service's HTTP API, for unit tests of a legacy app's wiring.

``FakeService`` answers the routes ``BridgeClient`` uses (TTS batches, audio, flags, readiness) with the
real contracts, as an :class:`httpx.MockTransport` handler: no server, no Redis. Use :meth:`FakeService.client`
for a ready client, or route a mocking library (respx) to :meth:`FakeService.handle`. Knobs script failures,
slow batches and a gate that holds requests until a test releases them. Integration and e2e tests use the
real service instead.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
from pydantic import ValidationError

from flask_plugin.client import BridgeClient
from strangler_bridge.audio import tone_wav
from strangler_bridge.contracts.common import BatchStatus, ItemStatus, Progress
from strangler_bridge.contracts.flags import FlagSet, Phase, PhaseFlag
from strangler_bridge.contracts.tts import TtsBatchCreate, TtsBatchStatus, TtsChunkResult
from strangler_bridge.flags import default_flags
from strangler_bridge.http import RetryPolicy

FAST_RETRIES = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.002, jitter_s=0.0)
_BATCH = re.compile(r"^/tts/batch/(?P<id>[^/]+)$")
_AUDIO = re.compile(r"^/tts/batch/(?P<id>[^/]+)/chunks/(?P<index>\d+)/audio$")


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


@dataclass
class _Batch:
    body: bytes
    status: TtsBatchStatus
    polls: int = 0


@dataclass
class FakeService:
    """The service's API in memory. Every attribute is a knob a test may change."""

    base_url: str = "http://service.test"
    token: str = "test-token"  # noqa: S105 - the fake's own token, not a secret
    flags: FlagSet = field(default_factory=lambda: FlagSet(flags=default_flags(), version=1))
    #: Status reads a batch needs before it completes (0: it is complete when created).
    polls_to_complete: int = 0
    #: Make every batch end ``failed``.
    fail_batches: bool = False
    #: Audio seconds for a chunk's text.
    duration_for: Callable[[str], float] = lambda text: round(0.02 * len(text), 3)
    #: When set, requests under ``gate_path`` wait for it (``entered`` is set first), so a test controls timing.
    gate: threading.Event | None = None
    gate_path: str = "/tts/"
    entered: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _scripted: list[tuple[str, str, Callable[[httpx.Request], httpx.Response]]] = field(default_factory=list)
    _batches: dict[str, _Batch] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)
    _audio: dict[tuple[str, int], bytes] = field(default_factory=dict)
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
        if method == "POST" and path == "/tts/batch":
            return self._create(request)
        if method == "GET" and (match := _BATCH.match(path)):
            return self._status(match["id"])
        if method == "GET" and (match := _AUDIO.match(path)):
            audio = self._audio.get((match["id"], int(match["index"])))
            if audio is None:
                return _error(404, "not_found", "no such audio")
            return httpx.Response(200, content=audio, headers={"content-type": "audio/wav"})
        return _error(404, "not_found", f"no route {method} {path}")

    def _create(self, request: httpx.Request) -> httpx.Response:
        try:
            body = TtsBatchCreate.model_validate_json(request.content)
        except ValidationError as exc:
            return _error(422, "invalid_input", str(exc.errors()[0]["msg"]))
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key and key in self._keys:
                batch = self._batches[self._keys[key]]
                if batch.body != request.content:
                    return _error(409, "conflict", "Idempotency-Key reused with another body")
                return httpx.Response(200, content=batch.status.model_dump_json())
            batch_id = "tts_" + hashlib.sha256(f"{len(self._batches)}:{key}".encode()).hexdigest()[:24]
            now = datetime.now(timezone.utc)
            chunks = [
                TtsChunkResult(index=i, status=ItemStatus.SUBMITTED, voice=c.voice or body.voice)
                for i, c in body.indexed()
            ]
            status = TtsBatchStatus(
                id=batch_id,
                status=BatchStatus.RUNNING,
                video_id=body.video_id,
                format=body.format,
                created_at=now,
                updated_at=now,
                progress=Progress(total=len(chunks)),
                chunks=chunks,
                version=1,
            )
            batch = _Batch(request.content, status)
            self._batches[batch_id] = batch
            if key:
                self._keys[key] = batch_id
            if self.polls_to_complete <= 0:
                self._finish(batch, body)
            return httpx.Response(202, content=batch.status.model_dump_json())

    def _status(self, batch_id: str) -> httpx.Response:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return _error(404, "not_found", f"no batch {batch_id}")
            batch.polls += 1
            if not batch.status.status.terminal and batch.polls >= self.polls_to_complete:
                self._finish(batch, TtsBatchCreate.model_validate_json(batch.body))
            return httpx.Response(200, content=batch.status.model_dump_json())

    def _finish(self, batch: _Batch, body: TtsBatchCreate) -> None:
        status = batch.status
        if self.fail_batches:
            for chunk in status.chunks:
                chunk.status, chunk.error = ItemStatus.FAILED, "scripted failure"
            status.status, status.error = BatchStatus.FAILED, "scripted failure"
            status.progress = Progress(failed=len(status.chunks), total=len(status.chunks))
        else:
            for (index, chunk_in), chunk in zip(body.indexed(), status.chunks, strict=True):
                duration = self.duration_for(chunk_in.text)
                self._audio[(status.id, index)] = tone_wav(duration, sample_rate=8000)
                chunk.status, chunk.duration_s = ItemStatus.COMPLETED, duration
                chunk.audio_url = f"/tts/batch/{status.id}/chunks/{index}/audio"
                chunk.content_type = "audio/wav"
            status.status = BatchStatus.COMPLETED
            status.progress = Progress(done=len(status.chunks), total=len(status.chunks))
        status.version += 1
        status.updated_at = datetime.now(timezone.utc)
