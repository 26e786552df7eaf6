"""Phase 2: :class:`ImageAdapter`, for ``@bridge.step("imagegen")`` on the legacy image function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask_plugin.adapters import ParameterAdapter, StepCall, sequence
from flask_plugin.media import file_size, image_size
from strangler_bridge.client.bridge import BridgeClient, Deadline
from strangler_bridge.contracts.flags import Phase
from strangler_bridge.contracts.images import ImageBatchCreate, ImageBatchStatus, ImageFormat, ImageIn


class ImageAdapter(ParameterAdapter[ImageBatchCreate, list[str]]):
    """Adapter of a legacy image function shaped like ``generate(prompts, out_dir, video_id)``.

    ``prompts`` is a list of strings (or of mappings with ``prompt`` and optional ``index``,
    ``negative_prompt``, ``seed``); the function writes one image per prompt into ``out_dir`` (named by
    ``filename``) and returns their paths, as strings, in prompt order. ``width``, ``height``, ``model``
    (``None``: the service's default), ``style`` (appended to every prompt by the service) and
    ``image_format`` are what the legacy code asks its provider for. Other shapes override
    :meth:`build_request` / :meth:`output_dir` / :meth:`to_legacy`.

    Shadow comparison: the same number of images, every image present and not empty in both results, and
    (with ``check_dimensions``) the same pixel size wherever both sizes can be read.
    """

    phase = Phase.IMAGEGEN

    def __init__(
        self,
        *,
        prompts_arg: str = "prompts",
        out_dir_arg: str = "out_dir",
        video_id_arg: str | None = "video_id",
        width: int = 1024,
        height: int = 1024,
        model: str | None = None,
        style: str | None = None,
        image_format: ImageFormat = ImageFormat.PNG,
        filename: str = "image_{index:04d}.{ext}",
        check_dimensions: bool = True,
    ) -> None:
        super().__init__(out_dir_arg=out_dir_arg, video_id_arg=video_id_arg)
        self.prompts_arg = prompts_arg
        self.width = width
        self.height = height
        self.model = model
        self.style = style
        self.image_format = image_format
        self.filename = filename
        self.check_dimensions = check_dimensions

    def required(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        """The prompts and the output directory."""
        return {"prompts_arg": (self.prompts_arg, ImageAdapter.build_request), **super().required()}

    def build_request(self, call: StepCall) -> ImageBatchCreate:
        """A batch with one image per legacy prompt, in order, at the configured size and format."""
        images = [_image(item) for item in sequence(call.arguments[self.prompts_arg], self.prompts_arg)]
        return ImageBatchCreate(
            images=images,
            width=self.width,
            height=self.height,
            model=self.model,
            style=self.style,
            format=self.image_format,
            video_id=self.video_id(call),
        )

    def run(self, client: BridgeClient, request: ImageBatchCreate, output_dir: Path, deadline: Deadline) -> list[str]:
        """Create the batch, wait for it, download every image into ``output_dir`` and shape the result."""
        status = client.run_image_batch(request, deadline)
        paths = client.download_images(status, output_dir, filename=self.filename, deadline=deadline)
        return self.to_legacy(status, paths)

    def to_legacy(self, status: ImageBatchStatus, paths: Mapping[int, Path]) -> list[str]:
        """The image paths, as strings, in prompt order."""
        return [str(path) for _, path in sorted(paths.items())]

    def compare(self, legacy: list[str], service: list[str]) -> list[str]:
        """Image count, every image present, and the same pixel sizes."""
        if len(legacy) != len(service):
            return [f"image count: legacy {len(legacy)}, service {len(service)}"]
        problems = []
        for position, (old, new) in enumerate(zip(legacy, service, strict=True)):
            missing = [side for side, path in (("legacy", old), ("service", new)) if not file_size(path)]
            if missing:
                problems.append(f"image {position}: no file in the {' and '.join(missing)} result")
                continue
            if self.check_dimensions:
                a, b = image_size(old), image_size(new)
                if a and b and a != b:
                    problems.append(f"image {position} size: legacy {a[0]}x{a[1]}, service {b[0]}x{b[1]}")
        return problems


def _image(item: Any) -> ImageIn:
    if isinstance(item, str):
        return ImageIn(prompt=item)
    if isinstance(item, Mapping):
        fields = ("index", "negative_prompt", "seed")
        return ImageIn(prompt=item["prompt"], **{name: item[name] for name in fields if item.get(name) is not None})
    raise TypeError(f"an image prompt must be a string or a mapping with 'prompt', got {type(item).__name__}")
