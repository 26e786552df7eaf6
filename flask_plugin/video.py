"""The video step: :class:`VideoAdapter`, for ``@bridge.step("video")`` on the legacy render function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask_plugin.adapters import ParameterAdapter, StepCall, duration_problem, sequence
from flask_plugin.media import file_size, mp4_duration
from strangler_bridge.client.bridge import BridgeClient, Deadline
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.contracts.jobs import VideoOptions
from strangler_bridge.contracts.video import RenderSegmentIn, VideoRenderCreate


class VideoAdapter(ParameterAdapter[VideoRenderCreate, str]):
    """Adapter of a legacy render function shaped like ``render(segments, out_dir, video_id)``.

    Each segment is a mapping with ``index``, ``start_s``, ``end_s``, ``audio_url``, ``image_url`` and
    optionally ``text``; the URLs are the legacy app's public media URLs, which the video service fetches
    (so they must be reachable from it). The function writes the video into ``out_dir`` (``filename``)
    and returns its path as a string. Segments that carry file paths instead of URLs need
    :meth:`media_url` overridden; other shapes override :meth:`build_request` / :meth:`to_legacy`.

    Shadow comparison: both videos present and not empty, and their durations within
    ``duration_tolerance`` (a fraction) or ``duration_slack_s`` seconds wherever both can be read.
    """

    phase = Phase.VIDEO

    def __init__(
        self,
        *,
        segments_arg: str = "segments",
        out_dir_arg: str = "out_dir",
        video_id_arg: str | None = "video_id",
        options: VideoOptions | None = None,
        filename: str = "video.mp4",
        duration_tolerance: float = 0.05,
        duration_slack_s: float = 0.25,
    ) -> None:
        super().__init__(out_dir_arg=out_dir_arg, video_id_arg=video_id_arg)
        self.segments_arg = segments_arg
        self.options = options or VideoOptions()
        self.filename = filename
        self.duration_tolerance = duration_tolerance
        self.duration_slack_s = duration_slack_s

    def required(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        """The segments and the output directory."""
        return {"segments_arg": (self.segments_arg, VideoAdapter.build_request), **super().required()}

    def build_request(self, call: StepCall) -> VideoRenderCreate:
        """A render of the legacy segments, with the media URLs the video service will fetch."""
        segments = [self.segment(item, call) for item in sequence(call.arguments[self.segments_arg], self.segments_arg)]
        return VideoRenderCreate(segments=segments, options=self.options, video_id=self.video_id(call))

    def segment(self, item: Mapping[str, Any], call: StepCall) -> RenderSegmentIn:
        """One legacy segment as a render segment."""
        return RenderSegmentIn(
            index=item["index"],
            start_s=item["start_s"],
            end_s=item["end_s"],
            audio_url=self.media_url(str(item["audio_url"]), call),
            image_url=self.media_url(str(item["image_url"]), call),
            text=item.get("text"),
        )

    def media_url(self, value: str, call: StepCall) -> str:
        """The public URL the video service fetches for ``value`` (by default ``value`` is that URL)."""
        return value

    def run(self, client: BridgeClient, request: VideoRenderCreate, output_dir: Path, deadline: Deadline) -> str:
        """Create the render, wait for it and download the video into ``output_dir``."""
        status = client.run_video_render(request, deadline)
        path = output_dir / self.filename
        output_dir.mkdir(parents=True, exist_ok=True)
        client.download_render_video(status, path, deadline=deadline)
        return self.to_legacy(path)

    def to_legacy(self, path: Path) -> str:
        """The video's path as a string."""
        return str(path)

    def compare(self, legacy: str, service: str) -> list[str]:
        """Both videos present, and of the same duration within the tolerance."""
        return compare_videos(legacy, service, self.duration_tolerance, self.duration_slack_s)


def compare_videos(legacy: Any, service: Any, tolerance: float, slack_s: float) -> list[str]:
    """Problems between two video files: a missing or empty one, or durations that differ."""
    missing = [side for side, path in (("legacy", legacy), ("service", service)) if not file_size(path)]
    if missing:
        return [f"video: no file in the {' and '.join(missing)} result"]
    a, b = mp4_duration(legacy), mp4_duration(service)
    if a is None or b is None:  # not both readable MP4s (a placeholder, another container): presence is all
        return []
    problem = duration_problem("video", a, b, tolerance, slack_s)
    return [problem] if problem else []
