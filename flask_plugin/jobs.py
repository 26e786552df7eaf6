"""Phase 3, the jobs mode: :class:`JobAdapter` hands the whole pipeline (TTS, segments.json, images, video) to
``POST /jobs`` when it decorates the legacy function that runs those steps::

    @bridge.step("jobs", adapter=JobAdapter(images=ImageOptions(width=1024, height=576)))
    def produce(chunks, voice, style, out_dir, video_id):   # the legacy steps 3-6, unchanged
        ...

With ``jobs=legacy`` the legacy body runs (and each step inside it follows its own flag); with
``jobs=fastapi`` the service runs the whole job and the video and ``segments.json`` come back into
``out_dir``, shaped like the legacy return value; ``shadow`` and ``fallback`` work as for every phase. The
request waits for the job by long-polling it, or with ``STRANGLER_JOBS_WAIT=callback`` for its completion
webhook (:mod:`flask_plugin.callbacks`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask_plugin.adapters import ParameterAdapter, StepCall, duration_problem, sequence
from flask_plugin.state import current_state
from flask_plugin.video import compare_videos
from strangler_bridge.client.bridge import BridgeClient, Deadline
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.contracts.jobs import ImageOptions, JobChunk, JobCreate, JobStatus, VideoOptions
from strangler_bridge.segments import Segments

#: ``image_prompt(text, style)``: the picture's prompt for one chunk of narration.
PromptRule = Callable[[str, str | None], str]


class JobAdapter(ParameterAdapter[JobCreate, dict[str, Any]]):
    """Adapter of the legacy function that runs steps 3-6, shaped like
    ``produce(chunks, voice, style, out_dir, video_id) -> {"video", "segments", "duration_s"}``.

    ``chunks`` is the script: a list of strings (or of mappings with ``text`` and optional ``index``,
    ``voice``, ``image_prompt``). The result is ``{"video": path, "segments": [{"index", "start_s",
    "end_s", "text", "prompt"}], "duration_s": total}``; the service's video and ``segments.json`` are
    written into ``out_dir`` as ``video_filename`` and ``segments_filename``.

    Pictures are prompted with ``image_prompt(text, style)`` when given (so the service prompts exactly as
    the legacy code does), else with the text and the service's ``image_style``. ``images`` and ``video``
    are the sizes the legacy code asks for. A job that failed or was cancelled earlier for the same request
    is resumed (``resume``), reusing what it already paid for.

    Shadow comparison: segment count, each segment's duration and the video's duration within
    ``duration_tolerance`` (a fraction) or ``duration_slack_s`` seconds, and the video present in both.
    """

    phase = Phase.JOBS

    def __init__(
        self,
        *,
        chunks_arg: str = "chunks",
        voice_arg: str | None = "voice",
        style_arg: str | None = "style",
        out_dir_arg: str = "out_dir",
        video_id_arg: str | None = "video_id",
        images: ImageOptions | None = None,
        video: VideoOptions | None = None,
        image_prompt: PromptRule | None = None,
        video_filename: str = "video.mp4",
        segments_filename: str = "segments.json",
        resume: bool = True,
        render: bool = True,
        download_media: bool = False,
        duration_tolerance: float = 0.15,
        duration_slack_s: float = 0.25,
    ) -> None:
        super().__init__(out_dir_arg=out_dir_arg, video_id_arg=video_id_arg)
        self.chunks_arg = chunks_arg
        self.voice_arg = voice_arg
        self.style_arg = style_arg
        self.images = images or ImageOptions()
        self.video = video or VideoOptions()
        self.image_prompt = image_prompt
        self.video_filename = video_filename
        self.segments_filename = segments_filename
        self.resume = resume
        self.render = render
        self.download_media = download_media
        self.duration_tolerance = duration_tolerance
        self.duration_slack_s = duration_slack_s

    def required(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        """The script's chunks and the output directory."""
        return {"chunks_arg": (self.chunks_arg, JobAdapter.build_request), **super().required()}

    def build_request(self, call: StepCall) -> JobCreate:
        """One job for the whole script, with the legacy voice, style, picture and video sizes."""
        style = self.optional(call, self.style_arg)
        chunks = [self._chunk(item, style) for item in sequence(call.arguments[self.chunks_arg], self.chunks_arg)]
        body: dict[str, Any] = {
            "chunks": chunks,
            "images": self.images,
            "video": self.video if self.render else None,
            "video_id": self.video_id(call),
            "image_style": None if self.image_prompt else style,
        }
        voice = self.optional(call, self.voice_arg)
        if voice:
            body["voice"] = voice
        return JobCreate.model_validate(body)

    def _chunk(self, item: Any, style: str | None) -> JobChunk:
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, Mapping):
            raise TypeError(f"a script chunk must be a string or a mapping with 'text', got {type(item).__name__}")
        prompt = item.get("image_prompt")
        if prompt is None and self.image_prompt is not None:
            prompt = self.image_prompt(str(item["text"]), style)
        return JobChunk(text=item["text"], index=item.get("index"), voice=item.get("voice"), image_prompt=prompt)

    def run(self, client: BridgeClient, request: JobCreate, output_dir: Path, deadline: Deadline) -> dict[str, Any]:
        """Run the job to the end, download its files into ``output_dir`` and shape the result (:meth:`to_legacy`).

        ``segments.json`` always; the video unless ``render=False``; with ``download_media``, the narration and
        pictures too, as ``output_dir/audio/chunk_0000.wav``, ... and ``output_dir/images/image_0000.png``, ...

        The wait long-polls the job, or in the app's callback mode (``STRANGLER_JOBS_WAIT=callback``) sleeps until
        the job's completion webhook reaches the app's receiver. Callback mode needs the app: outside an app
        context (a shadow run's thread) the wait long-polls.
        """
        state = current_state()
        callback = state.callbacks.job_wait() if state is not None else None
        status = client.run_job(request, deadline, resume=self.resume, callback=callback)
        segments_path = output_dir / self.segments_filename
        client.download_segments(status, segments_path, deadline=deadline)
        video: Path | None = None
        if self.render:
            video = output_dir / self.video_filename
            client.download_job_video(status, video, deadline=deadline)
        if self.download_media:
            client.download_job_media(status, output_dir, deadline=deadline)
        segments = Segments.model_validate(json.loads(segments_path.read_text()))
        return self.to_legacy(status, segments, video)

    def to_legacy(self, status: JobStatus, segments: Segments, video: Path | None) -> dict[str, Any]:
        """``{"video", "segments", "duration_s"}``, the segments as the legacy pipeline describes them.

        Override it for another return shape. ``status`` is the completed job (its ``id``, each step's
        ``batch_id``, ``cost_total``, ...); ``segments`` is its ``segments.json``; ``video`` is the downloaded
        MP4 (``None`` with ``render=False``). The audio and images are in ``video``'s directory (``out_dir``)
        under ``audio/`` and ``images/`` when the adapter has ``download_media=True``.
        """
        return {
            "video": str(video) if video is not None else None,
            "segments": [
                {"index": s.index, "start_s": s.start_s, "end_s": s.end_s, "text": s.text, "prompt": s.image_prompt}
                for s in segments.segments
            ],
            "duration_s": segments.total_duration_s,
        }

    def compare(self, legacy: dict[str, Any], service: dict[str, Any]) -> list[str]:
        """Segment count, segment durations, and the videos."""
        old, new = legacy.get("segments") or [], service.get("segments") or []
        if len(old) != len(new):
            return [f"segment count: legacy {len(old)}, service {len(new)}"]
        problems = []
        for position, (a, b) in enumerate(zip(old, new, strict=True)):
            problem = duration_problem(
                f"segment {position}", _span(a), _span(b), self.duration_tolerance, self.duration_slack_s
            )
            if problem:
                problems.append(problem)
        problems += compare_videos(
            legacy.get("video"), service.get("video"), self.duration_tolerance, self.duration_slack_s
        )
        return problems


def _span(segment: Mapping[str, Any]) -> float | None:
    try:
        return float(segment["end_s"]) - float(segment["start_s"])
    except (KeyError, TypeError, ValueError):
        return None
