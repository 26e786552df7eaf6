"""Structured JSON logs whose every line carries the job, batch and video ids of the work it is about.

The ids live in context variables: the API binds them per request (from the path and the ``X-Video-Id``
header the Flask side sends), :func:`task_meta` copies them into each RQ job's meta when it is enqueued, and
:class:`LogContextWorker` binds them again around each job a worker runs (from the meta and the task's
arguments). So one ``video_id`` follows a video from the legacy app through the API into every worker.

Secrets never reach the output: the formatter masks the configured tokens and keys, bearer credentials and
signed ``token=`` query parameters in the final line, tracebacks included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter
from rq import Queue, SimpleWorker
from rq.job import Job
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from strangler_bridge.ids import is_valid_id
from strangler_bridge.settings import Settings

FIELDS = ("job_id", "batch_id", "video_id")
VIDEO_HEADER = "x-video-id"
META_KEY = "log"
MASK = "***"
#: Secret values shorter than this are not masked (they would mask ordinary words).
MIN_SECRET_LEN = 6
_MAX_ID_LEN = 200
_BATCH_PREFIXES = ("tts", "img", "vid")
#: Terminal escape sequences, raw or as JSON escapes: colours have no place in a log collector.
_ANSI = re.compile(r"(?:\x1b|\\u001b)\[[0-9;?]*[A-Za-z]")
_VARS: dict[str, ContextVar[str | None]] = {name: ContextVar(f"strangler_{name}", default=None) for name in FIELDS}
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)([?&](?:token|api_key|apikey|key)=)[^&\s\"'#]+"),
)


def current() -> dict[str, str]:
    """The ids bound in this context (unset ones left out)."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


@contextmanager
def bind(**ids: str | None) -> Iterator[None]:
    """Bind ``job_id``, ``batch_id`` and/or ``video_id`` for the block (``None`` values leave a field as it is)."""
    unknown = set(ids) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {sorted(unknown)}")
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in ids.items() if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def ids_in(values: list[Any] | tuple[Any, ...]) -> dict[str, str]:
    """Job and batch ids named by task arguments or path segments (``job_...``; ``tts_``/``img_``/``vid_...``).

    A due-index member (``tts:<batch id>:<group>``) names its record too.
    """
    found: dict[str, str] = {}
    for value in values:
        if not isinstance(value, str):
            continue
        for part in value.split(":")[:2]:
            if is_valid_id(part, "job"):
                found.setdefault("job_id", part)
            elif any(is_valid_id(part, prefix) for prefix in _BATCH_PREFIXES):
                found.setdefault("batch_id", part)
    return found


def clean_video_id(value: str | None) -> str | None:
    """A video id from outside (a header), or ``None`` if it is empty, too long or not printable."""
    if not value or len(value) > _MAX_ID_LEN or not value.isprintable():
        return None
    return value


def task_meta() -> dict[str, Any]:
    """RQ job meta carrying the current ids to the worker (``{}`` when none are bound)."""
    ids = current()
    return {META_KEY: ids} if ids else {}


class ContextFilter(logging.Filter):
    """Puts the bound ids on every record (``None`` when unbound, so every line has the same keys)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops a record."""
        for name, var in _VARS.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class MaskingJsonFormatter(JsonFormatter):
    """One JSON object per line, with secrets replaced by ``***``."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(job_id)s %(batch_id)s %(video_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
        values = sorted({s for s in secrets or [] if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, values))) if values else None

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON, masked, without terminal colour codes."""
        # uvicorn adds a coloured copy of its message; the plain one is already there.
        record.__dict__.pop("color_message", None)
        return _ANSI.sub("", self.mask(super().format(record)))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """ISO-8601 in UTC with milliseconds, like every other time the service shows."""
        return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")

    def mask(self, text: str) -> str:
        """``text`` with every known secret, bearer credential and signed token replaced."""
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text


def secret_values(settings: Settings | None) -> list[str]:
    """Every secret a process may hold: API tokens, the webhook secret, provider keys, the service token."""
    if settings is None:
        return []
    values = [token.get_secret_value() for token in settings.api_tokens]
    for name in ("webhook_secret", "runpod_api_key", "runware_api_key", "service_token"):
        secret = getattr(settings, name)
        if secret is not None:
            values.append(secret.get_secret_value())
    return values


def configure_logging(
    level: str | int = "INFO", settings: Settings | None = None, *, stream: IO[str] | None = None
) -> None:
    """Send every log record, as one masked JSON line with the ids, to ``stream`` (default: stderr).

    Replaces the root logger's handlers, so call it once at process start (``strangler-bridge api`` and
    ``worker`` do). Noisy client libraries are kept at WARNING.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(MaskingJsonFormatter(secret_values(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class LogContextMiddleware:
    """Binds the ids of each request: job or batch ids from the path, the video id from ``X-Video-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ids = ids_in(str(scope.get("path", "")).split("/"))
        video_id = clean_video_id(Headers(scope=scope).get(VIDEO_HEADER))
        with bind(video_id=video_id, **ids):
            await self.app(scope, receive, send)


class LogContextWorker(SimpleWorker):
    """An RQ ``SimpleWorker`` that binds each job's ids (from its meta and arguments) while it runs."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job with its ids bound: the video id from the meta, the record's own ids from its arguments."""
        meta = job.meta.get(META_KEY) if isinstance(job.meta, dict) else None
        ids = {k: v for k, v in (meta or {}).items() if k in FIELDS and isinstance(v, str)}
        try:
            args = list(job.args or ())
        except Exception:  # arguments that cannot be loaded fail the job in RQ itself, with its own message
            args = []
        ids.update(ids_in(args))
        with bind(**ids):
            super().execute_job(job, queue)
