"""Adapters: the hooks between a legacy step's arguments and results and the service's batch API.

A :class:`StepAdapter` knows, for one phase, how to read the video id from the legacy call, turn the
call into a service request, run that request on the service into a directory, and shape the outcome
exactly like the legacy function's return value (so callers cannot tell who answered). It also compares
a legacy result with a service result for shadow mode.

:class:`ParameterAdapter` is the base of the built-in adapters, which read the legacy function's arguments
by parameter name: :class:`TtsAdapter` here, ``ImageAdapter``, ``VideoAdapter`` and ``JobAdapter`` in their
phase's module. Override their hooks when a legacy function has another signature or return shape.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from strangler_bridge.audio import wav_duration
from strangler_bridge.client.bridge import BridgeClient, Deadline
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.contracts.tts import AudioFormat, TtsBatchCreate, TtsBatchStatus, TtsChunkIn
from strangler_bridge.errors import ConfigError

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class StepCall:
    """One call of a legacy step: its positional and keyword arguments, and both bound to parameter names."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    arguments: Mapping[str, Any]

    @classmethod
    def bind(cls, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> StepCall:
        """Bind the arguments to ``func``'s signature, defaults applied (``TypeError`` if they do not fit)."""
        bound = inspect.signature(func).bind(*args, **kwargs)
        bound.apply_defaults()
        return cls(func, args, dict(kwargs), dict(bound.arguments))

    def legacy(self) -> Any:
        """Run the legacy function with the original arguments."""
        return self.func(*self.args, **self.kwargs)


class StepAdapter(ABC, Generic[RequestT, ResultT]):
    """How one legacy step is answered by the service."""

    phase: ClassVar[Phase]

    def check(self, func: Callable[..., Any]) -> None:
        """Called when the step is declared: raise :class:`ConfigError` if ``func`` cannot be adapted."""

    @abstractmethod
    def video_id(self, call: StepCall) -> str | None:
        """The video this call works for (drives the sticky rollout and the allow list)."""

    @abstractmethod
    def build_request(self, call: StepCall) -> RequestT:
        """The service request for this call (built before the legacy code runs, so it sees the inputs as given)."""

    @abstractmethod
    def output_dir(self, call: StepCall) -> Path:
        """Where the legacy code would write its files (the service path writes the same files there)."""

    @abstractmethod
    def run(self, client: BridgeClient, request: RequestT, output_dir: Path, deadline: Deadline) -> ResultT:
        """Do the work on the service and return it shaped like the legacy function's return value."""

    @abstractmethod
    def compare(self, legacy: ResultT, service: ResultT) -> list[str]:
        """Differences that matter between a legacy and a service result; empty when they match."""


class ParameterAdapter(StepAdapter[RequestT, ResultT]):
    """A :class:`StepAdapter` that reads the legacy call's arguments by parameter name.

    ``video_id_arg`` names the video id (``None``: calls carry none) and ``out_dir_arg`` the directory the
    legacy code writes into. Subclasses list, in :meth:`required`, the parameters their default hooks read;
    :meth:`check` then reports a missing one when the step is declared, not on the first video.
    """

    def __init__(self, *, out_dir_arg: str = "out_dir", video_id_arg: str | None = "video_id") -> None:
        self.out_dir_arg = out_dir_arg
        self.video_id_arg = video_id_arg

    def required(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        """``{option: (parameter name, the hook that reads it)}`` for every parameter the hooks need."""
        return {"out_dir_arg": (self.out_dir_arg, ParameterAdapter.output_dir)}

    def check(self, func: Callable[..., Any]) -> None:
        """Every parameter the default hooks read must exist on ``func`` (unless that hook is overridden)."""
        params = inspect.signature(func).parameters
        name_of_type = type(self).__name__
        for option, (name, hook) in self.required().items():
            overridden = getattr(type(self), hook.__name__) is not hook
            if name not in params and not overridden:
                raise ConfigError(
                    f"{func.__qualname__}() has no parameter {name!r}: pass {name_of_type}({option}='<its name>') "
                    f"to @bridge.step('{self.phase.value}', adapter=...), or override "
                    f"{name_of_type}.{hook.__name__}()"
                )

    def video_id(self, call: StepCall) -> str | None:
        """The ``video_id`` argument, as a string (``None`` if absent)."""
        return self.optional(call, self.video_id_arg)

    def output_dir(self, call: StepCall) -> Path:
        """The ``out_dir`` argument."""
        return Path(call.arguments[self.out_dir_arg])

    @staticmethod
    def optional(call: StepCall, name: str | None) -> str | None:
        """The argument ``name`` as a string, or ``None`` if there is no such parameter or it is empty."""
        value = call.arguments.get(name) if name else None
        return None if value is None or value == "" else str(value)


class TtsAdapter(ParameterAdapter[TtsBatchCreate, list[dict[str, Any]]]):
    """Adapter of a legacy TTS function shaped like ``synthesize(chunks, voice, out_dir, video_id)``.

    ``chunks`` is a list of strings (or of mappings with ``text`` and optional ``index`` / ``voice``); the
    function writes one audio file per chunk into ``out_dir`` (named by ``filename``) and returns
    ``[{"path": str, "duration_s": float}, ...]`` in chunk order. Parameter names are configurable; other
    shapes override :meth:`build_request` / :meth:`output_dir` / :meth:`to_legacy`.

    Shadow comparison: the same number of chunks, and each duration within ``duration_tolerance`` (a
    fraction of the legacy duration) or ``duration_slack_s`` seconds, whichever is larger.
    """

    phase = Phase.TTS

    def __init__(
        self,
        *,
        chunks_arg: str = "chunks",
        voice_arg: str | None = "voice",
        out_dir_arg: str = "out_dir",
        video_id_arg: str | None = "video_id",
        audio_format: AudioFormat = AudioFormat.WAV,
        filename: str = "chunk_{index:04d}.{ext}",
        duration_tolerance: float = 0.15,
        duration_slack_s: float = 0.25,
    ) -> None:
        super().__init__(out_dir_arg=out_dir_arg, video_id_arg=video_id_arg)
        self.chunks_arg = chunks_arg
        self.voice_arg = voice_arg
        self.audio_format = audio_format
        self.filename = filename
        self.duration_tolerance = duration_tolerance
        self.duration_slack_s = duration_slack_s

    def required(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        """The chunks and the output directory."""
        return {"chunks_arg": (self.chunks_arg, TtsAdapter.build_request), **super().required()}

    def build_request(self, call: StepCall) -> TtsBatchCreate:
        """A batch with one chunk per legacy chunk, in order, with the legacy voice."""
        chunks = [_chunk(item) for item in sequence(call.arguments[self.chunks_arg], self.chunks_arg)]
        voice = self.optional(call, self.voice_arg)
        body: dict[str, Any] = {"chunks": chunks, "format": self.audio_format, "video_id": self.video_id(call)}
        if voice:
            body["voice"] = voice
        return TtsBatchCreate.model_validate(body)

    def run(
        self, client: BridgeClient, request: TtsBatchCreate, output_dir: Path, deadline: Deadline
    ) -> list[dict[str, Any]]:
        """Create the batch, wait for it, download every chunk into ``output_dir`` and shape the result."""
        status = client.run_tts_batch(request, deadline)
        paths = client.download_tts_audio(status, output_dir, filename=self.filename, deadline=deadline)
        return self.to_legacy(status, paths)

    def to_legacy(self, status: TtsBatchStatus, paths: Mapping[int, Path]) -> list[dict[str, Any]]:
        """``[{"path", "duration_s"}]`` in chunk order; a duration the service did not give is read from the WAV."""
        durations = {chunk.index: chunk.duration_s for chunk in status.chunks}
        out = []
        for index, path in sorted(paths.items()):
            duration = durations.get(index)
            if duration is None and status.format is AudioFormat.WAV:
                duration = wav_duration(path.read_bytes())
            out.append({"path": str(path), "duration_s": duration})
        return out

    def compare(self, legacy: list[dict[str, Any]], service: list[dict[str, Any]]) -> list[str]:
        """Chunk count, then each chunk's duration within the tolerance."""
        if len(legacy) != len(service):
            return [f"chunk count: legacy {len(legacy)}, service {len(service)}"]
        problems = []
        for position, (old, new) in enumerate(zip(legacy, service, strict=True)):
            problem = duration_problem(
                f"chunk {position}",
                old.get("duration_s"),
                new.get("duration_s"),
                self.duration_tolerance,
                self.duration_slack_s,
            )
            if problem:
                problems.append(problem)
        return problems


def duration_problem(what: str, legacy: float | None, service: float | None, tolerance: float, slack_s: float) -> str:
    """A message if the two durations differ by more than ``tolerance`` of the legacy one or ``slack_s``."""
    if legacy is None or service is None:
        return f"{what} duration: legacy {legacy}, service {service}"
    if abs(legacy - service) > max(tolerance * legacy, slack_s):
        return f"{what} duration: legacy {legacy:.2f} s, service {service:.2f} s"
    return ""


def sequence(value: Any, name: str) -> Sequence[Any]:
    """``value`` as a list of items (not a string); ``TypeError`` naming the parameter otherwise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list, got {type(value).__name__}")
    return value


def _chunk(item: Any) -> TtsChunkIn:
    if isinstance(item, str):
        return TtsChunkIn(text=item)
    if isinstance(item, Mapping):
        return TtsChunkIn(text=item["text"], index=item.get("index"), voice=item.get("voice"))
    raise TypeError(f"a TTS chunk must be a string or a mapping with 'text', got {type(item).__name__}")
