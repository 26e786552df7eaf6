"""What runs inside a simulated worker: the built-in TTS handler, the loader of a user's own runpod.serverless
handler, and the mapping of a handler's result (or exception) to a job outcome, as RunPod's worker does it.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import contextvars
import hashlib
import importlib
import importlib.util
import inspect
import json
import struct
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strangler_bridge.audio import tone_wav
from strangler_bridge.simulators.runpod.config import Handler

#: Speech length of the built-in TTS: this many seconds per character of text, and never less than MIN.
SECONDS_PER_CHAR = 0.06
MIN_SECONDS = 0.3
SIMULATOR_VERSION = "strangler-bridge-simulator"


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: The job has no ``output`` field at all (RunPod drops an empty result), as opposed to ``output: null``.
ABSENT: Any = _Absent()


@dataclass(frozen=True)
class JobContext:
    """What the built-in handler may know about the job beyond ``{"id", "input"}``."""

    base_url: str
    endpoint_id: str
    output_mode: str
    worker_id: str
    #: The WAV header's data size claims far more samples than the file holds (a lying header).
    lying_wav_header: bool = False


#: Set by the engine around each execution (threads started with asyncio.to_thread see it too).
CURRENT_JOB: contextvars.ContextVar[JobContext] = contextvars.ContextVar("runpod_sim_job")


@dataclass(frozen=True)
class Outcome:
    """A finished execution: ``error`` set means FAILED; ``output`` may be :data:`ABSENT`."""

    output: Any = ABSENT
    error: str | None = None


def speech_duration(text: str) -> float:
    """Seconds of audio the built-in TTS makes for ``text``: ``max(0.3, 0.06 * len(text.strip()))``."""
    return round(max(MIN_SECONDS, SECONDS_PER_CHAR * len(text.strip())), 3)


class AudioStore:
    """Audio served at ``/v2/{endpoint}/audio/{name}.wav`` without auth, like a presigned URL."""

    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}
        self._lock = threading.Lock()  # the TTS handler runs in worker threads

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``."""
        with self._lock:
            self._items[name] = data

    def get(self, name: str) -> bytes | None:
        """The bytes stored under ``name``, if any."""
        with self._lock:
            return self._items.get(name)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()


class TtsHandler:
    """The built-in handler: the TTS chunk contract, real WAV audio whose length follows the text."""

    def __init__(self, store: AudioStore) -> None:
        self.store = store

    def __call__(self, job: dict[str, Any]) -> dict[str, Any]:
        context = CURRENT_JOB.get()
        chunks, problem = _read_tts_input(job.get("input"))
        if problem:
            return {"error": problem}
        results = []
        for index, text, voice in chunks:
            duration = speech_duration(text)
            audio = tone_wav(duration, frequency=_voice_frequency(voice))
            if context.lying_wav_header:
                audio = with_lying_header(audio)
            result: dict[str, Any] = {"index": index, "duration_s": duration}
            if context.output_mode == "s3" and job.get("s3Config"):
                result["audio_key"] = upload_to_bucket(job["s3Config"], f"{job['id']}-{index}.wav", audio)
            elif context.output_mode == "url":
                name = f"{job['id']}-{index}"
                self.store.put(name, audio)
                result["audio_url"] = f"{context.base_url}/v2/{context.endpoint_id}/audio/{name}.wav"
            else:
                result["audio_base64"] = base64.b64encode(audio).decode("ascii")
            results.append(result)
        return {"chunks": results}


def upload_to_bucket(s3_config: dict[str, str], name: str, data: bytes) -> str:
    """Upload ``data`` below ``s3Config.objectPath`` with the job's keys, as a handler using ``rp_upload`` would;
    the object's name (boto3 is imported only here: the ``s3`` output mode needs the ``[s3]`` extra)."""
    import boto3

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_config["endpointUrl"],
        aws_access_key_id=s3_config["accessId"],
        aws_secret_access_key=s3_config["accessSecret"],
        region_name="us-east-1",
    )
    key = f"{s3_config.get('objectPath', '').strip('/')}/{name}".lstrip("/")
    client.put_object(Bucket=s3_config["bucketName"], Key=key, Body=data, ContentType="audio/wav")
    return key


def with_lying_header(wav: bytes) -> bytes:
    """``wav`` (as :func:`tone_wav` writes it) with RIFF and data sizes claiming about 4 GB: a reader that trusts the
    header measures a 16 kHz mono clip as some 134,000 s long."""
    huge = 0xFFFFFFF0
    return wav[:4] + struct.pack("<I", huge) + wav[8:40] + struct.pack("<I", huge - 36) + wav[44:]


def _read_tts_input(data: Any) -> tuple[list[tuple[int, str, str]], str | None]:
    """``(index, text, voice)`` per chunk, or a message saying what is wrong with the input."""
    if not isinstance(data, dict) or not isinstance(data.get("chunks"), list) or not data["chunks"]:
        return [], 'input must be {"chunks": [{"index", "text", "voice"}, ...], "format": "wav"}'
    if data.get("format", "wav") != "wav":
        return [], f"unsupported format {data.get('format')!r}: the simulated TTS produces wav only"
    chunks = []
    for position, chunk in enumerate(data["chunks"]):
        if not isinstance(chunk, dict):
            return [], f"chunks[{position}] must be an object"
        index, text, voice = chunk.get("index", position), chunk.get("text"), chunk.get("voice") or "default"
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            return [], f"chunks[{position}].index must be an integer >= 0"
        if not isinstance(text, str) or not text.strip():
            return [], f"chunks[{position}].text must be a non-empty string"
        if not isinstance(voice, str):
            return [], f"chunks[{position}].voice must be a string"
        chunks.append((index, text, voice))
    return chunks, None


def _voice_frequency(voice: str) -> float:
    # Each voice gets its own pitch, so two voices are audibly different and stable across runs.
    return 160.0 + hashlib.sha256(voice.encode()).digest()[0] % 160


async def invoke(handler: Handler, job: dict[str, Any], *, aggregate_stream: bool = True) -> Outcome:
    """Run ``handler(job)`` the way runpod.serverless does and map the result to an :class:`Outcome`.

    Async handlers are awaited on the loop; sync ones run in a thread. A raised exception becomes FAILED
    with a JSON-encoded error (type, message, traceback, ...). Generators are drained; their output is the
    list of yields when ``aggregate_stream`` is on.
    """
    try:
        if inspect.isasyncgenfunction(handler):
            yields = [item async for item in handler(job)]
            return _stream_outcome(yields, aggregate_stream)
        if inspect.isgeneratorfunction(handler):
            yields = await asyncio.to_thread(lambda: list(handler(job)))
            return _stream_outcome(yields, aggregate_stream)
        if inspect.iscoroutinefunction(handler):
            result = await handler(job)
        else:
            result = await asyncio.to_thread(handler, job)
            if inspect.isawaitable(result):
                result = await result
    except Exception as exc:
        return Outcome(error=exception_error(exc))
    return map_result(result)


def map_result(result: Any) -> Outcome:
    """A handler's return value as RunPod reports it: a dict's string ``error`` fails the job; ``{}`` means
    no output; ``refresh_worker`` is dropped; a non-string ``error`` is swallowed (COMPLETED, no output)."""
    if not isinstance(result, dict):
        return Outcome(output=result)
    rest = {key: value for key, value in result.items() if key not in ("error", "refresh_worker")}
    error = result.get("error")
    if error and not isinstance(error, str):
        return Outcome()
    output = rest if rest else ABSENT
    return Outcome(output=output, error=error or None)


def _stream_outcome(yields: list[Any], aggregate: bool) -> Outcome:
    for item in yields:
        if isinstance(item, dict) and isinstance(item.get("error"), str) and item["error"]:
            return Outcome(error=item["error"])
    return Outcome(output=yields if aggregate else ABSENT)


def exception_error(exc: BaseException) -> str:
    """The ``error`` string of a job whose handler raised: a JSON object, as RunPod's worker sends it."""
    context = CURRENT_JOB.get(None)
    return json.dumps(
        {
            "error_type": str(type(exc)),
            "error_message": str(exc),
            "error_traceback": "".join(traceback.format_exception(exc)),
            "hostname": "runpod-simulator",
            "worker_id": context.worker_id if context else "unknown",
            "runpod_version": SIMULATOR_VERSION,
        }
    )


def load_handler(spec: str) -> Handler:
    """A handler from ``module:function``, ``path/to/file.py:function``, or a module/file alone that calls
    ``runpod.serverless.start({"handler": ...})``: at import time (that call is intercepted, so no worker
    starts), or behind ``if __name__ == "__main__":`` (found in the source; the guarded code does not run)."""
    target, _, attribute = spec.rpartition(":") if _has_attribute(spec) else (spec, "", "")
    captured: dict[str, Any] = {}
    with _intercept_serverless_start(captured):
        module = _import(target)
    if attribute:
        handler = getattr(module, attribute, None)
        if handler is None:
            raise ValueError(f"handler {spec!r}: {target} has no attribute {attribute!r}")
    else:
        handler = captured.get("handler") or _handler_named_in_start_call(module)
        if handler is None:
            raise ValueError(f"handler {spec!r}: name the function ({target}:handler), or call runpod.serverless.start")
    if not callable(handler):
        raise ValueError(f"handler {spec!r} is not callable")
    return handler  # type: ignore[no-any-return]


def _handler_named_in_start_call(module: Any) -> Any:
    """The handler of a ``runpod.serverless.start({"handler": fn})`` call the import did not make (it sits behind
    ``if __name__ == "__main__":``), found in the module's source, so nothing behind the guard runs.

    The config may be a dict literal or the name of a module-level dict; the handler a module-level name.
    """
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and _called_name(node.func) == "start"):
            continue
        config = node.args[0]
        if isinstance(config, ast.Name):
            named = getattr(module, config.id, None)
            if isinstance(named, dict) and callable(named.get("handler")):
                return named["handler"]
            continue
        if isinstance(config, ast.Dict):
            for key, value in zip(config.keys, config.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "handler" and isinstance(value, ast.Name):
                    return getattr(module, value.id, None)
    return None


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _has_attribute(spec: str) -> bool:
    head, separator, tail = spec.rpartition(":")
    return bool(separator) and bool(head) and tail.isidentifier()


def _import(target: str) -> Any:
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise ValueError(f"handler file not found: {path}")
        name = f"runpod_sim_handler_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot import handler file {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        # Let the handler import modules that sit beside it, as it would in its own worker image.
        sys.path.insert(0, str(path.parent))
        try:
            module_spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        return module
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise ValueError(f"cannot import handler module {target!r}: {exc}") from exc


@contextlib.contextmanager
def _intercept_serverless_start(captured: dict[str, Any]) -> Iterator[None]:
    """While a handler module is imported, ``runpod.serverless.start(config)`` records the config instead."""
    if importlib.util.find_spec("runpod") is None:
        yield
        return
    import runpod.serverless

    original = runpod.serverless.start
    runpod.serverless.start = captured.update
    try:
        yield
    finally:
        runpod.serverless.start = original
